#!/usr/bin/env bash
# Run one tool sequence against the TPM that TPM2TOOLS_TCTI names, in the
# current directory (make it an empty temporary one):
#
#     TPM2TOOLS_TCTI=mssim:host=127.0.0.1,port=2321 bash run.sh duplicate-import.sh
#
# A sequence is a bash script of tpm2-tools commands and the checks of their
# outputs (openssl, cmp, python3 with cryptography); it fails at the first
# command that fails.  `expect_rc RC COMMAND...` runs a command that must be
# refused with response code RC (as tpm2-tools prints it, e.g. 0x98e).
#
# With SEQ_FLUSH_TRANSIENTS=1 every tool is followed by `tpm2_flushcontext -t`
# and `-l` (transient objects and loaded sessions):
# what a resource manager does when a client disconnects, for a TPM that has
# none in front of it (swtpm).  simxen's servers have one.
set -euo pipefail
seq_file=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
if [ "${SEQ_FLUSH_TRANSIENTS:-0}" = 1 ]; then
    for tool in /usr/bin/tpm2_*; do
        name=$(basename "$tool")
        [ "$name" = tpm2_flushcontext ] && continue
        eval "$name() { local rc=0; $tool \"\$@\" || rc=\$?; \
              /usr/bin/tpm2_flushcontext -t >/dev/null 2>&1 || true; \
              /usr/bin/tpm2_flushcontext -l >/dev/null 2>&1 || true; return \$rc; }"
    done
fi
expect_rc() {
    local want=$1 out
    shift
    if out=$("$@" 2>&1); then
        echo "expected response code $want, but it succeeded: $*" >&2
        return 1
    fi
    if ! grep -qi -- "$want" <<<"$out"; then
        echo "expected response code $want from: $*" >&2
        echo "$out" >&2
        return 1
    fi
}
tpm2_startup -c 2>/dev/null || true
set -x
# shellcheck source=/dev/null
source "$seq_file"
