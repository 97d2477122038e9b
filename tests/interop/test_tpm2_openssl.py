"""OpenSSL's TPM 2.0 provider (Debian's ``tpm2-openssl`` 1.1) against
``simxen tpm serve``.

The provider is what a deployed service uses to keep its key in a TPM: keys
are generated inside the TPM (the PEM file holds the TPM-wrapped private
part), and signing, decryption and random bytes are TPM commands.  Each
``openssl`` command below runs as a user would type it, with
``TPM2OPENSSL_TCTI`` pointing at the server; what the TPM produced is then
checked by plain OpenSSL (no provider: the default one) from the exported
public key alone.

This provider release offers RSA decryption with PKCS #1 v1.5 only (its
``pad-mode`` takes ``pkcs1`` and nothing else), so OAEP is checked the other
way round: an OAEP ciphertext must *not* decrypt as v1.5.  (OAEP decryption
by the TPM is covered by ``tpm2_rsadecrypt -s oaep`` in
``test_tpm2_tools.py``.)
"""

import os
import select
import subprocess
import time

import pytest

from tpm_serve_helpers import (SimxenTpmServer, free_port_pair, require_openssl_provider,
                               require_tool, run_tool)

pytestmark = pytest.mark.interop

PROVIDER = ("-provider", "tpm2", "-provider", "base")
CERT_CONFIG = """\
[ req ]
prompt             = no
distinguished_name = dn
x509_extensions    = ext
[ dn ]
countryName        = GB
commonName         = simxen vTPM key
[ ext ]
basicConstraints   = critical,CA:true
keyUsage           = critical,keyCertSign,digitalSignature
"""


class OpenSSL:
    """``openssl`` in a working folder, with or without the TPM's provider."""

    def __init__(self, openssl, tcti, cwd):
        self.openssl, self.tcti, self.cwd = openssl, tcti, cwd

    def __call__(self, *argv, tpm=False, check=True, stdin=None):
        """``openssl ARGV`` (``tpm``: with ``-provider tpm2 -provider base``
        after the subcommand); the CompletedProcess."""
        args = [self.openssl, argv[0], *(PROVIDER if tpm else ()), *argv[1:]]
        env = dict(os.environ, TPM2OPENSSL_TCTI=self.tcti)
        proc = subprocess.run(args, cwd=self.cwd, env=env, capture_output=True, input=stdin,
                              timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stderr.decode(errors='replace')}")
        return proc


@pytest.fixture(scope="module")
def ossl(tmp_path_factory):
    openssl = require_openssl_provider("tpm2", "tpm2-openssl")
    require_tool("tpm2_startup")
    srv = SimxenTpmServer("mssim")
    cwd = tmp_path_factory.mktemp("tpm2openssl")
    run_tool(srv.tcti, cwd, "tpm2_startup", "-c")
    (cwd / "message").write_bytes(b"measured boot log, signed by the vTPM\n" * 20)
    yield OpenSSL(openssl, srv.tcti, cwd)
    srv.stop()


def tpm_key(ossl, name, *pkeyopts, algorithm):
    """``openssl genpkey`` of a key inside the TPM, and its public key
    exported; the two file names (made once per module)."""
    if not (ossl.cwd / f"{name}.pem").exists():
        opts = [x for o in pkeyopts for x in ("-pkeyopt", o)]
        ossl("genpkey", "-algorithm", algorithm, *opts, "-out", f"{name}.pem", tpm=True)
        ossl("pkey", "-in", f"{name}.pem", "-pubout", "-out", f"{name}.pub", tpm=True)
    return f"{name}.pem", f"{name}.pub"


def rsa_key(ossl):
    return tpm_key(ossl, "rsa", "bits:2048", algorithm="RSA")


def ec_key(ossl):
    return tpm_key(ossl, "ec", "group:P-256", algorithm="EC")


def test_the_private_key_file_is_a_tpm_wrapped_key(ossl):
    key, pub = rsa_key(ossl)
    assert (ossl.cwd / key).read_text().startswith("-----BEGIN TSS2 PRIVATE KEY-----")
    text = ossl("pkey", "-pubin", "-in", pub, "-noout", "-text").stdout.decode()
    assert "Public-Key: (2048 bit)" in text
    # plain OpenSSL cannot use it: there is no private key in the file
    assert ossl("pkey", "-in", key, "-noout", check=False).returncode != 0


@pytest.mark.parametrize("keyname,options", [
    ("rsa", ["-pkeyopt", "pad-mode:pkcs1"]),
    ("rsa", ["-pkeyopt", "pad-mode:pss"]),
    ("ec", []),
])
@pytest.mark.parametrize("digest", ["sha256", "sha384"])
def test_sign_in_the_tpm_verify_with_plain_openssl(ossl, keyname, options, digest):
    key, pub = rsa_key(ossl) if keyname == "rsa" else ec_key(ossl)
    sig = f"{keyname}-{options[-1] if options else 'ecdsa'}-{digest}.sig"
    ossl("pkeyutl", "-sign", "-inkey", key, "-rawin", "-in", "message", "-digest", digest,
         *options, "-out", sig, tpm=True)
    verify = ("pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin", "-digest", digest,
              *options, "-sigfile", sig)
    assert b"Signature Verified Successfully" in ossl(*verify, "-in", "message").stdout
    (ossl.cwd / "other").write_bytes(b"measured boot log, not signed\n")
    assert ossl(*verify, "-in", "other", check=False).returncode != 0


