"""Client side: build marshalled commands and parse responses.

For simulated domains (pv-grub, guest kernels, the attestation agent) that
must send real TPM 2.0 commands without re-implementing marshalling::

    >>> from simxen.tpm import client, TpmEngine
    >>> from simxen.tpm.constants import TPM_ALG
    >>> tpm = TpmEngine(seed=b"doc", powered=True)
    >>> client.check(tpm.execute(client.startup_command()))
    >>> cmd = client.pcr_extend_command(10, {TPM_ALG.SHA256: bytes(32)})
    >>> client.check(tpm.execute(cmd))
    >>> counter, values = client.parse_pcr_read(
    ...     tpm.execute(client.pcr_read_command({TPM_ALG.SHA256: [10]})))
    >>> values[TPM_ALG.SHA256][10].hex()[:16]
    'f5a5fd42d16a2030'

Every ``*_command`` returns ``bytes``; every ``parse_*`` takes the response
bytes, raises :class:`ResponseError` for a non-zero response code, and
returns Python values.  Authorization here is the password session
(``TPM_RS_PW``); HMAC and policy sessions are for clients that keep session
state (tpm2-tools does).
"""

import struct

from simxen.tpm import header
from simxen.tpm.algorithms import HASHES
from simxen.tpm.attest import Attest
from simxen.tpm.constants import (TPM_ALG, TPM_CAP, TPM_CC, TPM_RH, TPM_SE, TPM_ST, TPM_SU,
                                  rc_name)
from simxen.tpm.marshal import Reader, tpm2b, u16, u32
from simxen.tpm.pcr_selection import (marshal_pcr_selection, parse_pcr_selection, pcr_indices,
                                     select_bytes)
from simxen.tpm.public import Public
from simxen.tpm.signature import Signature


class ResponseError(Exception):
    """A response whose code is not TPM_RC_SUCCESS."""

    def __init__(self, rc):
        super().__init__(f"{rc_name(rc)} ({rc:#05x})")
        self.rc = rc


def password_auth(password=b""):
    """An authorization area with one password session (TPM_RS_PW)."""
    area = u32(TPM_RH.PW) + tpm2b(b"") + b"\x01" + tpm2b(password)
    return area


def build_command(cc, handles=(), params=b"", auths=None):
    """A complete command: header, handles, optional authorization area
    (``auths``: list of TPMS_AUTH_COMMAND bytes) and parameters."""
    body = b"".join(u32(h) for h in handles)
    if auths:
        area = b"".join(auths)
        body += u32(len(area)) + area
        tag = TPM_ST.SESSIONS
    else:
        tag = TPM_ST.NO_SESSIONS
    body += params
    return header.pack(tag, cc, body)


class Response:
    """A parsed response: ``rc``, ``tag``, ``handles`` and a :class:`Reader`
    ``params`` over the response parameters."""

    __slots__ = ("tag", "rc", "handles", "params", "raw")

    def __init__(self, raw, n_handles=0):
        if len(raw) < 10:
            raise ResponseError(0x101)
        self.raw = raw
        self.tag, size, self.rc = header.HEADER.unpack_from(raw)
        self.handles = []
        if self.rc:
            self.params = Reader(b"")
            return
        pos = 10
        for _ in range(n_handles):
            self.handles.append(struct.unpack_from(">I", raw, pos)[0])
            pos += 4
        if self.tag == TPM_ST.SESSIONS:
            psize = struct.unpack_from(">I", raw, pos)[0]
            pos += 4
            self.params = Reader(raw, pos, pos + psize)
        else:
            self.params = Reader(raw, pos, len(raw))


def parse_response(raw, n_handles=0):
    """A :class:`Response`; raises :class:`ResponseError` on failure."""
    rsp = Response(raw, n_handles)
    if rsp.rc:
        raise ResponseError(rsp.rc)
    return rsp


def response_code(raw):
    """The response code of a response (``struct.error`` if it is shorter than a header)."""
    return header.HEADER.unpack_from(raw)[2]


def check(raw):
    """Raise :class:`ResponseError` unless the response is a success.

    What :func:`parse_response` raises, without building the :class:`Response`
    (and its parameter reader) that a check throws away: a response shorter than
    a header is ``0x101``, a failure its code; a successful one with sessions
    but no ``parameterSize`` goes through the parse (``struct.error``)."""
    if len(raw) < 10:
        raise ResponseError(0x101)
    tag, _, rc = header.HEADER.unpack_from(raw)
    if rc:
        raise ResponseError(rc)
    if tag == TPM_ST.SESSIONS and len(raw) < 14:
        parse_response(raw)


