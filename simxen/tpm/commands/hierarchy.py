"""Part 3, chapter 24: hierarchy commands.

CreatePrimary derives its object from the hierarchy's primary seed
(:mod:`simxen.tpm.creation`), so the same seed and template always give the
same key.  Clear gives the storage hierarchy a new seed and proof, forgets
the owner's, endorsement's and lockout's authValues and policies and the
PCRs' authValues, deletes the owner's NV indices and persistent objects,
restores the dictionary-attack parameters as manufactured, and zeroes
Clock, resetCount, restartCount and the audit counter (Part 3, 24.6; the
reference implementation's TPM2_Clear).  ChangeEPS and
ChangePPS (platform authorization) do the same for the endorsement and
platform seeds: a new EK, every old endorsement key gone.
"""

from simxen.tpm.algorithms import HASHES
from simxen.tpm.commands import command
from simxen.tpm.constants import TPM_ALG, TPM_CC, TPM_RC, TPM_RH, TPMA_NV
from simxen.tpm.creation import (creation_outputs, make_object, parse_sensitive_create,
                                 primary_stream, validate_template)
from simxen.tpm.errors import TpmError
from simxen.tpm.limits import DA_DEFAULTS
from simxen.tpm.marshal import tpm2b, u16, u32
from simxen.tpm.pcr_selection import parse_pcr_selection
from simxen.tpm.public import Public


def parse_creation_params(r):
    """inSensitive, inPublic, outsideInfo, creationPCR of CreatePrimary/Create."""
    auth, data = parse_sensitive_create(r.at(1))
    pub = r.at(2).sized(Public.parse)
    outside = r.at(3).tpm2b(66)                      # TPM2B_DATA: sizeof(TPMT_HA)
    selection = parse_pcr_selection(r.at(4), known_hashes=HASHES)
    r.done()
    return auth, data, pub, outside, selection


@command(TPM_CC.CreatePrimary, handles=("hierarchy+",), auth=1, decrypt=True, encrypt=True)
def create_primary(tpm, cmd):
    auth, data, pub, outside, selection = parse_creation_params(cmd.r)
    validate_template(pub, data, 2)
    hierarchy = cmd.handles[0]
    seed = tpm.hierarchy_seed(hierarchy)
    template_name = pub.name
    stream = primary_stream(seed, template_name, data)
    obj = make_object(pub, auth, data, hierarchy, stream,
                      cache_key=(seed, template_name, data))
    obj.qualified_name = u16(pub.name_alg) + HASHES[pub.name_alg].digest(
        u32(hierarchy) + obj.name)
    handle = tpm.add_object(obj)
    hname = u32(hierarchy)
    cd, ch, tk = creation_outputs(tpm, obj, selection, cmd.locality, TPM_ALG.NULL, hname,
                                  hname, outside)
    return u32(handle), tpm2b(pub.marshal()) + cd + ch + tk + tpm2b(obj.name)


@command(TPM_CC.HierarchyChangeAuth, handles=("hierarchy_auth",), auth=1, decrypt=True)
def hierarchy_change_auth(tpm, cmd):
    r = cmd.r
    new_auth = r.tpm2b(64)
    r.done()
    tpm.hierarchy_auth[cmd.handles[0]] = new_auth.rstrip(b"\0")
    tpm.nv_changed = True
    return b"", b""


@command(TPM_CC.SetPrimaryPolicy, handles=("hierarchy_auth",), auth=1, decrypt=True)
def set_primary_policy(tpm, cmd):
    r = cmd.r
    policy = r.at(1).tpm2b(64)
    alg = r.at(2).u16()
    if alg != TPM_ALG.NULL and alg not in HASHES:
        raise TpmError(TPM_RC.HASH, param=2)
    r.done()
    if alg == TPM_ALG.NULL:
        if policy:
            raise TpmError(TPM_RC.SIZE, param=1)
    elif len(policy) != HASHES[alg].size:
        raise TpmError(TPM_RC.SIZE, param=1)
    tpm.hierarchy_policy[cmd.handles[0]] = (alg, policy)
    tpm.nv_changed = True
    return b"", b""