@pytest.mark.parametrize("name,algorithm,option,digest", [
    ("p384", "EC", "group:P-384", "sha384"),
    ("p521", "EC", "group:P-521", "sha512"),
    ("rsa3072", "RSA", "bits:3072", "sha384"),
])
def test_the_other_key_sizes_the_tpm_takes(ossl, name, algorithm, option, digest):
    key, pub = tpm_key(ossl, name, option, algorithm=algorithm)
    ossl("pkeyutl", "-sign", "-inkey", key, "-rawin", "-in", "message", "-digest", digest,
         "-out", f"{name}.sig", tpm=True)
    ossl("pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin", "-in", "message",
         "-digest", digest, "-sigfile", f"{name}.sig")


def test_small_rsa_pss_key_signs_sha512(ossl):
    """A 1024-bit RSA-PSS key with SHA-512 leaves room for a 62-byte salt,
    not 64 (the engine used to fail this with TPM_RC_FAILURE)."""
    key, pub = tpm_key(ossl, "pss1024", "bits:1024", "digest:sha512", algorithm="RSA-PSS")
    ossl("pkeyutl", "-sign", "-inkey", key, "-rawin", "-in", "message", "-out", "pss.sig",
         tpm=True)
    ossl("pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin", "-in", "message",
         "-sigfile", "pss.sig")


def test_rsa_decrypt_pkcs1_of_what_plain_openssl_encrypted(ossl):
    key, pub = rsa_key(ossl)
    (ossl.cwd / "secret").write_bytes(b"disk key 0123456789abcdef")
    ossl("pkeyutl", "-encrypt", "-pubin", "-inkey", pub, "-in", "secret", "-out", "secret.v15")
    ossl("pkeyutl", "-decrypt", "-inkey", key, "-in", "secret.v15", "-out", "secret.out",
         tpm=True)
    assert (ossl.cwd / "secret.out").read_bytes() == b"disk key 0123456789abcdef"


def test_an_oaep_ciphertext_does_not_decrypt_as_pkcs1(ossl):
    """The TPM checks the PKCS #1 v1.5 block (TPM_RC_VALUE), rather than
    handing back a made-up message."""
    key, pub = rsa_key(ossl)
    (ossl.cwd / "secret").write_bytes(b"disk key 0123456789abcdef")
    ossl("pkeyutl", "-encrypt", "-pubin", "-inkey", pub, "-pkeyopt", "rsa_padding_mode:oaep",
         "-in", "secret", "-out", "secret.oaep")
    out = ossl("pkeyutl", "-decrypt", "-inkey", key, "-in", "secret.oaep", "-out", "bad.out",
               tpm=True, check=False)
    assert out.returncode != 0
    assert b"value is out of range or is not correct for the context" in out.stderr


@pytest.mark.parametrize("keyname,options", [("rsa", []), ("rsa", ["-sigopt", "pad-mode:pss"]),
                                             ("ec", [])])
def test_self_signed_certificate_with_the_key_in_the_tpm(ossl, keyname, options):
    key, pub = rsa_key(ossl) if keyname == "rsa" else ec_key(ossl)
    (ossl.cwd / "cert.conf").write_text(CERT_CONFIG)
    cert = f"{keyname}{len(options)}.crt"
    ossl("req", "-x509", "-config", "cert.conf", "-key", key, "-days", "30", *options,
         "-out", cert, tpm=True)
    assert ossl("verify", "-CAfile", cert, cert).stdout.strip() == f"{cert}: OK".encode()
    shown = ossl("x509", "-in", cert, "-noout", "-subject", "-pubkey").stdout.decode()
    assert "CN = simxen vTPM key" in shown
    assert shown.partition("\n")[2] == (ossl.cwd / pub).read_text()
    if options:
        text = ossl("x509", "-in", cert, "-noout", "-text").stdout.decode()
        assert "Signature Algorithm: rsassaPss" in text


@pytest.mark.parametrize("keyname", ["rsa", "ec"])
def test_cms_signature_copies_a_digest_in_progress(ossl, keyname):
    """``openssl cms -sign`` copies the TPM hash sequence it digests with
    (ContextSave of a sequence object, then ContextLoad; the engine used to
    refuse the save): a signed message that plain OpenSSL verifies against
    the certificate."""
    key, _ = rsa_key(ossl) if keyname == "rsa" else ec_key(ossl)
    (ossl.cwd / "cert.conf").write_text(CERT_CONFIG)
    cert = f"cms-{keyname}.crt"
    ossl("req", "-x509", "-config", "cert.conf", "-key", key, "-days", "30", "-out", cert,
         tpm=True)
    ossl("cms", "-sign", "-nodetach", "-binary", "-md", "sha256", "-inkey", key,
         "-signer", cert, "-in", "message", "-outform", "PEM", "-out", f"{keyname}.p7",
         tpm=True)
    out = ossl("cms", "-verify", "-binary", "-CAfile", cert, "-inform", "PEM",
               "-in", f"{keyname}.p7")
    assert out.stdout == (ossl.cwd / "message").read_bytes()
    assert b"Verification successful" in out.stderr


