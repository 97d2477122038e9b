"""Part 3, chapter 12: object commands.

Create makes an ordinary object under a storage parent and returns it
wrapped (TPM2B_PRIVATE, :mod:`simxen.tpm.protection`) with the parent's
seedValue; Load unwraps it again and checks that the sensitive area belongs
to the public area (the private key matches ``unique``).  Ordinary keys
come from the engine's ``random_bytes``.
"""

from simxen.tpm import keys
from simxen.tpm.algorithms import HASHES
from simxen.tpm.commands import command
from simxen.tpm.commands.hierarchy import parse_creation_params
from simxen.tpm.constants import TPM_ALG, TPM_CC, TPM_RC, TPM_RH, TPMA_OBJECT
from simxen.tpm.creation import (HIERARCHIES_PLUS, creation_outputs, make_object,
                                 parse_sensitive_create, primary_stream, qualified_name,
                                 validate_template)
from simxen.tpm.errors import TpmError
from simxen.tpm.marshal import tpm2b, u16, u32
from simxen.tpm.protection import unwrap, wrap
from simxen.tpm.public import Public
from simxen.tpm.tpm_object import TpmObject


def storage_parent(tpm, handle):
    parent = tpm.get_object(handle)
    if not parent.is_storage_parent or parent.sensitive is None:
        raise TpmError(TPM_RC.TYPE, handle=1)
    return parent


def wrap_for(parent, obj):
    return wrap(parent.public.name_alg, parent.seed_value, b"STORAGE", obj.name,
                obj.marshal_sensitive(), parent.public.symmetric[1])


def parse_public_2b(r, param):
    """A TPM2B_PUBLIC parameter (number ``param``)."""
    return r.at(param).sized(Public.parse)


def _sensitive_2b(r):
    """The bytes of a TPM2B_SENSITIVE (empty: none), its fields checked as the
    reference unmarshals them -- sensitiveType first (``TPM_RC_TYPE``), read on
    from the size, which is compared afterwards (``TPM_RC_SIZE``)."""
    size = r.u16()
    start = r.pos
    if size:
        if r.u16() not in (TPM_ALG.RSA, TPM_ALG.ECC, TPM_ALG.KEYEDHASH, TPM_ALG.SYMCIPHER):
            raise TpmError(TPM_RC.TYPE, param=r.param)
        r.tpm2b(64)                       # authValue
        r.tpm2b(64)                       # seedValue
        r.tpm2b()                         # the sensitive value of that type
        if r.pos - start != size:
            raise TpmError(TPM_RC.SIZE, param=r.param)
    return bytes(r.data[start:r.pos])


def check_binding(obj, param):
    """The sensitive area must match the public one: ``TPM_RC_BINDING``."""
    pub = obj.public
    try:
        if pub.type == TPM_ALG.ECC:
            d = int.from_bytes(obj.sensitive, "big")
            if not 0 < d < keys.CURVE_ORDERS[pub.curve] or \
                    keys.ecc_point(keys.ecc_private_key(pub.curve, d), pub.curve) != pub.unique:
                raise TpmError(TPM_RC.BINDING, param=param)
        elif pub.type == TPM_ALG.RSA:
            p = int.from_bytes(obj.sensitive, "big")
            n = int.from_bytes(pub.unique, "big")
            if p < 3 or n % p:
                raise TpmError(TPM_RC.BINDING, param=param)
        elif HASHES[pub.name_alg].digest(obj.seed_value + obj.sensitive) != pub.unique:
            raise TpmError(TPM_RC.BINDING, param=param)
    except ValueError:
        raise TpmError(TPM_RC.BINDING, param=param) from None


@command(TPM_CC.Create, handles=("object",), auth=1, decrypt=True, encrypt=True)
def create(tpm, cmd):
    auth, data, pub, outside, selection = parse_creation_params(cmd.r)
    parent = storage_parent(tpm, cmd.handles[0])    # after the parameters (the reference)
    validate_template(pub, data, 2)
    if pub.attributes & TPMA_OBJECT.fixedTPM and not parent.attributes & TPMA_OBJECT.fixedTPM:
        raise TpmError(TPM_RC.ATTRIBUTES, param=2)
    obj = make_object(pub, auth, data, parent.hierarchy, tpm.random_bytes)
    cd, ch, tk = creation_outputs(tpm, obj, selection, cmd.locality, parent.public.name_alg,
                                  parent.name, parent.qualified_name, outside)
    return b"", tpm2b(wrap_for(parent, obj)) + tpm2b(pub.marshal()) + cd + ch + tk


@command(TPM_CC.Load, handles=("object",), auth=1, decrypt=True)
def load(tpm, cmd):
    r = cmd.r
    private = r.at(1).tpm2b(1024)
    pub = parse_public_2b(r, 2)
    r.done()
    parent = storage_parent(tpm, cmd.handles[0])
    if pub.attributes & TPMA_OBJECT.fixedTPM and not parent.attributes & TPMA_OBJECT.fixedTPM:
        raise TpmError(TPM_RC.ATTRIBUTES, param=2)
    plain = unwrap(parent.public.name_alg, parent.seed_value, b"STORAGE", pub.name, private,
                   parent.public.symmetric[1], param=1)
    auth, seed, secret = TpmObject.parse_sensitive(pub, plain)
    obj = TpmObject(pub, auth, seed, secret, parent.hierarchy)
    check_binding(obj, 1)
    obj.qualified_name = qualified_name(pub.name_alg, parent.qualified_name, obj.name)
    handle = tpm.add_object(obj)
    return u32(handle), tpm2b(obj.name)


