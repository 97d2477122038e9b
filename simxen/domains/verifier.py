"""The remote verifier: enrols an agent's AK, then judges its evidence.

The verifier stands *outside* the Xen host: it makes no hypercall and maps
no page. It reaches the guest's :mod:`attestation agent
<simxen.domains.attestation_agent>` over a network :class:`Link` whose
one-way latency comes from the timing profile (ops ``net.link`` and
``net.per_byte``), and trusts nothing it has not checked itself.

**Enrolment** (:meth:`Verifier.enrol`, :meth:`Verifier.confirm`), as
attestation servers do it. The verifier knows the vTPM's EK public area
(exported when the vTPM was provisioned). It checks that the offered AK is a
restricted, fixedTPM signing key, then runs ``TPM2_MakeCredential`` *in
software* (Part 1, 24 "Credential Protection"; Part 3, 12.6)::

    ECC EK: ephemeral key e;  Z = x(e * Q_EK)
            seed = KDFe(nameAlg, Z, "IDENTITY", x(Q_e), x(Q_EK), digest bits)
            encryptedSecret = TPMS_ECC_POINT(Q_e)
    RSA EK: seed = random;  encryptedSecret = RSA-OAEP(EK, seed, label "IDENTITY\\0")
    symKey  = KDFa(nameAlg, seed, "STORAGE", Name(AK), "", EK symmetric key bits)
    hmacKey = KDFa(nameAlg, seed, "INTEGRITY", "", "", digest bits)
    encIdentity = AES-CFB(symKey, IV = 0, TPM2B(credential))
    credentialBlob = TPM2B(HMAC(hmacKey, encIdentity || Name(AK))) || encIdentity

Only a TPM holding the EK's private key can recover ``seed``, and it
releases the credential only for an object whose Name is the AK's -- so a
correct answer proves the AK and the EK are in the same TPM. Only then is
the AK trusted.

**Appraisal** (:meth:`Verifier.appraise`) of one :class:`Evidence` for one
nonce, in this order; every failed check adds a :class:`Reason`:

1. the quote is signed by the enrolled AK (ECDSA/RSASSA over TPMS_ATTEST) --
   a quote relayed from another TPM fails here;
2. it is a TPM-generated quote, its ``extraData`` is *this* nonce (freshness:
   a replayed old quote fails here) and it covers the PCRs asked for;
3. the PCR values sent with it hash to its ``pcrDigest`` (so they are the
   signed ones);
4. the TPM's clock did not run backwards since the last quote
   (``resetCount``/``clock``: a vTPM whose state was rolled back);
5. the event log replays to the quoted PCRs; each pv-grub event matches the
   policy's golden digest (kernel PCR 4; command line, initrd PCR 5);
6. the IMA list replays to PCR 10, starts with the right
   ``boot_aggregate``, and lists only files the policy allows;
7. the quoted PCRs equal any golden PCR values of the policy;
8. with a deep quote: the manager's physical-TPM quote is signed by the
   host's AIK, binds this nonce and this vTPM quote, was asked for by this
   guest's vTPM (its UUID hash, ``VTPM_QUOTE_FLAGS_HASH_UUID``), and the
   host's PCRs equal the host policy. It is judged even when the vTPM quote
   failed: it is the host's evidence, not the guest's.

**Logs seen before.** A fleet's guests boot the same images and run the same
programs, so their event logs and IMA lists are, byte for byte, the ones the
verifier has already parsed and replayed (and each guest sends the same log
every round). The verifier remembers the parse and replay of the last
:data:`REPLAYS_KEPT` distinct logs, keyed by their bytes and the bank, and
checks a known log against the quoted PCRs without replaying it again; the
checks and their outcome are the same as for a log never seen.

A :class:`Verdict` passes only without reasons; each reason names the PCR,
the event and the expected versus found digest. Bad evidence (bytes that do
not parse, a list that does not replay) is a reason, never an exception.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Optional

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

try:                                    # cryptography >= 43 moved CFB here
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:                     # pragma: no cover
    from cryptography.hazmat.primitives.ciphers.modes import CFB

from simxen.domains.policy import BOOT_ITEMS, format_digest
from simxen.errors import InputError
from simxen.protocols import ima as ima_list
from simxen.protocols import tcg_eventlog as tl
from simxen.tpm.attest import Attest
from simxen.tpm.constants import (TPM_ALG, TPM_ECC, TPM_GENERATED_VALUE, TPM_ST, TPMA_OBJECT)
from simxen.tpm.errors import TpmError
from simxen.tpm.kdf import kdfa, kdfe
from simxen.tpm.pcr_selection import pcr_indices
from simxen.tpm.public import Public
from simxen.tpm.signature import Signature

__all__ = ["Link", "Reason", "Verdict", "Enrolment", "Verifier", "EnrolmentRefused", "make_credential",
           "public_key", "verify_signature", "pcr_digest", "BANK_IDS"]

BANK_IDS = {"sha1": TPM_ALG.SHA1, "sha256": TPM_ALG.SHA256, "sha384": TPM_ALG.SHA384,
            "sha512": TPM_ALG.SHA512}
_HASH_NAMES = {v: k for k, v in BANK_IDS.items()}
_CURVES = {TPM_ECC.NIST_P256: ec.SECP256R1(), TPM_ECC.NIST_P384: ec.SECP384R1()}
_CRYPTO_HASH = {"sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384,
                "sha512": hashes.SHA512}


# --------------------------------------------------------------------- link
class Link:
    """A network path between the verifier and a host: every message costs
    one draw of ``net.link`` plus ``net.per_byte`` times its size.

    :param env: the SimPy environment; :param profile: the timing profile;
    :param rng: this link's own random stream.
    """

    def __init__(self, env, profile, rng, *, trace=None, name="verifier-link"):
        self.env = env
        self.name = name
        self.trace = trace
        self._latency = profile.sampler("net.link", rng)
        self._per_byte = profile.sampler("net.per_byte", rng)
        self.messages = 0
        self.bytes = 0

    def send(self, what: str, nbytes: int):
        """Generator: carry one message of ``nbytes`` across the link."""
        delay = self._latency() + self._per_byte() * nbytes
        self.messages += 1
        self.bytes += nbytes
        if self.trace is not None:
            self.trace.emit("net.send", self.env.now, None, link=self.name, what=what,
                            size=nbytes, delay=delay)
        yield self.env.timeout(delay)


# -------------------------------------------------------------------- crypto
def public_key(pub: Public):
    """A ``cryptography`` public key from a TPMT_PUBLIC (ECC or RSA)."""
    if pub.type == TPM_ALG.ECC:
        x, y = pub.unique
        return ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"),
                                             _CURVES[pub.curve]).public_key()
    if pub.type == TPM_ALG.RSA:
        return rsa.RSAPublicNumbers(pub.exponent or 65537,
                                    int.from_bytes(pub.unique, "big")).public_key()
    raise ValueError(f"object type {pub.type:#06x} has no public key")


def verify_signature(pub: Public, message: bytes, sig: Signature, key=None) -> bool:
    """Whether ``sig`` (TPMT_SIGNATURE) is ``pub``'s signature over ``message``.

    ``key`` is ``public_key(pub)`` when the caller has it already (building it
    checks the point is on the curve, some 50 us; a verifier that quotes the same
    AK every round keeps it: :meth:`Enrolment.ak_key`).
    """
    name = _HASH_NAMES.get(sig.hash)
    if name is None:
        return False
    h = _CRYPTO_HASH[name]()
    try:
        if key is None:
            key = public_key(pub)
        if sig.alg == TPM_ALG.ECDSA and pub.type == TPM_ALG.ECC:
            der = utils.encode_dss_signature(int.from_bytes(sig.r, "big"),
                                             int.from_bytes(sig.s, "big"))
            key.verify(der, message, ec.ECDSA(h))
        elif sig.alg == TPM_ALG.RSASSA and pub.type == TPM_ALG.RSA:
            key.verify(sig.sig, message, padding.PKCS1v15(), h)
        elif sig.alg == TPM_ALG.RSAPSS and pub.type == TPM_ALG.RSA:
            key.verify(sig.sig, message, padding.PSS(padding.MGF1(h), padding.PSS.AUTO), h)
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def _tpm2b(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def make_credential(ek: Public, ak_name: bytes, credential: bytes, random_bytes):
    """TPM2_MakeCredential in software: ``(credentialBlob, encryptedSecret)``.

    ``random_bytes(n)`` supplies the ephemeral ECC key or the RSA seed.
    """
    hname = _HASH_NAMES[ek.name_alg]
    bits = hashlib.new(hname).digest_size * 8
    if ek.type == TPM_ALG.ECC:
        curve = _CURVES[ek.curve]
        order = {TPM_ECC.NIST_P256: 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
                 TPM_ECC.NIST_P384: int("ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4"
                                        "372ddf581a0db248b0a77aecec196accc52973", 16)}[ek.curve]
        size = (curve.key_size + 7) // 8
        d = int.from_bytes(random_bytes(size + 8), "big") % (order - 1) + 1
        eph = ec.derive_private_key(d, curve)
        z = eph.exchange(ec.ECDH(), public_key(ek))
        nums = eph.public_key().public_numbers()
        ex, ey = nums.x.to_bytes(size, "big"), nums.y.to_bytes(size, "big")
        seed = kdfe(hname, z, b"IDENTITY", ex, ek.unique[0], bits)
        secret = _tpm2b(ex) + _tpm2b(ey)
    elif ek.type == TPM_ALG.RSA:
        seed = random_bytes(bits // 8)
        h = _CRYPTO_HASH[hname]()
        secret = public_key(ek).encrypt(seed, padding.OAEP(padding.MGF1(h), h, b"IDENTITY\0"))
    else:
        raise ValueError("an EK is an RSA or ECC key")
    sym_bits = ek.symmetric[1] or 128
    sym_key = kdfa(hname, seed, b"STORAGE", ak_name, b"", sym_bits)
    enc = Cipher(algorithms.AES(sym_key), CFB(bytes(16))).encryptor()
    enc_identity = enc.update(_tpm2b(credential)) + enc.finalize()
    hmac_key = kdfa(hname, seed, b"INTEGRITY", b"", b"", bits)
    outer = hmac.new(hmac_key, enc_identity + ak_name, hname).digest()
    return _tpm2b(outer) + enc_identity, secret


def pcr_digest(hash_name: str, values) -> bytes:
    """H(PCR values concatenated in selection order), as TPMS_QUOTE_INFO holds."""
    return hashlib.new(hash_name, b"".join(values)).digest()


class EnrolmentRefused(Exception):
    """The verifier will not enrol this AK (the message says why)."""


# ------------------------------------------------------------------ verdicts
@dataclass
class Reason:
    """Why a verdict failed. ``check`` is a short word (``signature``,
    ``nonce``, ``boot``, ``ima``, ``pcr``, ``replay``, ``rollback``, ``host``,
    ``enrolment``); ``pcr``, ``event``, ``expected``, ``found`` are filled
    when they apply."""

    check: str
    text: str
    pcr: Optional[int] = None
    event: Optional[str] = None
    expected: Optional[str] = None
    found: Optional[str] = None

    def line(self) -> str:
        out = self.text
        if self.expected is not None or self.found is not None:
            out += f" (expected {self.expected}, found {self.found})"
        return out


@dataclass
class Verdict:
    """The verifier's answer for one nonce."""

    agent: str
    nonce: bytes
    reasons: list = field(default_factory=list)
    checks: list = field(default_factory=list)      #: the checks that held, in order
    host_checked: bool = False

    @property
    def passed(self) -> bool:
        return not self.reasons

    @property
    def word(self) -> str:
        return "trusted" if self.passed else "untrusted"

    @property
    def failed_checks(self) -> list:
        return sorted({r.check for r in self.reasons})

    def fail(self, check, text, **kw):
        self.reasons.append(Reason(check, text, **kw))

    def as_dict(self) -> dict:
        return {"verdict": self.word, "passed": self.passed, "reasons": len(self.reasons),
                "failed_checks": ",".join(self.failed_checks),
                "first_reason": self.reasons[0].line() if self.reasons else ""}