def test_random_bytes_come_from_the_tpm(tmp_path):
    """``openssl rand`` through the provider: TPM2_GetRandom (at most 64
    bytes per command here) until enough bytes are there."""
    openssl = require_openssl_provider("tpm2", "tpm2-openssl")
    srv = SimxenTpmServer("mssim")
    try:
        run_tool(srv.tcti, tmp_path, "tpm2_startup", "-c")
        out = OpenSSL(openssl, srv.tcti, tmp_path)("rand", "-hex", "100", tpm=True).stdout
    finally:
        srv.stop()
    assert len(bytes.fromhex(out.decode().strip())) == 100
    assert srv.log.count("TPM2_GetRandom -> TPM_RC_SUCCESS") >= 2


def accepting(server, timeout=60.0):
    """Whether ``openssl s_server`` said ACCEPT (it listens) within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([server.stdout], [], [], deadline - time.monotonic())
        if not ready:
            return False
        line = server.stdout.readline()
        if not line:
            return False
        if line.strip() == b"ACCEPT":
            return True
    return False


def test_tls13_server_whose_key_is_in_the_tpm(ossl):
    """``openssl s_server`` with the TPM key; plain ``openssl s_client``
    checks the certificate and gets the page.  Loaded beside the default
    provider, as its documentation has it, the tpm2 provider also hashes the
    handshake in the TPM (hash sequences, copied with ContextSave/ContextLoad
    at each transcript hash: several hundred TPM commands) and the TPM signs
    the CertificateVerify."""
    key, _ = ec_key(ossl)
    (ossl.cwd / "cert.conf").write_text(CERT_CONFIG)
    ossl("req", "-x509", "-config", "cert.conf", "-key", key, "-days", "30", "-out", "tls.crt",
         tpm=True)
    port = free_port_pair()
    server = subprocess.Popen(
        [ossl.openssl, "s_server", "-provider", "tpm2", "-provider", "default",
         "-accept", f"127.0.0.1:{port}", "-naccept", "1", "-www", "-key", key,
         "-cert", "tls.crt"], cwd=ossl.cwd, env=dict(os.environ, TPM2OPENSSL_TCTI=ossl.tcti),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # not a probing connect: with -naccept 1 that would be its one client
        assert accepting(server), "openssl s_server did not start"
        out = ossl("s_client", "-connect", f"127.0.0.1:{port}", "-tls1_3", "-CAfile", "tls.crt",
                   "-verify_return_error", "-ign_eof",
                   stdin=b"GET / HTTP/1.0\r\n\r\n").stdout.decode(errors="replace")
    finally:
        out_rest, err = server.communicate(timeout=60)
    assert "Verify return code: 0 (ok)" in out and "TLSv1.3" in out
    assert "HTTP/1.0 200 ok" in out, err.decode(errors="replace")


@pytest.mark.slow
def test_key_in_a_guests_vtpm_signs_a_cms_message(tmp_path):
    """The same through a simulated guest's vTPM (``simxen serve``: tpmfront,
    the vTPM stub domain, its resource manager): a key generated there signs
    a CMS message -- hash sequences copied by ContextSave/ContextLoad on the
    way -- that plain OpenSSL verifies."""
    openssl = require_openssl_provider("tpm2", "tpm2-openssl")
    require_tool("tpm2_startup")
    from test_serve import start
    srv = start()
    try:
        run_tool(srv.tcti, tmp_path, "tpm2_startup", "-c")
        vtpm = OpenSSL(openssl, srv.tcti, tmp_path)
        (tmp_path / "message").write_bytes(b"a guest's attestation report\n")
        (tmp_path / "cert.conf").write_text(CERT_CONFIG)
        key, _ = tpm_key(vtpm, "guest", "group:P-256", algorithm="EC")
        vtpm("req", "-x509", "-config", "cert.conf", "-key", key, "-days", "30",
             "-out", "guest.crt", tpm=True)
        vtpm("cms", "-sign", "-nodetach", "-binary", "-md", "sha256", "-inkey", key,
             "-signer", "guest.crt", "-in", "message", "-outform", "PEM", "-out", "m.p7",
             tpm=True)
        out = vtpm("cms", "-verify", "-binary", "-CAfile", "guest.crt", "-inform", "PEM",
                   "-in", "m.p7")
    finally:
        srv.stop()
    assert out.stdout == b"a guest's attestation report\n"
    assert "TPM2_ContextLoad" in srv.log and "TPM2_SequenceComplete" in srv.log