def selection_of(pcrs):
    """``{hashAlg: [pcr, ...]}`` -> list of (hashAlg, bitmap) for marshalling."""
    return [(alg, select_bytes(indices)) for alg, indices in pcrs.items()]


# -- start-up, random, capability -----------------------------------------
def startup_command(su=TPM_SU.CLEAR):
    return build_command(TPM_CC.Startup, params=u16(su))


def shutdown_command(su=TPM_SU.CLEAR):
    return build_command(TPM_CC.Shutdown, params=u16(su))


def get_random_command(n):
    return build_command(TPM_CC.GetRandom, params=u16(n))


def parse_get_random(raw):
    return parse_response(raw).params.tpm2b()


def get_capability_command(cap, prop=0, count=127):
    return build_command(TPM_CC.GetCapability, params=u32(cap) + u32(prop) + u32(count))


def parse_get_capability(raw):
    """``(moreData, capability, list)``; list items are ints (handles,
    commands), ``(alg, attrs)``, ``(property, value)`` or a PCR selection."""
    r = parse_response(raw).params
    more = bool(r.u8())
    cap = r.u32()
    if cap == TPM_CAP.PCRS:
        return more, cap, parse_pcr_selection(r)
    n = r.u32()
    if cap == TPM_CAP.ALGS:
        items = [(r.u16(), r.u32()) for _ in range(n)]
    elif cap == TPM_CAP.TPM_PROPERTIES:
        items = [(r.u32(), r.u32()) for _ in range(n)]
    elif cap == TPM_CAP.ECC_CURVES:
        items = [r.u16() for _ in range(n)]
    elif cap == TPM_CAP.PCR_PROPERTIES:
        items = [(r.u32(), r.bytes(r.u8())) for _ in range(n)]
    else:
        items = [r.u32() for _ in range(n)]
    return more, cap, items


# -- PCRs ----------------------------------------------------------------
def pcr_extend_command(pcr, digests, password=b""):
    """PCR_Extend of ``pcr`` with ``{hashAlg: digest}``."""
    values = u32(len(digests)) + b"".join(u16(alg) + d for alg, d in digests.items())
    return build_command(TPM_CC.PCR_Extend, (pcr,), values, [password_auth(password)])


def pcr_event_command(pcr, data, password=b""):
    return build_command(TPM_CC.PCR_Event, (pcr,), tpm2b(data), [password_auth(password)])


def parse_pcr_event(raw):
    """``{hashAlg: digest}`` the TPM extended."""
    r = parse_response(raw).params
    out = {}
    for _ in range(r.u32()):
        alg = r.u16()
        out[alg] = r.bytes(HASHES[alg].size)
    return out


def pcr_reset_command(pcr, password=b""):
    return build_command(TPM_CC.PCR_Reset, (pcr,), b"", [password_auth(password)])


def pcr_read_command(pcrs):
    """PCR_Read of ``{hashAlg: [pcr, ...]}``."""
    return build_command(TPM_CC.PCR_Read, params=marshal_pcr_selection(selection_of(pcrs)))


def parse_pcr_read(raw):
    """``(pcrUpdateCounter, {hashAlg: {pcr: digest}})`` of what was read."""
    r = parse_response(raw).params
    counter = r.u32()
    sel = parse_pcr_selection(r)
    digests = [r.tpm2b() for _ in range(r.u32())]
    out = {}
    it = iter(digests)
    for alg, bitmap in sel:
        bank = out.setdefault(alg, {})
        for i in pcr_indices(bitmap):
            bank[i] = next(it)
    return counter, out


# -- objects and attestation --------------------------------------------
def create_primary_command(hierarchy, template, *, user_auth=b"", data=b"",
                           password=b"", creation_pcrs=None):
    """CreatePrimary under ``hierarchy`` with ``template`` (a :class:`Public`
    or TPMT_PUBLIC bytes)."""
    pub = template.marshal() if isinstance(template, Public) else template
    sens = tpm2b(user_auth) + tpm2b(data)
    params = (tpm2b(sens) + tpm2b(pub) + tpm2b(b"")
              + marshal_pcr_selection(selection_of(creation_pcrs or {})))
    return build_command(TPM_CC.CreatePrimary, (hierarchy,), params, [password_auth(password)])