@dataclass
class Enrolment:
    """One agent as the verifier knows it."""

    ek: Public
    ak: Public
    credential: bytes
    trusted: bool = False
    last_clock: Optional[tuple] = None     #: (resetCount, restartCount, clock) last seen
    _ak_key: object = field(default=None, init=False, repr=False, compare=False)

    def ak_key(self):
        """``public_key(self.ak)``, built once: every round's quote is checked against the
        same AK. ``None`` if the AK has no public key a verifier can use (the check
        then fails as :func:`verify_signature` says)."""
        if self._ak_key is None:
            try:
                self._ak_key = public_key(self.ak)
            except ValueError:
                return None
        return self._ak_key


# ------------------------------------------------------------------ verifier
#: distinct (log bytes, bank) replays the verifier remembers (the oldest is forgotten)
REPLAYS_KEPT = 64


class _Replays:
    """The parse and replay of the logs seen last: ``(log, bank) -> result``,
    where ``result`` is what ``work(log, bank)`` returned (an exception is not kept)."""

    def __init__(self, work, kept=REPLAYS_KEPT):
        self.work = work
        self.kept = kept
        self.results = {}

    def __call__(self, log, bank):
        key = (log, bank)
        result = self.results.get(key)
        if result is None:
            result = self.work(log, bank)
            if len(self.results) >= self.kept:
                del self.results[next(iter(self.results))]
            self.results[key] = result
        return result