@command(TPM_CC.HierarchyControl, handles=("hierarchy",), auth=1)
def hierarchy_control(tpm, cmd):
    r = cmd.r
    enable = r.at(1).u32()
    attr = {TPM_RH.OWNER: "sh_enable", TPM_RH.ENDORSEMENT: "eh_enable",
            TPM_RH.PLATFORM: "ph_enable", TPM_RH.PLATFORM_NV: "ph_enable_nv"}.get(enable)
    if attr is None:                                 # TPMI_RH_ENABLES
        raise TpmError(TPM_RC.VALUE, param=1)
    state = r.at(2).yes_no()
    r.done()
    auth = cmd.handles[0]
    # owner and endorsement may only disable themselves (enabling an enabled
    # hierarchy changes nothing, and is allowed: the reference)
    if auth != TPM_RH.PLATFORM and (enable in (TPM_RH.PLATFORM, TPM_RH.PLATFORM_NV)
                                    or enable != auth
                                    or state and not getattr(tpm, attr)):
        raise TpmError(TPM_RC.AUTH_TYPE)
    setattr(tpm, attr, bool(state))
    if not state:
        hierarchy = {"sh_enable": TPM_RH.OWNER, "eh_enable": TPM_RH.ENDORSEMENT,
                     "ph_enable": TPM_RH.PLATFORM}.get(attr)
        for h in [h for h, o in tpm.objects.items() if o.hierarchy == hierarchy]:
            del tpm.objects[h]
    tpm.nv_changed = True
    return b"", b""


@command(TPM_CC.ClearControl, handles=("clear",), auth=1)
def clear_control(tpm, cmd):
    r = cmd.r
    disable = r.yes_no()
    r.done()
    if cmd.handles[0] == TPM_RH.LOCKOUT and not disable:
        raise TpmError(TPM_RC.AUTH_FAIL)
    tpm.disable_clear = bool(disable)
    tpm.nv_changed = True
    return b"", b""


@command(TPM_CC.Clear, handles=("clear",), auth=1)
def clear(tpm, cmd):
    cmd.r.done()
    if tpm.disable_clear:
        raise TpmError(TPM_RC.DISABLED)
    tpm.sps = tpm.random_bytes(32)
    tpm.sh_proof = tpm.random_bytes(32)
    tpm.eh_proof = tpm.random_bytes(32)
    for h in (TPM_RH.OWNER, TPM_RH.ENDORSEMENT, TPM_RH.LOCKOUT):
        tpm.hierarchy_auth[h] = b""
        tpm.hierarchy_policy[h] = (TPM_ALG.NULL, b"")
    tpm.sh_enable = tpm.eh_enable = True
    owner_side = (TPM_RH.OWNER, TPM_RH.ENDORSEMENT)
    tpm.objects = {h: o for h, o in tpm.objects.items() if o.hierarchy not in owner_side}
    tpm.persistent = {h: o for h, o in tpm.persistent.items()
                      if o.hierarchy not in owner_side}
    tpm.nv_indices = {h: nv for h, nv in tpm.nv_indices.items()
                      if nv.attributes & TPMA_NV.PLATFORMCREATE}
    tpm.da_failed_tries = 0
    tpm.da_max_tries, tpm.da_recovery_time, tpm.da_lockout_recovery = DA_DEFAULTS
    tpm.lockout_auth_locked = False
    # a new owner starts a new time line: Clock, resetCount, restartCount, the
    # count of Restarts and the audit counter go to zero (the count of Resets
    # that saved contexts bind does not)
    tpm.set_clock(0)
    tpm.reset_count = tpm.restart_count = tpm.clear_count = 0
    tpm.command_audit.counter = 0
    tpm.pcr_auth = {}                       # the PCRs' authValues, not their values
    tpm.pcrs.update_counter += 1
    tpm.nv_changed = True
    return b"", b""


def _replace_seed(tpm, hierarchy, seed_attr, proof_attr):
    """ChangeEPS/ChangePPS: a new primary seed and proof, and every object of
    the hierarchy (loaded or persistent) gone with the old seed."""
    setattr(tpm, seed_attr, tpm.random_bytes(32))
    setattr(tpm, proof_attr, tpm.random_bytes(32))
    tpm.hierarchy_auth[hierarchy] = b""
    tpm.hierarchy_policy[hierarchy] = (TPM_ALG.NULL, b"")
    tpm.objects = {h: o for h, o in tpm.objects.items() if o.hierarchy != hierarchy}
    tpm.persistent = {h: o for h, o in tpm.persistent.items() if o.hierarchy != hierarchy}
    tpm.nv_changed = True


@command(TPM_CC.ChangeEPS, handles=("platform",), auth=1)
def change_eps(tpm, cmd):
    cmd.r.done()
    _replace_seed(tpm, TPM_RH.ENDORSEMENT, "eps", "eh_proof")
    return b"", b""


@command(TPM_CC.ChangePPS, handles=("platform",), auth=1)
def change_pps(tpm, cmd):
    cmd.r.done()
    _replace_seed(tpm, TPM_RH.PLATFORM, "pps", "ph_proof")
    return b"", b""
