"""README.rst's tour runs as written: its literal block, line by line, in bash.

Only what a test must change is changed: the ports become free ones, ``/tmp/``
becomes the test's own folder, and after each server started in the
background the script waits until its port accepts connections (a reader
typing the lines does that by being slower than a script).
"""

import os
import re
import subprocess
from pathlib import Path

import pytest

from simxen.server.loopback import free_port_pair

from tpm_serve_helpers import require_tool

ROOT = Path(__file__).resolve().parents[2]
interop = pytest.mark.interop


def tour_lines():
    """The commands of the README's tour block (continuations joined)."""
    text = (ROOT / "README.rst").read_text()
    block = text.split("\nA tour\n------\n", 1)[1]
    block = block.split("::\n\n", 1)[1]
    lines = []
    for line in block.splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line[4:])
    joined = "\n".join(lines).replace("\\\n", " ")
    return [ln for ln in joined.splitlines() if ln.strip()]


def test_the_tour_block_is_what_this_test_expects():
    lines = tour_lines()
    assert lines[0].startswith(". .venv/bin/activate")
    commands = [ln.split("#")[0].strip() for ln in lines if not ln.lstrip().startswith("#")]
    assert "tpm2_startup -c" in commands
    assert commands.index("tpm2_startup -c") < next(i for i, c in enumerate(commands)
                                                    if c.startswith("tpm2_pcrread"))
    assert not any(re.search(r"sha256:\d+-\d+", c) for c in commands)   # tpm2-tools: no ranges
    assert sum(c.endswith("&") for c in commands) == 2


@interop
@pytest.mark.slow
def test_readme_tour_runs_as_written(tmp_path):
    require_tool("tpm2_startup")
    venv = ROOT / ".venv" / "bin"
    if not (venv / "activate").exists():
        pytest.skip(f"no {venv}/activate: the tour starts after `make demo`")
    # both ways the README offers: the venv's own script, and PATH after activate
    r = subprocess.run([str(venv / "simxen"), "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("simxen "), r.stderr
    ports = {"2321": str(free_port_pair()), "2331": str(free_port_pair())}
    script = ["set -eu", "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT"]
    for line in tour_lines():
        for old, new in ports.items():
            line = line.replace(old, new)
        line = line.replace("/tmp/", f"{tmp_path}/")
        script.append(line)
        command = line.split("#")[0].strip()
        if command.endswith("&"):
            port = re.search(r"--port (\d+)", command).group(1)
            script.append(f"for i in $(seq 600); do (echo > /dev/tcp/127.0.0.1/{port}) "
                          "2>/dev/null && break; sleep 0.1; done")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "TPM2TOOLS_TCTI")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not p.startswith(str(ROOT)))       # simxen only via activate
    r = subprocess.run(["bash", "-c", "\n".join(script)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr
    assert "ok (ring-pingpong" in r.stdout                         # validate
    assert (tmp_path / "out.jsonl").stat().st_size > 0               # --trace
    assert (tmp_path / "mg" / "summary.csv").exists()                # sweep
    assert re.search(r"sha256:\n\s+0 : 0x0{64}", r.stdout)          # tpm2_pcrread
    assert "TPM2_PCR_Extend TPM_RC_SUCCESS total" in r.stderr        # serve --hops
