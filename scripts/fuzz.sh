#!/usr/bin/env bash
# Run one fuzz target for a given time:  scripts/fuzz.sh TARGET SECONDS [options]
#   TARGET: engine framing tpmif manager xenstore eventlog ima scenario state trace (or "all": each for SECONDS)
# Coverage-guided with atheris when it is installed (pip install -e '.[fuzz]'), else the
# seeded random mutator. Failing inputs land in fuzz-findings/; the last line printed is
# a JSON summary (inputs, commands, crashes, hangs). See docs/fuzzing.rst.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
py="${PYTHON:-$here/.venv/bin/python}"
[ -x "$py" ] || py=python3
if [ $# -lt 1 ]; then
    echo "usage: scripts/fuzz.sh TARGET SECONDS [--driver atheris|random] [--seed N]" >&2
    exit 2
fi
target="$1"; shift
cd "$here"
if [ "$target" = all ]; then
    for t in engine framing tpmif manager xenstore eventlog ima scenario state trace; do
        "$py" -m fuzz.run "$t" "$@"
    done
else
    exec "$py" -m fuzz.run "$target" "$@"
fi
