"""Key derivation functions of Part 1, 11.4.10.

:func:`kdfa` is SP 800-108 counter mode with HMAC, exactly as the reference
implementation's ``CryptKDFa``: for i = 1, 2, ...

    K_i = HMAC(key, u32(i) || label || 00 || contextU || contextV || u32(bits))

and the result is the leftmost ``bits`` of K_1 || K_2 || ...  (the 00 is not
added when the label already ends with a zero byte).  :func:`kdfe` is the
SP 800-56A concatenation KDF used with ECDH salts.
"""

import hmac
import struct

_U32 = struct.Struct(">I")


def kdfa(hash_name, key, label, context_u, context_v, bits):
    """``bits`` of key material derived from ``key`` (``label`` is ``bytes``)."""
    if not label.endswith(b"\0"):
        label = label + b"\0"
    tail = label + context_u + context_v + _U32.pack(bits)
    nbytes = (bits + 7) // 8
    out = bytearray()
    i = 1
    while len(out) < nbytes:
        out += hmac.digest(key, _U32.pack(i) + tail, hash_name)
        i += 1
    out = bytes(out[:nbytes])
    if bits % 8:
        out = bytes((out[0] & (0xFF >> (8 - bits % 8)),)) + out[1:]
    return out


def kdfe(hash_name, z, label, party_u, party_v, bits):
    """SP 800-56A KDF: ``H(u32(i) || Z || label || 00 || partyU || partyV)``."""
    import hashlib
    if not label.endswith(b"\0"):
        label = label + b"\0"
    nbytes = (bits + 7) // 8
    out = bytearray()
    i = 1
    while len(out) < nbytes:
        out += hashlib.new(hash_name, _U32.pack(i) + z + label + party_u + party_v).digest()
        i += 1
    return bytes(out[:nbytes])
