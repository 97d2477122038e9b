#!/usr/bin/env bash
# Installs the Debian packages that simxen's interoperability tests drive:
# tpm2-tools (and the mssim/swtpm TCTIs), swtpm (a C software TPM to compare
# against), tshark (TPM dissector), librsvg2-bin (rsvg-convert renders the
# SVG sequence diagrams in the tests), jq (docs/trace.rst reads a trace with
# it; tests/test_docs_commands.py runs that), ima-evm-utils (evmctl checks the
# guest's binary IMA list against its vTPM's PCR 10), libxen-dev, gcc and libc6-dev (Xen's public
# headers, compiled, are the oracle for simxen's layouts in
# tests/interop/test_xen_public_headers.py and test_xen_ring_differential.py)
# and nodejs/npm (Mermaid's own parser reads the Mermaid diagrams; the
# Makefile's js-tools target installs the pinned Mermaid with npm).
# Idempotent; quiet when all is present.
set -euo pipefail
pkgs=(tpm2-tools libtss2-tcti-mssim0 libtss2-tcti-swtpm0 swtpm swtpm-tools tshark librsvg2-bin jq
      ima-evm-utils libxen-dev libc6-dev)
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
