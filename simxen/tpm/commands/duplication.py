"""Part 3, chapter 13: Duplicate, Rewrap and Import.

Duplication moves an object (its sensitive area) from under one parent to
under another, possibly on another TPM (Part 1, 23.3).  The sensitive area
travels in up to two wrappers:

* the **inner** wrapper, optional, under a symmetric key the caller gives
  (or the TPM makes and returns)::

      innerIntegrity = H_nameAlg(TPM2B(sensitive) || Name)
      inner          = CFB(key, IV = 0, TPM2B(innerIntegrity) || TPM2B(sensitive))

* the **outer** wrapper, present when the new parent is not TPM_RH_NULL,
  under a seed shared with the new parent (RSA-OAEP or ECDH with the label
  "DUPLICATE") exactly as Create protects a child (:mod:`~simxen.tpm.protection`).

An object with ``fixedParent`` cannot be duplicated; one with
``encryptedDuplication`` needs both wrappers.  Duplicate is authorised in the
DUP role, that is only by a policy session (whose policy normally names
TPM2_Duplicate with PolicyCommandCode or PolicyDuplicationSelect).  Import
takes such a blob and returns an ordinary TPM2B_PRIVATE for the new parent,
which Load then accepts.
"""

import hmac

from simxen.tpm.algorithms import HASHES
from simxen.tpm.commands import command
from simxen.tpm.commands.credential import make_seed, recover_seed
from simxen.tpm.commands.object_commands import (check_binding, parse_public_2b,
                                                 storage_parent, wrap_for)
from simxen.tpm.constants import TPM_ALG, TPM_CC, TPM_RC, TPM_RH, TPMA_OBJECT
from simxen.tpm.errors import TpmError
from simxen.tpm.marshal import Reader, tpm2b
from simxen.tpm.protection import cfb, sized, unwrap_buffer, wrap_buffer
from simxen.tpm.public import parse_sym_def_object
from simxen.tpm.tpm_object import TpmObject

LABEL = b"DUPLICATE"


def _inner_key(sym, key_in, param):
    """The inner wrapper's key: the caller's, or ``None`` (make one)."""
    if sym[0] != TPM_ALG.AES:
        return None
    if key_in and len(key_in) != sym[1] // 8:
        raise TpmError(TPM_RC.SIZE, param=param)
    return key_in or None


def inner_wrap(name_alg, name, sensitive, key):
    data = tpm2b(sensitive)
    integrity = HASHES[name_alg].digest(data + name)
    return cfb(key, bytes(16), tpm2b(integrity) + data, True)


def inner_unwrap(name_alg, name, blob, key, param):
    r = Reader(cfb(key, bytes(16), blob, False))
    r.param = param
    integrity = r.tpm2b()
    data = r.data[r.pos:]
    expected = HASHES[name_alg].digest(data + name)
    if not hmac.compare_digest(integrity, expected):
        raise TpmError(TPM_RC.INTEGRITY, param=param)
    return sized(data, param)


def _outer(tpm, parent, name, buffer):
    """``(duplicate, outSymSeed)`` for ``parent`` (or none for NULL)."""
    if parent is None:
        return buffer, b""
    seed, secret = make_seed(parent.public, tpm.random_bytes, LABEL)
    blob = wrap_buffer(parent.public.name_alg, seed, b"STORAGE", name, buffer,
                       parent.public.symmetric[1])
    return blob, secret


def _new_parent(tpm, handle, index):
    if handle == TPM_RH.NULL:
        return None
    parent = tpm.get_object(handle)
    if not parent.is_storage_parent:
        raise TpmError(TPM_RC.TYPE, handle=index)
    return parent


def _open_outer(tpm, parent, name, blob, sym_seed, p_blob, p_seed):
    """The buffer inside an outer wrapper from ``parent``'s point of view."""
    if parent.sensitive is None:
        raise TpmError(TPM_RC.KEY)
    seed = recover_seed(parent, sym_seed, p_seed, LABEL)
    return unwrap_buffer(parent.public.name_alg, seed, b"STORAGE", name, blob,
                         parent.public.symmetric[1], param=p_blob)


@command(TPM_CC.Duplicate, handles=("object", "object+"), auth=1, roles=("dup",),
         decrypt=True, encrypt=True)