@command(TPM_CC.LoadExternal, decrypt=True)
def load_external(tpm, cmd):
    r = cmd.r
    sens = _sensitive_2b(r.at(1))
    pub = parse_public_2b(r, 2)
    hierarchy = r.at(3).u32()
    r.done()
    if hierarchy not in HIERARCHIES_PLUS:
        raise TpmError(TPM_RC.VALUE, param=3)
    if sens:
        if hierarchy != TPM_RH.NULL or pub.attributes & (TPMA_OBJECT.fixedTPM
                                                         | TPMA_OBJECT.fixedParent):
            raise TpmError(TPM_RC.ATTRIBUTES, param=2)
        auth, seed, secret = TpmObject.parse_sensitive(pub, sens)
        obj = TpmObject(pub, auth, seed, secret, hierarchy)
        check_binding(obj, 1)
    else:
        obj = TpmObject(pub, b"", b"", None, hierarchy)
        if pub.type == TPM_ALG.ECC:
            try:
                obj.public_key()
            except ValueError:
                raise TpmError(TPM_RC.ECC_POINT, param=2) from None
    obj.qualified_name = u16(pub.name_alg) + HASHES[pub.name_alg].digest(
        u32(hierarchy) + obj.name)
    handle = tpm.add_object(obj)
    return u32(handle), tpm2b(obj.name)


@command(TPM_CC.ReadPublic, handles=("object",), encrypt=True)
def read_public(tpm, cmd):
    cmd.r.done()
    obj = tpm.get_object(cmd.handles[0])
    return b"", tpm2b(obj.public.marshal()) + tpm2b(obj.name) + tpm2b(obj.qualified_name)


@command(TPM_CC.Unseal, handles=("object",), auth=1, encrypt=True)
def unseal(tpm, cmd):
    cmd.r.done()
    obj = tpm.get_object(cmd.handles[0])
    if obj.public.type != TPM_ALG.KEYEDHASH:
        raise TpmError(TPM_RC.TYPE, handle=1)
    if obj.attributes & (TPMA_OBJECT.sign | TPMA_OBJECT.decrypt | TPMA_OBJECT.restricted):
        raise TpmError(TPM_RC.ATTRIBUTES, handle=1)
    return b"", tpm2b(obj.sensitive)


@command(TPM_CC.ObjectChangeAuth, handles=("object", "object"), auth=1, roles=("admin",),
         decrypt=True, encrypt=True)
def object_change_auth(tpm, cmd):
    r = cmd.r
    new_auth = r.tpm2b(64)
    r.done()
    obj = tpm.get_object(cmd.handles[0])
    if cmd.handles[0] >> 24 != 0x80:
        raise TpmError(TPM_RC.HANDLE, handle=1)
    parent = storage_parent(tpm, cmd.handles[1])
    h = HASHES[obj.public.name_alg]
    if len(new_auth.rstrip(b"\0")) > h.size:
        raise TpmError(TPM_RC.SIZE, param=1)
    changed = TpmObject(obj.public, new_auth, obj.seed_value, obj.sensitive, obj.hierarchy,
                        obj.qualified_name)
    return b"", tpm2b(wrap_for(parent, changed))




@command(TPM_CC.CreateLoaded, handles=("parent",), auth=1, decrypt=True, encrypt=True)
def create_loaded(tpm, cmd):
    """Create and load in one step; under a hierarchy handle it makes a
    primary object exactly as CreatePrimary does."""
    r = cmd.r
    auth, data = parse_sensitive_create(r.at(1))
    pub = parse_public_2b(r, 2)
    r.done()
    validate_template(pub, data, 2)
    handle = cmd.handles[0]
    if handle >> 24 == 0x40:
        seed = tpm.hierarchy_seed(handle)
        template_name = pub.name
        obj = make_object(pub, auth, data, handle, primary_stream(seed, template_name, data),
                          cache_key=(seed, template_name, data))
        obj.qualified_name = u16(pub.name_alg) + HASHES[pub.name_alg].digest(
            u32(handle) + obj.name)
        private = b""
    else:
        parent = storage_parent(tpm, handle)
        if pub.attributes & TPMA_OBJECT.fixedTPM and \
                not parent.attributes & TPMA_OBJECT.fixedTPM:
            raise TpmError(TPM_RC.ATTRIBUTES, param=2)
        obj = make_object(pub, auth, data, parent.hierarchy, tpm.random_bytes)
        obj.qualified_name = qualified_name(pub.name_alg, parent.qualified_name, obj.name)
        private = wrap_for(parent, obj)
    new = tpm.add_object(obj)
    return u32(new), tpm2b(private) + tpm2b(pub.marshal()) + tpm2b(obj.name)