def parse_create_primary(raw):
    """``(handle, Public, name)``."""
    rsp = parse_response(raw, 1)
    r = rsp.params
    pub = Public.from_bytes(r.tpm2b())
    r.tpm2b()           # creationData
    r.tpm2b()           # creationHash
    r.u16(); r.u32(); r.tpm2b()   # creationTicket
    name = r.tpm2b()
    return rsp.handles[0], pub, name


def create_command(parent, template, *, user_auth=b"", data=b"", password=b""):
    pub = template.marshal() if isinstance(template, Public) else template
    sens = tpm2b(user_auth) + tpm2b(data)
    params = tpm2b(sens) + tpm2b(pub) + tpm2b(b"") + u32(0)
    return build_command(TPM_CC.Create, (parent,), params, [password_auth(password)])


# -- NV ----------------------------------------------------------------------
def nv_public(index, size, attributes, *, name_alg=TPM_ALG.SHA256, auth_policy=b""):
    """A marshalled ``TPMS_NV_PUBLIC`` (Part 2, 13.5): index, nameAlg, attributes,
    authPolicy, dataSize."""
    return u32(index) + u16(name_alg) + u32(attributes) + tpm2b(auth_policy) + u16(size)


def nv_define_space_command(index, size, attributes, *, auth_handle=TPM_RH.OWNER, auth=b"",
                            password=b""):
    """``TPM2_NV_DefineSpace`` of ``index`` (``auth`` is the new index's authValue)."""
    return build_command(TPM_CC.NV_DefineSpace, (auth_handle,),
                         tpm2b(auth) + tpm2b(nv_public(index, size, attributes)),
                         [password_auth(password)])


def nv_increment_command(index, *, auth_handle=None, password=b""):
    """``TPM2_NV_Increment`` of a counter index, authorised by ``auth_handle``
    (default: the index's own authValue)."""
    return build_command(TPM_CC.NV_Increment,
                         (index if auth_handle is None else auth_handle, index), b"",
                         [password_auth(password)])


def nv_read_command(index, size, offset=0, *, auth_handle=None, password=b""):
    """``TPM2_NV_Read`` of ``size`` bytes at ``offset`` (default authorisation: the index's)."""
    return build_command(TPM_CC.NV_Read, (index if auth_handle is None else auth_handle, index),
                         u16(size) + u16(offset), [password_auth(password)])


def nv_write_command(index, data, offset=0, *, auth_handle=None, password=b""):
    """``TPM2_NV_Write`` of ``data`` at ``offset`` (default authorisation: the index's)."""
    return build_command(TPM_CC.NV_Write, (index if auth_handle is None else auth_handle, index),
                         tpm2b(data) + u16(offset), [password_auth(password)])


def template_type(command):
    """The ``type`` (TPM_ALG) of the template a ``TPM2_CreatePrimary`` or ``TPM2_Create``
    command carries, or ``None`` for any other command or one too short to tell.

    Both commands have one handle, an authorization area, ``inSensitive`` and then
    ``inPublic`` whose first field is the type (Part 3, 12.1 and 24.1).
    """
    if len(command) < 14:
        return None
    tag, _, cc = header.HEADER.unpack_from(command)
    if cc not in (TPM_CC.CreatePrimary, TPM_CC.Create):
        return None
    pos = 14
    try:
        if tag == TPM_ST.SESSIONS:
            (auth_size,) = struct.unpack_from(">I", command, pos)
            pos += 4 + auth_size
        (sens_size,) = struct.unpack_from(">H", command, pos)
        pos += 2 + sens_size + 2                    # skip inSensitive and inPublic's size
        (alg,) = struct.unpack_from(">H", command, pos)
    except struct.error:
        return None
    return alg


def parse_create(raw):
    """``(outPrivate bytes, Public)``."""
    r = parse_response(raw).params
    private = r.tpm2b()
    return private, Public.from_bytes(r.tpm2b())


def load_command(parent, private, public, password=b""):
    pub = public.marshal() if isinstance(public, Public) else public
    return build_command(TPM_CC.Load, (parent,), tpm2b(private) + tpm2b(pub),
                         [password_auth(password)])


def parse_load(raw):
    """``(handle, name)``."""
    rsp = parse_response(raw, 1)
    return rsp.handles[0], rsp.params.tpm2b()


