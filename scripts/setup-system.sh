#!/usr/bin/env bash
# Installs the Debian packages that simxen's interoperability tests drive:
# - tpm2-tools (and the mssim/swtpm TCTIs) and swtpm (a C software TPM to compare against);
# - tpm2-openssl (OpenSSL's TPM 2.0 provider) and clevis-tpm2 (clevis's TPM pin),
#   real clients of simxen's TPM;
# - ima-evm-utils (evmctl checks the guest's binary IMA list against its vTPM's PCR 10);
# - libxen-dev, gcc and libc6-dev (Xen's public headers, compiled, are the oracle for
#   simxen's layouts: tests/interop/test_xen_public_headers.py, test_xen_ring_differential.py);
# - tshark (TPM dissector), librsvg2-bin (rsvg-convert renders the SVG sequence
#   diagrams in the tests), jq (docs/trace.rst reads a trace with it;
#   tests/test_docs_commands.py runs that);
# - nodejs/npm (Mermaid's own parser reads the Mermaid diagrams; the Makefile's
#   js-tools target installs the pinned Mermaid with npm).
# Idempotent; quiet when all is present.
set -euo pipefail
pkgs=(tpm2-tools libtss2-tcti-mssim0 libtss2-tcti-swtpm0 swtpm swtpm-tools tpm2-openssl clevis
      clevis-tpm2 ima-evm-utils libxen-dev libc6-dev tshark librsvg2-bin jq)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node and npm: any installed ones will do (NodeSource's nodejs carries npm, and
# Debian's npm package would conflict with it), else Debian's
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
# a C compiler for the Xen-header tests: any gcc will do, else Debian's
command -v gcc >/dev/null || missing+=(gcc)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then SUDO=sudo; else
        echo "setup-system: need root to install: ${missing[*]}" >&2
        echo "setup-system: the interop tests will be skipped (run as root, or install them yourself)" >&2
        exit 0
    fi
else SUDO=""; fi
echo "setup-system: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
