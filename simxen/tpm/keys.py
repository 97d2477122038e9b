"""Asymmetric keys: generation from a byte source, signing and verifying.

The engine never asks ``cryptography`` for randomness: keys come from bytes
the engine hands in (a KDFa stream for primaries, the engine's
``random_bytes`` for ordinary keys), so the same seed gives the same key.

* ECC (P-256, P-384, P-521): ``d = (int(bytes) mod (n - 1)) + 1`` from
  ``orderBits + 64`` bits, FIPS 186-4 B.4.1 "extra random bits".
* RSA: a deterministic prime search over the byte stream (odd candidates with
  the two top bits set, a small-prime sieve, then Miller-Rabin with bases from
  the same stream), as the reference implementation does from its DRBG.

The sensitive part kept for a key is what TPMT_SENSITIVE holds: ``d`` for
ECC, the first prime ``p`` for RSA (``q = n / p``).
"""

from collections import OrderedDict

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.exceptions import InvalidSignature

from simxen.tpm.constants import TPM_ALG, TPM_ECC

#: The curves this TPM implements, one row each: cryptography's class, the
#: field prime p, the order n, b (a = -3 on all of them) and the base point G
#: (FIPS 186-4, D.1.2.3-D.1.2.5; tests/tpm/test_more_commands.py checks them
#: against cryptography).
_CURVES = {
    TPM_ECC.NIST_P256: (
        ec.SECP256R1, 2 ** 256 - 2 ** 224 + 2 ** 192 + 2 ** 96 - 1,
        0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
        0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B,
        (0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
         0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5)),
    TPM_ECC.NIST_P384: (
        ec.SECP384R1, 2 ** 384 - 2 ** 128 - 2 ** 96 + 2 ** 32 - 1,
        int("ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf"
            "581a0db248b0a77aecec196accc52973", 16),
        int("B3312FA7E23EE7E4988E056BE3F82D19181D9C6EFE8141120314088F5013875A"
            "C656398D8A2ED19D2A85C8EDD3EC2AEF", 16),
        (int("AA87CA22BE8B05378EB1C71EF320AD746E1D3B628BA79B9859F741E082542A38"
             "5502F25DBF55296C3A545E3872760AB7", 16),
         int("3617DE4A96262C6F5D9E98BF9292DC29F8F41DBD289A147CE9DA3113B5F0B8C0"
             "0A60B1CE1D7E819D7A431D7C90EA0E5F", 16))),
    TPM_ECC.NIST_P521: (
        ec.SECP521R1, 2 ** 521 - 1,
        int("01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
            "FA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409", 16),
        int("0051953EB9618E1C9A1F929A21A0B68540EEA2DA725B99B315F3B8B489918EF1"
            "09E156193951EC7E937B1652C0BD3BB1BF073573DF883D2C34F1EF451FD46B503F00", 16),
        (int("00C6858E06B70404E9CD9E3ECB662395B4429C648139053FB521F828AF606B4D"
             "3DBAA14B5E77EFE75928FE1DC127A2FFA8DE3348B3C1856A429BF97E7E31C2E5BD66", 16),
         int("011839296A789A3BC0045C8A5FB42C7D1BD998F54449579B446817AFBD17273E"
             "662C97EE72995EF42640C550B9013FAD0761353C7086A272C24088BE94769FD16650", 16))),
}
CURVE_CLASSES = {c: row[0] for c, row in _CURVES.items()}
CURVE_PRIMES = {c: row[1] for c, row in _CURVES.items()}
CURVE_ORDERS = {c: row[2] for c, row in _CURVES.items()}
CURVE_B = {c: row[3] for c, row in _CURVES.items()}
CURVE_G = {c: row[4] for c, row in _CURVES.items()}
CURVE_BYTES = {c: (p.bit_length() + 7) // 8 for c, p in CURVE_PRIMES.items()}
def generator(curve):
    """The base point G of ``curve`` as fixed-width ``(x, y)`` bytes."""
    size = CURVE_BYTES[curve]
    return tuple(v.to_bytes(size, "big") for v in CURVE_G[curve])


#: the hash each curve's KDF uses (TPMS_ALGORITHM_DETAIL_ECC.kdf)
CURVE_HASHES = {TPM_ECC.NIST_P256: TPM_ALG.SHA256, TPM_ECC.NIST_P384: TPM_ALG.SHA384,
                TPM_ECC.NIST_P521: TPM_ALG.SHA512}
#: RSA modulus sizes this TPM implements
RSA_KEY_BITS = (1024, 2048, 3072)
HASH_CLASSES = {TPM_ALG.SHA1: hashes.SHA1, TPM_ALG.SHA256: hashes.SHA256,
                TPM_ALG.SHA384: hashes.SHA384, TPM_ALG.SHA512: hashes.SHA512}

_SMALL_PRIMES = [p for p in range(3, 2000) if all(p % d for d in range(2, int(p ** 0.5) + 1))]


# -- ECC -----------------------------------------------------------------
def ecc_scalar(curve, material):
    """The private scalar for ``curve`` from ``orderBits + 64`` bits of material."""
    n = CURVE_ORDERS[curve]
    return int.from_bytes(material, "big") % (n - 1) + 1


def ecc_material_size(curve):
    return CURVE_BYTES[curve] + 8


def ecc_private_key(curve, d):
    return ec.derive_private_key(d, CURVE_CLASSES[curve]())


def ecc_point(key, curve):
    """``(x, y)`` of a public or private key, fixed-width big-endian."""
    pub = key.public_key() if hasattr(key, "public_key") else key
    nums = pub.public_numbers()
    size = CURVE_BYTES[curve]
    return nums.x.to_bytes(size, "big"), nums.y.to_bytes(size, "big")


def ecc_public_key(curve, x, y):
    """A public key from a TPMS_ECC_POINT; ``ValueError`` if not on the curve."""
    return ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"),
                                         CURVE_CLASSES[curve]()).public_key()