def _replay_event_log(log: bytes, bank: str):
    """``(events, {pcr: value})``: a TCG event log parsed and replayed in ``bank``."""
    events = tl.parse(log)[1] if log else []
    return events, tl.replay(events, algorithms=[bank]).get(bank, {})


def _replay_ima_list(text: str, bank: str):
    """``(entries, {pcr: value})``: an IMA ascii list parsed and replayed in ``bank``."""
    entries = ima_list.parse_list(text, source="IMA list")
    return entries, ima_list.replay(entries, (bank,))[bank]


class Verifier:
    """A verifier holding one golden policy.

    :param policy: a :class:`~simxen.domains.policy.Policy`.
    :param random_bytes: its own seeded stream (nonces, credentials).
    :param host_aik: the manager's physical-TPM AIK public area (a
        :class:`Public`), needed to check deep quotes.
    """

    def __init__(self, policy, random_bytes, *, host_aik: Optional[Public] = None):
        self.policy = policy
        self.random_bytes = random_bytes
        self.host_aik = host_aik
        #: why the host's administrator could not export the AIK, if it failed
        self.host_aik_error: Optional[str] = None
        self.agents: dict[str, Enrolment] = {}
        self.known_eks: dict[str, bytes] = {}     #: agent -> Name of its provisioned EK
        self.known_uuids: dict[str, bytes] = {}   #: agent -> its vTPM's UUID (16 bytes)
        self.nonces_issued = 0
        self._event_logs = _Replays(_replay_event_log)
        self._ima_lists = _Replays(_replay_ima_list)

    # -- enrolment ------------------------------------------------------
    def provision(self, agent: str, ek_public: bytes, *, vtpm_uuid: Optional[bytes] = None) -> None:
        """Record the EK the vTPM exported when it was provisioned: from now
        on ``agent`` can only enrol AKs that live beside this EK. ``vtpm_uuid``
        (16 bytes, the ``uuid`` of the vTPM's xl config) lets a deep quote made
        with ``VTPM_QUOTE_FLAGS_HASH_UUID`` prove which vTPM asked for it."""
        try:
            self.known_eks[agent] = Public.from_bytes(ek_public).name
        except TpmError as exc:
            raise EnrolmentRefused(f"{agent}: the EK public area does not parse ({exc})") from None
        if vtpm_uuid is not None:
            self.known_uuids[agent] = bytes(vtpm_uuid)

    def enrol(self, agent: str, ek_public: bytes, ak_public: bytes):
        """Start enrolling ``agent``: returns ``(credentialBlob, secret)`` for
        ``TPM2_ActivateCredential``. Raises :class:`EnrolmentRefused` for an
        unusable AK or an EK other than the provisioned one."""
        try:
            ek = Public.from_bytes(ek_public)
            ak = Public.from_bytes(ak_public)
        except TpmError as exc:
            raise EnrolmentRefused(f"{agent}: a public area does not parse ({exc})") from None
        known = self.known_eks.get(agent)
        if known is not None and known != ek.name:
            raise EnrolmentRefused(f"{agent}: its EK {ek.name.hex()[:20]}... is not the one "
                                   f"provisioned ({known.hex()[:20]}...): another TPM")
        need = TPMA_OBJECT.fixedTPM | TPMA_OBJECT.restricted | TPMA_OBJECT.sign
        if ak.attributes & need != need or ak.attributes & TPMA_OBJECT.decrypt:
            raise EnrolmentRefused(f"{agent}: the AK is not a restricted fixedTPM signing key")
        credential = self.random_bytes(32)
        blob, secret = make_credential(ek, ak.name, credential, self.random_bytes)
        self.agents[agent] = Enrolment(ek, ak, credential)
        return blob, secret

    def confirm(self, agent: str, answer: bytes) -> bool:
        """Finish enrolment: the AK is trusted iff ``answer`` is the credential."""
        e = self.agents.get(agent)
        if e is None:
            return False
        e.trusted = hmac.compare_digest(answer, e.credential)
        return e.trusted

    # -- challenge ------------------------------------------------------
    def nonce(self) -> bytes:
        """A fresh 20-byte nonce."""
        self.nonces_issued += 1
        return self.random_bytes(20)

    @property
    def request(self) -> tuple[str, tuple]:
        """``(bank, pcrs)`` the verifier asks to be quoted."""
        return self.policy.bank, self.policy.quote_pcrs

    # -- appraisal ------------------------------------------------------
    def appraise(self, agent: str, nonce: bytes, evidence, *, deep: bool = False,
                 deep_quote_flags: int = 0) -> Verdict:
        """Judge ``evidence`` (an :class:`~simxen.domains.attestation_agent.Evidence`)."""
        v = Verdict(agent, nonce)
        e = self.agents.get(agent)
        quoted = None
        if e is None or not e.trusted:
            v.fail("enrolment", f"{agent} has no enrolled AK: its quotes cannot be trusted")
        else:
            quoted = self._check_quote(v, e, nonce, evidence)
        if quoted is not None:
            self._check_boot(v, evidence, quoted)
            self._check_ima(v, evidence, quoted)
            self._check_golden_pcrs(v, quoted)
        if deep:        # the host's evidence stands on its own, judge it in any case
            self._check_deep_quote(v, nonce, evidence, deep_quote_flags)
        return v

    def _check_quote(self, v, e, nonce, evidence):
        """Checks 1-4; the quoted ``{pcr: value}`` of the policy's bank, or None."""
        bank, wanted = self.request
        if not evidence.attest:
            v.fail("signature", "no quote came back")
            return None
        try:
            attest = Attest.from_bytes(evidence.attest)
            sig = Signature.from_bytes(evidence.signature)
        except TpmError:
            v.fail("signature", "the quote does not parse as TPMS_ATTEST + TPMT_SIGNATURE")
            return None
        if not verify_signature(e.ak, evidence.attest, sig, key=e.ak_key()):
            v.fail("signature", f"the quote is not signed by the AK enrolled for {v.agent} "
                   "(a quote from another TPM, or altered)",
                   expected=f"AK {e.ak.name.hex()[:16]}...", found="a signature it does not verify")
            return None
        v.checks.append("signature by the enrolled AK")
        if attest.magic != TPM_GENERATED_VALUE or attest.type != TPM_ST.ATTEST_QUOTE:
            v.fail("signature", "the signed structure is not a TPM-generated quote",
                   expected=f"{TPM_GENERATED_VALUE:#x}/{TPM_ST.ATTEST_QUOTE:#x}",
                   found=f"{attest.magic:#x}/{attest.type:#x}")
            return None
        if not hmac.compare_digest(attest.extra_data, nonce):
            v.fail("nonce", "the quote answers another challenge: a replayed or relayed quote",
                   expected=nonce.hex(), found=attest.extra_data.hex())
            return None
        v.checks.append("fresh: extraData is this nonce")
        sel = [(alg, sorted(pcr_indices(bm))) for alg, bm in attest.attested["pcr_select"]]
        if sel != [(BANK_IDS[bank], sorted(wanted))]:
            v.fail("pcr", f"the quote covers {sel}, not {bank} PCRs {list(wanted)}")
            return None
        values = evidence.pcr_values.get(bank, {})
        if sorted(values) != sorted(wanted):
            v.fail("pcr", f"PCR values sent for {sorted(values)}, not {list(wanted)}")
            return None
        digest = pcr_digest(_HASH_NAMES[sig.hash], [values[p] for p in sorted(wanted)])
        if digest != attest.attested["pcr_digest"]:
            v.fail("pcr", "the PCR values sent do not hash to the quote's pcrDigest",
                   expected=attest.attested["pcr_digest"].hex(), found=digest.hex())
            return None
        v.checks.append("PCR values match the signed pcrDigest")
        clock = (attest.reset_count, attest.restart_count, attest.clock)
        # A TPM's resetCount never decreases, and within one reset cycle its
        # clock never runs backwards: either seen means an older state came
        # back. (A rollback followed by a restart increments resetCount and
        # escapes this check -- the manager's hash check is what catches it.)
        if e.last_clock is not None and (clock[0] < e.last_clock[0] or (
                clock[0] == e.last_clock[0] and clock[2] < e.last_clock[2])):
            v.fail("rollback", "the vTPM's clock went backwards since its last quote: its state "
                   "was rolled back", expected=f"resetCount >= {e.last_clock[0]}, clock >= "
                   f"{e.last_clock[2]} ms", found=f"resetCount {clock[0]}, clock {clock[2]} ms")
        else:
            v.checks.append("TPM clock monotonic")
        e.last_clock = clock
        return dict(values)

    def _check_boot(self, v, evidence, quoted):
        """Check 5: event log replay and pv-grub's golden digests."""
        from simxen.domains.pvgrub import CONFIG_PCR, KERNEL_PCR, item_of_event
        bank, _ = self.request
        size = hashlib.new(bank).digest_size
        try:                                    # a guest booted without a boot loader has no log
            events, replayed = self._event_logs(evidence.event_log, bank)
        except InputError as exc:
            v.fail("replay", f"the event log does not parse: {exc}")
            return
        ok = True
        for pcr in sorted(quoted):
            if pcr == ima_list.IMA_PCR:
                continue
            want = replayed.get(pcr, bytes(size))
            if want != quoted[pcr]:
                ok = False
                v.fail("replay", f"PCR {pcr}: the event log does not replay to the quoted value",
                       pcr=pcr, expected=want.hex(), found=quoted[pcr].hex())
        if ok:
            v.checks.append("event log replays to the quoted PCRs")
        seen = {}
        for number, ev in enumerate(events, start=1):
            if ev.pcr not in (KERNEL_PCR, CONFIG_PCR):
                continue
            item = item_of_event(ev)
            seen[item] = number
            golden = self.policy.boot.get(item)
            digest = ev.digests.get(BANK_IDS[golden[0]]) if golden else None
            if golden is None:
                v.fail("boot", f"PCR {ev.pcr}, event {number} ({item}, {ev.type_name}): "
                       "the policy has no golden value for it", pcr=ev.pcr,
                       event=f"{number} {item}", expected="no such event",
                       found=format_digest(bank, ev.digests.get(BANK_IDS[bank], b"")))
            elif digest != golden[1]:
                v.fail("boot", f"PCR {ev.pcr}, event {number} ({item}, {ev.type_name}) "
                       f"measured a {item} the policy does not approve", pcr=ev.pcr,
                       event=f"{number} {item}", expected=format_digest(*golden),
                       found=format_digest(golden[0], digest or b""))
        for item in BOOT_ITEMS:
            if item in self.policy.boot and item not in seen:
                pcr = KERNEL_PCR if item == "kernel" else CONFIG_PCR
                v.fail("boot", f"PCR {pcr}: no {item} measurement; PCR {pcr} is "
                       f"{quoted.get(pcr, b'').hex()[:16]}... -- the guest was not booted "
                       f"through pv-grub, so nothing vouches for its {item}",
                       pcr=pcr, event=f"missing {item}",
                       expected=format_digest(*self.policy.boot[item]), found="no event")
        if all(r.check != "boot" for r in v.reasons) and self.policy.boot:
            v.checks.append("kernel, command line and initrd match the policy")

    def _check_ima(self, v, evidence, quoted):
        """Check 6: IMA list replay, boot_aggregate and the allow list."""
        pcr = ima_list.IMA_PCR
        if pcr not in quoted:
            return
        bank, _ = self.request
        try:
            entries, replayed = self._ima_lists(evidence.ima_list, bank)
        except InputError as exc:
            v.fail("ima", f"the IMA list does not parse: {exc}", pcr=pcr)
            return
        replayed = replayed.get(pcr, bytes(len(quoted[pcr])))
        if replayed != quoted[pcr]:
            v.fail("ima", f"PCR {pcr}: the IMA list does not replay to the quoted value "
                   "(entries hidden or altered)", pcr=pcr, expected=replayed.hex(),
                   found=quoted[pcr].hex())
            return
        v.checks.append("IMA list replays to PCR 10")
        if entries and entries[0].path == ima_list.BOOT_AGGREGATE_NAME:
            try:
                algo, agg = ima_list.boot_aggregate({bank: quoted}, entries[0].algo)
            except InputError as exc:
                v.fail("ima", f"PCR {pcr}: no boot_aggregate from the quoted PCRs ({exc})", pcr=pcr)
                return
            if entries[0].file_digest != agg:
                v.fail("ima", f"PCR {pcr}, entry 1 (boot_aggregate) does not match the quoted "
                       "PCRs 0-9", pcr=pcr, event="1 boot_aggregate",
                       expected=format_digest(algo, agg),
                       found=format_digest(entries[0].algo, entries[0].file_digest))
        elif self.policy.ima:
            v.fail("ima", f"PCR {pcr}: the IMA list does not start with boot_aggregate", pcr=pcr)
        for number, entry in enumerate(entries, start=1):
            if entry.path == ima_list.BOOT_AGGREGATE_NAME and number == 1:
                continue
            found = format_digest(entry.algo, entry.file_digest)
            golden = self.policy.ima.get(entry.path)
            if entry.is_violation:
                v.fail("ima", f"PCR {pcr}, entry {number} ({entry.path}): an IMA violation "
                       "(file changed while measured)", pcr=pcr, event=f"{number} {entry.path}")
            elif golden is None:
                v.fail("ima", f"PCR {pcr}, entry {number} ({entry.path}): a file the policy "
                       "does not know was executed", pcr=pcr, event=f"{number} {entry.path}",
                       expected="a file of the policy", found=found)
            elif golden != (entry.algo, entry.file_digest):
                v.fail("ima", f"PCR {pcr}, entry {number} ({entry.path}): its content differs "
                       "from the approved one", pcr=pcr, event=f"{number} {entry.path}",
                       expected=format_digest(*golden), found=found)
        if not any(r.check == "ima" for r in v.reasons):
            v.checks.append("every executed file is in the policy")

    def _check_golden_pcrs(self, v, quoted):
        """Check 7: golden final PCR values, where the policy gives them."""
        bank, _ = self.request
        golden = self.policy.pcrs.get(bank, {})
        for pcr, want in golden.items():
            if pcr in quoted and quoted[pcr] != want:
                v.fail("pcr", f"PCR {pcr} differs from the policy's golden value", pcr=pcr,
                       expected=want.hex(), found=quoted[pcr].hex())

    def _check_deep_quote(self, v, nonce, evidence, flags):
        """Check 8: the manager's physical-TPM quote and the host policy."""
        from simxen.protocols import vtpmmgr
        v.host_checked = True
        if evidence.deep_quote is None:
            v.fail("host", "no deep quote came back: the manager did not answer GET_QUOTE")
            return
        if self.host_aik is None:
            why = (f" (exporting it from the manager failed: {self.host_aik_error})"
                   if self.host_aik_error else "")
            v.fail("host", f"the verifier knows no AIK for this host{why}")
            return
        try:
            rc = vtpmmgr.response_code(evidence.deep_quote)
            if rc:
                v.fail("host", f"the manager refused the deep quote (return code {rc})")
                return
            reply = vtpmmgr.parse_get_quote_response(evidence.deep_quote, flags)
            attest = Attest.from_bytes(reply.attest)
            sig = Signature.from_bytes(reply.signature)
        except (vtpmmgr.VtpmmgrError, TpmError) as exc:
            v.fail("host", f"the deep quote does not parse: {exc}")
            return
        if not verify_signature(self.host_aik, reply.attest, sig):
            v.fail("host", "the deep quote is not signed by the host's AIK")
            return
        data = hashlib.sha256(nonce + evidence.attest).digest()
        want = vtpmmgr.deep_quote_external_data(data, flags, reply.hashes)
        if attest.extra_data != want:
            v.fail("host", "the deep quote does not bind this nonce and this vTPM quote",
                   expected=want.hex(), found=attest.extra_data.hex())
            return
        sel = [(alg, sorted(pcr_indices(bm))) for alg, bm in attest.attested["pcr_select"]]
        values = list(reply.pcr_values)
        flat = [(alg, p) for alg, pcrs in sel for p in pcrs]
        if len(flat) != len(values) or pcr_digest(_HASH_NAMES[sig.hash], values) != \
                attest.attested["pcr_digest"]:
            v.fail("host", "the host PCR values in the deep quote do not hash to its pcrDigest")
            return
        v.checks.append("deep quote signed by the host AIK and bound to this quote")
        uuid = self.known_uuids.get(v.agent)
        if flags & vtpmmgr.VTPM_QUOTE_FLAGS_HASH_UUID and uuid is not None:
            want_hash = vtpmmgr.deep_quote_hashes(vtpmmgr.VTPM_QUOTE_FLAGS_HASH_UUID, uuid=uuid)[0]
            if reply.hashes[0] != want_hash:
                v.fail("host", f"the deep quote was asked for by another vTPM than {v.agent}'s "
                       f"(UUID {uuid.hex()})", event="vTPM UUID", expected=want_hash.hex(),
                       found=reply.hashes[0].hex())
                return
            v.checks.append("deep quote asked for by this guest's vTPM (UUID)")
        host = {(alg, p): value for (alg, p), value in zip(flat, values)}
        bad = False
        for bank_name, golden in self.policy.host_pcrs.items():
            for pcr, want_value in golden.items():
                found = host.get((BANK_IDS[bank_name], pcr))
                if found is None:
                    v.fail("host", f"host PCR {pcr} ({bank_name}) is not in the deep quote",
                           pcr=pcr)
                    bad = True
                elif found != want_value:
                    v.fail("host", f"host PCR {pcr} ({bank_name}) differs from the host policy: "
                           "the host did not boot the approved software", pcr=pcr,
                           event="physical TPM", expected=want_value.hex(), found=found.hex())
                    bad = True
        if not bad:
            v.checks.append("host PCRs match the host policy")
