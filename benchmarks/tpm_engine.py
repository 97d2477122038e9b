"""Commands per second of the TPM engine through ``TpmEngine.execute``.

    python benchmarks/tpm_engine.py [--seconds 2]

Prints PCR_Extend, Quote (ECC P-256, ECDSA/SHA-256, password session) and
CreatePrimary (ECC P-256) rates on one core, each as a ratio to a baseline
measured in the same process (SHA-256 of 64 bytes through hashlib, the cost
floor of one extend), so the numbers compare across machines.  Targets from
the issue: PCR_Extend >= 50,000/s, ECC Quote >= 2,000/s.
"""

import argparse
import hashlib
import time

from arguments import duration
from simxen.tpm import TpmEngine, client
from simxen.tpm.constants import TPM_ALG, TPM_ECC, TPM_RH
from simxen.tpm.public import Public


def rate(fn, seconds):
    """Calls per second of ``fn`` over about ``seconds``."""
    n = 0
    batch = 1
    start = time.perf_counter()
    while True:
        for _ in range(batch):
            fn()
        n += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed
        batch = min(batch * 2, 4096)


def ok(rsp):
    if rsp[6:10] != b"\0\0\0\0":
        raise SystemExit(f"command failed: {rsp.hex()}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=duration, default=2.0, help="time per measurement")
    args = ap.parse_args(argv)
    tpm = TpmEngine(seed=b"bench", powered=True)
    ok(tpm.execute(client.startup_command()))

    extend = client.pcr_extend_command(10, {TPM_ALG.SHA256: bytes(32)})
    srk_template = Public(TPM_ALG.ECC, TPM_ALG.SHA256, 0x00030072,
                          symmetric=(TPM_ALG.AES, 128, TPM_ALG.CFB), curve=TPM_ECC.NIST_P256,
                          unique=(b"", b""))
    ak_template = Public(TPM_ALG.ECC, TPM_ALG.SHA256, 0x00050072,
                         scheme=(TPM_ALG.ECDSA, TPM_ALG.SHA256), curve=TPM_ECC.NIST_P256,
                         unique=(b"", b""))
    primary = client.create_primary_command(TPM_RH.OWNER, srk_template)
    srk, _, _ = client.parse_create_primary(tpm.execute(primary))
    priv, pub = client.parse_create(tpm.execute(client.create_command(srk, ak_template)))
    ak, _ = client.parse_load(tpm.execute(client.load_command(srk, priv, pub)))
    quote = client.quote_command(ak, b"nonce", {TPM_ALG.SHA256: [0, 1, 2, 3, 4, 5, 6, 7]},
                                 (TPM_ALG.ECDSA, TPM_ALG.SHA256))
    ok(tpm.execute(quote))
    flush = client.flush_context_command

    def create_primary():
        rsp = tpm.execute(primary)
        tpm.execute(flush(int.from_bytes(rsp[10:14], "big")))

    data = bytes(64)
    baseline = rate(lambda: hashlib.sha256(data).digest(), args.seconds)
    results = [
        ("PCR_Extend", rate(lambda: tpm.execute(extend), args.seconds), 50000),
        ("Quote (ECC P-256)", rate(lambda: tpm.execute(quote), args.seconds), 2000),
        ("CreatePrimary (ECC P-256) + FlushContext",
         rate(create_primary, args.seconds), None),
    ]
    print(f"baseline: hashlib.sha256(64 bytes) {baseline:,.0f}/s")
    for name, r, target in results:
        verdict = "" if target is None else (
            f"  target {target:,}/s {'met' if r >= target else 'NOT met'}")
        print(f"{name:42s} {r:11,.0f}/s  ratio to baseline {r / baseline:.4f}{verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