# -- RSA -----------------------------------------------------------------
def _probable_prime(n, next_bytes, rounds=8):
    for p in _SMALL_PRIMES:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while not d & 1:
        d >>= 1
        s += 1
    nbytes = (n.bit_length() + 7) // 8
    for _ in range(rounds):
        a = int.from_bytes(next_bytes(nbytes), "big") % (n - 3) + 2
        x = pow(a, d, n)
        if x == 1 or x == n - 1:
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def rsa_prime(bits, exponent, next_bytes):
    """A ``bits``-bit prime p with gcd(p - 1, e) = 1 from the byte stream."""
    nbytes = bits // 8
    while True:
        c = int.from_bytes(next_bytes(nbytes), "big") | (3 << (bits - 2)) | 1
        # sieve a window of odd candidates starting at c
        for step in range(0, 2 * 512, 2):
            cand = c + step
            if cand.bit_length() != bits:
                break
            if any(cand % p == 0 for p in _SMALL_PRIMES[:60]):
                continue
            if (cand - 1) % exponent == 0:
                continue
            if _probable_prime(cand, next_bytes):
                return cand


def rsa_private_from_primes(p, q, e):
    n = p * q
    phi = (p - 1) * (q - 1)
    d = pow(e, -1, phi)
    pub = rsa.RSAPublicNumbers(e, n)
    return rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p),
                                 pub).private_key(unsafe_skip_rsa_key_validation=True)


#: Keys already generated, by ``(bits, e, first draw)``: ``(later draw sizes, key)``.
_GENERATED = OrderedDict()
_GENERATED_SIZE = 64