def duplicate(tpm, cmd):
    r = cmd.r
    key_in = r.at(1).tpm2b(32)
    sym = parse_sym_def_object(r.at(2))
    r.done()
    obj = tpm.get_object(cmd.handles[0])
    a = obj.attributes
    if a & TPMA_OBJECT.fixedParent:
        raise TpmError(TPM_RC.ATTRIBUTES, handle=1)
    if obj.sensitive is None:
        raise TpmError(TPM_RC.KEY, handle=1)
    if a & TPMA_OBJECT.encryptedDuplication:
        if sym[0] == TPM_ALG.NULL:
            raise TpmError(TPM_RC.SYMMETRIC, param=2)
        if cmd.handles[1] == TPM_RH.NULL:
            raise TpmError(TPM_RC.HIERARCHY, handle=2)
    new_parent = _new_parent(tpm, cmd.handles[1], 2)
    key = _inner_key(sym, key_in, 1)
    key_out = b""
    sensitive = obj.marshal_sensitive()
    if sym[0] == TPM_ALG.NULL:
        if key_in:
            raise TpmError(TPM_RC.SIZE, param=1)
        buffer = tpm2b(sensitive)
    else:
        if key is None:
            key = key_out = tpm.random_bytes(sym[1] // 8)
        buffer = inner_wrap(obj.public.name_alg, obj.name, sensitive, key)
    dup, seed = _outer(tpm, new_parent, obj.name, buffer)
    return b"", tpm2b(key_out) + tpm2b(dup) + tpm2b(seed)


@command(TPM_CC.Rewrap, handles=("object+", "object+"), auth=1, decrypt=True, encrypt=True)
def rewrap(tpm, cmd):
    r = cmd.r
    blob = r.at(1).tpm2b(1024)
    name = r.at(2).tpm2b(66)
    sym_seed = r.at(3).tpm2b(512)
    r.done()
    old_handle, new_handle = cmd.handles
    if len(name) < 2 or int.from_bytes(name[:2], "big") not in HASHES:
        raise TpmError(TPM_RC.SIZE, param=2)
    old = _new_parent(tpm, old_handle, 1)
    new = _new_parent(tpm, new_handle, 2)
    if old is not None:
        if not sym_seed:
            raise TpmError(TPM_RC.VALUE, param=3)
        buffer = _open_outer(tpm, old, name, blob, sym_seed, 1, 3)
    else:
        buffer = blob
    dup, seed = _outer(tpm, new, name, buffer)
    return b"", tpm2b(dup) + tpm2b(seed)


@command(TPM_CC.Import, handles=("object",), auth=1, decrypt=True, encrypt=True)
def import_(tpm, cmd):
    r = cmd.r
    key = r.at(1).tpm2b(32)
    pub = parse_public_2b(r, 2)
    blob = r.at(3).tpm2b(1024)
    sym_seed = r.at(4).tpm2b(512)
    sym = parse_sym_def_object(r.at(5))
    r.done()
    parent = storage_parent(tpm, cmd.handles[0])
    a = pub.attributes
    if a & (TPMA_OBJECT.fixedTPM | TPMA_OBJECT.fixedParent):
        raise TpmError(TPM_RC.ATTRIBUTES, param=2)
    if a & TPMA_OBJECT.encryptedDuplication and (sym[0] == TPM_ALG.NULL or not sym_seed):
        raise TpmError(TPM_RC.ATTRIBUTES, param=2)
    name = pub.name
    buffer = _open_outer(tpm, parent, name, blob, sym_seed, 3, 4) if sym_seed else blob
    if sym[0] == TPM_ALG.NULL:
        if key:
            raise TpmError(TPM_RC.SIZE, param=1)
        sensitive = sized(buffer, 3)
    else:
        if len(key) != sym[1] // 8:
            raise TpmError(TPM_RC.SIZE, param=1)
        sensitive = inner_unwrap(pub.name_alg, name, buffer, key, 3)
    auth, seed_value, secret = TpmObject.parse_sensitive(pub, sensitive, 3)
    obj = TpmObject(pub, auth, seed_value, secret, parent.hierarchy)
    check_binding(obj, 3)
    if len(auth) > HASHES[pub.name_alg].size:
        raise TpmError(TPM_RC.SIZE, param=3)
    return b"", tpm2b(wrap_for(parent, obj))