def flush_context_command(handle):
    return build_command(TPM_CC.FlushContext, params=u32(handle))


def read_public_command(handle):
    return build_command(TPM_CC.ReadPublic, (handle,))


def parse_read_public(raw):
    """``(Public, name, qualifiedName)``."""
    r = parse_response(raw).params
    return Public.from_bytes(r.tpm2b()), r.tpm2b(), r.tpm2b()


def quote_command(key, qualifying_data, pcrs, scheme=(TPM_ALG.NULL, TPM_ALG.NULL),
                  password=b""):
    """Quote ``{hashAlg: [pcr...]}`` with ``key``; ``scheme`` is
    ``(sigScheme, hashAlg)`` or NULL for the key's own scheme."""
    s = u16(scheme[0]) + (u16(scheme[1]) if scheme[0] != TPM_ALG.NULL else b"")
    params = tpm2b(qualifying_data) + s + marshal_pcr_selection(selection_of(pcrs))
    return build_command(TPM_CC.Quote, (key,), params, [password_auth(password)])


def parse_quote(raw):
    """``(attest bytes, Attest, Signature)``."""
    r = parse_response(raw).params
    quoted = r.tpm2b()
    return quoted, Attest.from_bytes(quoted), Signature.parse(r)


def start_auth_session_command(nonce_caller, session_type=TPM_SE.HMAC, auth_hash=TPM_ALG.SHA256,
                               tpm_key=TPM_RH.NULL, bind=TPM_RH.NULL, encrypted_salt=b"",
                               symmetric=(TPM_ALG.NULL, 0, 0)):
    from simxen.tpm.public import marshal_sym_def
    params = (tpm2b(nonce_caller) + tpm2b(encrypted_salt) + bytes((session_type,))
              + marshal_sym_def(symmetric) + u16(auth_hash))
    return build_command(TPM_CC.StartAuthSession, (tpm_key, bind), params)


def parse_start_auth_session(raw):
    """``(sessionHandle, nonceTPM)``."""
    rsp = parse_response(raw, 1)
    return rsp.handles[0], rsp.params.tpm2b()


