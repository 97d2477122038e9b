"""Part 3, chapter 19: Commit and EC_Ephemeral, the first phase of the
two-phase ECC operations (see :mod:`simxen.tpm.commit`).

Commit prepares an anonymous (ECDAA) signature with an ECC signing key::

    E = [r]P1            (or [r]G when P1 is empty)
    K = [d](x2, y2)      L = [r](x2, y2)     with x2 = H_nameAlg(s2) mod p,
                                              only when s2 and y2 are given

EC_Ephemeral gives a fresh ephemeral public key ``Q = [r]G`` whose private
part only ZGen_2Phase will use.
"""

from simxen.tpm import keys
from simxen.tpm.algorithms import HASHES
from simxen.tpm.commands import command
from simxen.tpm.commit import commit_scalar, state
from simxen.tpm.constants import TPM_ALG, TPM_CC, TPM_RC, TPMA_OBJECT
from simxen.tpm.errors import TpmError
from simxen.tpm.marshal import Reader, tpm2b, u16


def parse_point(r, param, curve=None):
    """TPM2B_ECC_POINT -> ``(x, y)`` bytes, or ``None`` for the empty point
    (both coordinates empty; the structure itself may not be, TPM_RC_SIZE);
    ``TPM_RC_ECC_POINT`` if it is not on ``curve``."""
    size = r.at(param).u16()
    if size == 0:
        raise TpmError(TPM_RC.SIZE, param=param)
    sub = Reader(r.bytes(size))
    sub.param = param
    x, y = sub.tpm2b(66), sub.tpm2b(66)
    if sub.remaining():
        raise TpmError(TPM_RC.SIZE, param=param)
    if not x and not y:
        return None
    if curve is not None:
        check_on_curve((x, y), curve, param)
    return x, y


def check_on_curve(point, curve, param):
    """``TPM_RC_ECC_POINT`` (of parameter ``param``) unless ``point`` -- an
    ``(x, y)`` pair, or ``None`` -- lies on ``curve``."""
    if point is None:
        return
    try:
        keys.ecc_public_key(curve, *point)
    except ValueError:
        raise TpmError(TPM_RC.ECC_POINT, param=param) from None


def marshal_point(point):
    if point is None:
        return tpm2b(tpm2b(b"") + tpm2b(b""))
    return tpm2b(tpm2b(point[0]) + tpm2b(point[1]))


def parse_curve(r):
    """A TPMI_ECC_CURVE this TPM implements (the command's only parameter),
    with its coordinate size; ``TPM_RC_CURVE`` otherwise."""
    curve = r.u16()
    size = keys.CURVE_BYTES.get(curve)
    if size is None:
        raise TpmError(TPM_RC.CURVE, param=1)
    r.done()
    return curve, size


def _multiply(curve, scalar, point, param):
    try:
        return keys.ecc_multiply(curve, scalar, *point)
    except ValueError:
        raise TpmError(TPM_RC.NO_RESULT, param=param) from None


@command(TPM_CC.Commit, handles=("object",), auth=1, decrypt=True)
def commit(tpm, cmd):
    r = cmd.r
    p1 = parse_point(r, 1)                  # every parameter first (the reference)
    s2 = r.at(2).tpm2b(128)
    y2 = r.at(3).tpm2b(66)
    r.done()
    key = tpm.get_object(cmd.handles[0])
    pub = key.public
    if pub.type != TPM_ALG.ECC:
        raise TpmError(TPM_RC.KEY, handle=1)
    if not pub.attributes & TPMA_OBJECT.sign or pub.scheme[0] != TPM_ALG.ECDAA:
        raise TpmError(TPM_RC.SCHEME, handle=1)
    curve = pub.curve
    check_on_curve(p1, curve, 1)
    if bool(s2) != bool(y2):
        raise TpmError(TPM_RC.SIZE, param=2 if not s2 else 3)
    counter = state(tpm).new_counter()
    k_r = commit_scalar(tpm, key.name, counter, curve)
    size = keys.CURVE_BYTES[curve]
    k_point = l_point = None
    if s2:
        x2 = int.from_bytes(HASHES[pub.name_alg].digest(s2), "big") % keys.CURVE_PRIMES[curve]
        point = (x2.to_bytes(size, "big"), y2)
        try:
            keys.ecc_public_key(curve, *point)
        except ValueError:
            raise TpmError(TPM_RC.ECC_POINT, param=2) from None
        k_point = _multiply(curve, int.from_bytes(key.sensitive, "big"), point, 2)
        l_point = _multiply(curve, k_r, point, 2)
    base = p1 if p1 is not None else keys.generator(curve)
    e_point = _multiply(curve, k_r, base, 1)
    tpm.nv_changed = True
    return b"", (marshal_point(k_point) + marshal_point(l_point) + marshal_point(e_point)
                 + u16(counter & 0xFFFF))


@command(TPM_CC.EC_Ephemeral)
def ec_ephemeral(tpm, cmd):
    curve, _ = parse_curve(cmd.r)
    counter = state(tpm).new_counter()
    k = commit_scalar(tpm, b"", counter, curve)
    return b"", (marshal_point(_multiply(curve, k, keys.generator(curve), 1))
                 + u16(counter & 0xFFFF))