def rsa_generate(bits, exponent, next_bytes):
    """An RSA private key from the byte stream ``next_bytes(n)``.

    The prime search costs ~0.2-1 s of Python per 2048-bit key, and a simulation that
    boots the same host again (the same seed) asks for the same key from a stream in the
    same state. So each result is remembered under the stream's first draw (128 bytes
    for RSA-2048, which name the stream's state): a repeat consumes exactly the draws
    the search took -- leaving the stream where the search would have -- and returns
    the same key. The result is byte-for-byte what the search gives.
    """
    e = exponent or 65537
    first = next_bytes(bits // 16)
    key = (bits, e, first)
    hit = _GENERATED.get(key)
    if hit is not None:
        sizes, private = hit
        for n in sizes:
            next_bytes(n)
        _GENERATED.move_to_end(key)
        return private
    sizes = []
    pending = [first]

    def draw(n):
        if pending:
            return pending.pop()
        sizes.append(n)
        return next_bytes(n)

    private = _rsa_search(bits, e, draw)
    _GENERATED[key] = (tuple(sizes), private)
    while len(_GENERATED) > _GENERATED_SIZE:
        _GENERATED.popitem(last=False)
    return private


def _rsa_search(bits, e, next_bytes):
    while True:
        p = rsa_prime(bits // 2, e, next_bytes)
        q = rsa_prime(bits // 2, e, next_bytes)
        if p != q and (p * q).bit_length() == bits:
            if p < q:
                p, q = q, p
            return rsa_private_from_primes(p, q, e)


def rsa_from_prime(modulus, exponent, p):
    """Rebuild an RSA private key from the public modulus and one prime."""
    q, rem = divmod(modulus, p)
    if rem or q < 2:
        raise ValueError("prime does not divide the modulus")
    return rsa_private_from_primes(p, q, exponent or 65537)


def rsa_public_key(modulus, exponent):
    return rsa.RSAPublicNumbers(exponent or 65537, int.from_bytes(modulus, "big")).public_key()


# -- signatures ------------------------------------------------------------
def ecdsa_sign(key, hash_alg, digest, size):
    """``(r, s)`` fixed-width; deterministic (RFC 6979), so same key and digest,
    same signature."""
    der = key.sign(digest, ec.ECDSA(utils.Prehashed(HASH_CLASSES[hash_alg]()),
                                    deterministic_signing=True))
    r, s = utils.decode_dss_signature(der)
    return r.to_bytes(size, "big"), s.to_bytes(size, "big")


def ecdsa_verify(pub, hash_alg, digest, r, s):
    der = utils.encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big"))
    try:
        pub.verify(der, digest, ec.ECDSA(utils.Prehashed(HASH_CLASSES[hash_alg]())))
        return True
    except (InvalidSignature, ValueError):      # ValueError: a digest of another size
        return False


def rsassa_sign(key, hash_alg, digest):
    return key.sign(digest, padding.PKCS1v15(), utils.Prehashed(HASH_CLASSES[hash_alg]()))


def pss_salt_size(hash_size, key_bytes):
    """The salt length a TPM uses for RSASSA-PSS: the digest's size, or as
    much as the encoded block has room for when the key is too small for that
    (a 1024-bit key with SHA-512 takes 62 bytes: 128 - 64 - 2), as FIPS 186-4
    allows and the reference implementation's ``CryptRsaPssSaltSize`` does."""
    return max(0, min(hash_size, key_bytes - hash_size - 2))


def rsapss_sign(key, hash_alg, digest, salt):
    """RSASSA-PSS with the salt given (its length from :func:`pss_salt_size`),
    computed with the raw RSA operation so the engine's byte source decides
    the salt."""
    import hashlib
    name = HASH_CLASSES[hash_alg].name
    h_len = len(digest)
    nums = key.private_numbers()
    n = nums.public_numbers.n
    em_bits = n.bit_length() - 1
    em_len = (em_bits + 7) // 8
    m_prime = bytes(8) + digest + salt
    h = hashlib.new(name, m_prime).digest()
    ps = bytes(em_len - len(salt) - h_len - 2)
    db = ps + b"\x01" + salt
    mask = _mgf1(name, h, em_len - h_len - 1)
    masked = bytes(a ^ b for a, b in zip(db, mask))
    masked = bytes((masked[0] & (0xFF >> (8 * em_len - em_bits)),)) + masked[1:]
    em = masked + h + b"\xbc"
    sig = pow(int.from_bytes(em, "big"), nums.d, n)
    return sig.to_bytes((n.bit_length() + 7) // 8, "big")


def _mgf1(name, seed, length):
    import hashlib
    out = bytearray()
    counter = 0
    while len(out) < length:
        out += hashlib.new(name, seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return bytes(out[:length])


def rsa_verify(pub, scheme, hash_alg, digest, sig):
    if scheme == TPM_ALG.RSAPSS:
        pad = padding.PSS(mgf=padding.MGF1(HASH_CLASSES[hash_alg]()),
                          salt_length=padding.PSS.AUTO)
    else:
        pad = padding.PKCS1v15()
    try:
        pub.verify(sig, digest, pad, utils.Prehashed(HASH_CLASSES[hash_alg]()))
        return True
    except (InvalidSignature, ValueError):
        return False


def rsa_oaep_decrypt(key, hash_alg, label, data):
    return key.decrypt(data, padding.OAEP(mgf=padding.MGF1(HASH_CLASSES[hash_alg]()),
                                          algorithm=HASH_CLASSES[hash_alg](), label=label))


# -- RSA encryption with the engine's randomness -----------------------------
def oaep_encode(hash_alg, label, message, k, seed):
    """EME-OAEP encoding (PKCS #1 v2.2, 7.1.1) with the given ``seed``."""
    import hashlib
    name = HASH_CLASSES[hash_alg].name
    h_len = hashlib.new(name).digest_size
    if len(message) > k - 2 * h_len - 2:
        raise ValueError("message too long")
    db = (hashlib.new(name, label).digest() + bytes(k - len(message) - 2 * h_len - 2)
          + b"\x01" + message)
    masked_db = bytes(a ^ b for a, b in zip(db, _mgf1(name, seed, k - h_len - 1)))
    masked_seed = bytes(a ^ b for a, b in zip(seed, _mgf1(name, masked_db, h_len)))
    return b"\x00" + masked_seed + masked_db


def pkcs1v15_encode(message, k, random_bytes):
    """EME-PKCS1-v1_5 encoding with non-zero padding from ``random_bytes``."""
    if len(message) > k - 11:
        raise ValueError("message too long")
    ps = bytearray()
    while len(ps) < k - len(message) - 3:
        ps += bytes(b for b in random_bytes(k) if b)
    return b"\x00\x02" + bytes(ps[:k - len(message) - 3]) + b"\x00" + message


def pkcs1v15_decode(block):
    """The message inside an EME-PKCS1-v1_5 block (``00 02 PS 00 M``, PS at
    least 8 non-zero bytes), or ``ValueError``.

    Done here rather than by ``cryptography``: the OpenSSL under it (3.2 and
    later) answers a badly padded block with a made-up message of the right
    size ("implicit rejection", against Bleichenbacher-style oracles), where a
    TPM answers ``TPM_RC_VALUE`` (reference implementation, ``RSAES_Decode``).
    """
    sep = block.find(b"\0", 2)
    if len(block) < 11 or block[:2] != b"\0\2" or sep < 0 or sep - 2 < 8:
        raise ValueError("not a PKCS #1 v1.5 encryption block")
    return block[sep + 1:]


def rsa_raw(modulus, exponent, block):
    """``block ** exponent mod n`` as a big-endian block of the modulus size."""
    k = (modulus.bit_length() + 7) // 8
    m = int.from_bytes(block, "big")
    if m >= modulus:
        raise ValueError("block out of range")
    return pow(m, exponent, modulus).to_bytes(k, "big")


# -- ECC point multiplication (for ECDH_ZGen / ECDH_KeyGen, which return the
#    whole point, not only the x that ``cryptography``'s exchange gives) -----
def _jacobian_double(pt, p):
    x, y, z = pt
    if not y:
        return (0, 1, 0)
    ysq = y * y % p
    s = 4 * x * ysq % p
    zsq = z * z % p
    m = 3 * (x - zsq) * (x + zsq) % p          # a = -3 on the NIST curves
    nx = (m * m - 2 * s) % p
    ny = (m * (s - nx) - 8 * ysq * ysq) % p
    return (nx, ny, 2 * y * z % p)


def _jacobian_add(pt, q, p):
    if not pt[2]:
        return q
    if not q[2]:
        return pt
    x1, y1, z1 = pt
    x2, y2, z2 = q
    z1sq, z2sq = z1 * z1 % p, z2 * z2 % p
    u1, u2 = x1 * z2sq % p, x2 * z1sq % p
    s1, s2 = y1 * z2sq * z2 % p, y2 * z1sq * z1 % p
    if u1 == u2:
        return _jacobian_double(pt, p) if s1 == s2 else (0, 1, 0)
    h, r = (u2 - u1) % p, (s2 - s1) % p
    hsq = h * h % p
    hcu = hsq * h % p
    nx = (r * r - hcu - 2 * u1 * hsq) % p
    ny = (r * (u1 * hsq - nx) - s1 * hcu) % p
    return (nx, ny, h * z1 * z2 % p)


def ecc_multiply(curve, scalar, x, y):
    """``scalar · (x, y)`` on ``curve`` as fixed-width ``(x, y)`` bytes;
    ``ValueError`` for the point at infinity."""
    p = CURVE_PRIMES[curve]
    acc = (0, 1, 0)
    pt = (int.from_bytes(x, "big"), int.from_bytes(y, "big"), 1)
    for bit in bin(scalar)[2:]:
        acc = _jacobian_double(acc, p)
        if bit == "1":
            acc = _jacobian_add(acc, pt, p)
    if not acc[2]:
        raise ValueError("point at infinity")
    zinv = pow(acc[2], -1, p)
    size = CURVE_BYTES[curve]
    return ((acc[0] * zinv * zinv % p).to_bytes(size, "big"),
            (acc[1] * zinv * zinv * zinv % p).to_bytes(size, "big"))