# -- HMAC and policy sessions, caller side ---------------------------------
class AuthSessionClient:
    """The caller's half of an HMAC or policy session (Part 1, 19).

    Keeps the rolling nonces, computes command HMACs over cpHash, checks the
    response HMAC over rpHash, and optionally encrypts the first command
    parameter / decrypts the first response parameter with AES-CFB::

        s = AuthSessionClient.start(tpm.execute, random_bytes=os.urandom)
        cmd = s.command(TPM_CC.Unseal, [handle], [name], b"", auth_value=b"")
        data = s.response(tpm.execute(cmd), TPM_CC.Unseal).params.tpm2b()

    ``salt_key`` (a :class:`Public`) salts the session; ``bind`` /
    ``bind_auth`` bind it.
    """

    def __init__(self, handle, hash_alg, nonce_tpm, session_key, random_bytes,
                 nonce_size, symmetric, bind_name=None):
        self.handle = handle
        self.hash = HASHES[hash_alg]
        self.nonce_tpm = nonce_tpm
        self.session_key = session_key
        self.random_bytes = random_bytes
        self.nonce_size = nonce_size
        self.symmetric = symmetric
        self.bind_name = bind_name
        self.nonce_caller = b""
        self._key = b""
        self._attrs = 0

    @classmethod
    def start(cls, execute, *, random_bytes, session_type=TPM_SE.HMAC, auth_hash=TPM_ALG.SHA256,
              salt_key=None, salt_key_handle=TPM_RH.NULL, bind=TPM_RH.NULL, bind_name=None,
              bind_auth=b"", symmetric=(TPM_ALG.NULL, 0, 0), nonce_size=32):
        from simxen.tpm.kdf import kdfa
        h = HASHES[auth_hash]
        nonce_caller = random_bytes(nonce_size)
        salt, encrypted = b"", b""
        if salt_key is not None:
            salt, encrypted = make_salt(salt_key, random_bytes)
        raw = execute(start_auth_session_command(nonce_caller, session_type, auth_hash,
                                                 salt_key_handle, bind, encrypted, symmetric))
        handle, nonce_tpm = parse_start_auth_session(raw)
        key = b""
        if salt or bind != TPM_RH.NULL:
            key = kdfa(h.name, bind_auth.rstrip(b"\0") + salt, b"ATH", nonce_tpm, nonce_caller,
                       8 * h.size)
        s = cls(handle, auth_hash, nonce_tpm, key, random_bytes, nonce_size, symmetric,
                bind_name if bind != TPM_RH.NULL else None)
        s.nonce_caller = nonce_caller
        return s

    def command(self, cc, handles, names, params, auth_value=b"", *, include_auth=None,
                attributes=0x01, encrypt_first=False, decrypt_response=False):
        """A complete command authorized by this session.

        ``names`` are the Names of all handles (for cpHash); ``auth_value``
        is the authorized entity's.  ``encrypt_first`` encrypts the first
        parameter (attribute ``decrypt``); ``decrypt_response`` asks the TPM
        to encrypt the first response parameter (attribute ``encrypt``)."""
        self.nonce_caller = self.random_bytes(self.nonce_size)
        if include_auth is None:
            include_auth = self.bind_name is None or self.bind_name not in names[:1]
        self._key = self.session_key + (auth_value.rstrip(b"\0") if include_auth else b"")
        if encrypt_first:
            attributes |= 0x20
            params = self._cfb_first(params, self.nonce_caller, self.nonce_tpm, True)
        if decrypt_response:
            attributes |= 0x40
        self._attrs = attributes
        cp = self.hash.digest(u32(cc) + b"".join(names) + params)
        mac = self.hash.hmac(self._key, cp + self.nonce_caller + self.nonce_tpm
                             + bytes((attributes,)))
        area = u32(self.handle) + tpm2b(self.nonce_caller) + bytes((attributes,)) + tpm2b(mac)
        return build_command(cc, handles, params, [area])

    def response(self, raw, cc, n_handles=0):
        """Check the response HMAC, roll the nonce, return a :class:`Response`
        (its first parameter decrypted if the command asked for that).
        :class:`ResponseError` for a TPM error, ``ValueError`` for a bad HMAC."""
        rsp = parse_response(raw, n_handles)
        r = rsp.params
        params = raw[r.pos:r.end]
        tail = Reader(raw, r.end)
        nonce = tail.tpm2b()
        attrs = tail.u8()
        mac = tail.tpm2b()
        rp = self.hash.digest(b"\0\0\0\0" + u32(cc) + params)
        expected = self.hash.hmac(self._key, rp + nonce + self.nonce_caller + bytes((attrs,)))
        if mac != expected:
            raise ValueError("response HMAC does not verify")
        self.nonce_tpm = nonce
        if self._attrs & 0x40:
            rsp.params = Reader(self._cfb_first(params, nonce, self.nonce_caller, False))
        return rsp

    def _cfb_first(self, params, newer, older, encrypt):
        from simxen.tpm.kdf import kdfa
        from simxen.tpm.protection import cfb
        bits = self.symmetric[1]
        km = kdfa(self.hash.name, self._key, b"CFB", newer, older, bits + 128)
        size = struct.unpack_from(">H", params, 0)[0]
        body = cfb(km[:bits // 8], km[bits // 8:], params[2:2 + size], encrypt)
        return params[:2] + body + params[2 + size:]


def make_salt(public, random_bytes):
    """``(salt, encryptedSalt)`` for a session salted to ``public``'s key."""
    from simxen.tpm import keys
    from simxen.tpm.kdf import kdfe
    from cryptography.hazmat.primitives.asymmetric import ec, padding
    h = HASHES[public.name_alg]
    if public.type == TPM_ALG.RSA:
        salt = random_bytes(h.size)
        pub = keys.rsa_public_key(public.unique, public.exponent)
        cls = keys.HASH_CLASSES[public.name_alg]
        enc = pub.encrypt(salt, padding.OAEP(mgf=padding.MGF1(cls()), algorithm=cls(),
                                             label=b"SECRET\0"))
        return salt, enc
    d = keys.ecc_scalar(public.curve, random_bytes(keys.ecc_material_size(public.curve)))
    eph = keys.ecc_private_key(public.curve, d)
    qx, qy = keys.ecc_point(eph, public.curve)
    z = eph.exchange(ec.ECDH(), keys.ecc_public_key(public.curve, *public.unique))
    salt = kdfe(h.name, z, b"SECRET", qx, public.unique[0], 8 * h.size)
    return salt, tpm2b(qx) + tpm2b(qy)
