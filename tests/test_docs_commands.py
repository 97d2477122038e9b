"""Every shell command README.rst, docs/*.rst and the notebooks show runs as written.

A reader's first contact with simxen is a command copied from the docs, so
each one is taken from where the reader finds it and checked:

* **Where the commands are.** The literal blocks of README.rst and
  docs/*.rst (``::`` blocks and ``.. code-block:: console|bash|shell|sh``)
  whose first command is a shell command (:data:`SHELL_WORDS`); in a block
  with ``$`` prompts only the prompted lines are commands and the others are
  the output the doc shows. A ``\\`` continuation is joined; a shell loop is
  one command (bash decides where a command ends). In the notebooks, every
  inline ```simxen ...``` of a markdown cell.
* **Run.** Each file's blocks run in order, each block as one bash script,
  in a folder of the test's own that holds a link to every top-level entry
  of the repository (so ``scenarios/...`` resolves as in the repository and
  ``-o boot.json`` lands in the test's folder). Only what a test must change
  is changed: ``/tmp/`` becomes the test's folder, the ports 2321/2322 free
  ones (a ``simxen serve``/``tpm serve`` that names no port is given the free
  one), after a server started in the background the script waits until its
  port accepts connections (on its ``--host``), and a server the doc starts in
  the foreground (the reader stops it with Ctrl-C) is started in the
  background and stopped with SIGTERM once it listens. Each command must exit 0 -- or N when its
  comment says ``exits N`` -- and no Python traceback may appear. The
  output a ``$`` block shows must still be printed, line by line, with every
  number free (figures move with the timing profile) but hex constants
  kept, and ``...`` standing for anything.
* **Parse only.** A command too long for CI (:data:`PARSED_ONLY`, each with
  its reason) is expanded by bash as written, but its program only records
  its arguments, which the project's own parsers then check: simxen's
  argparse, then the scenario with every ``--set`` through the checks of
  ``simxen validate`` (:func:`simxen.scenario.runner.prepare`), every point
  of a ``--vary`` grid through :class:`simxen.experiment.sweep.Plan`, a
  ``plot --y`` against the metrics of the sweep that wrote the folder, fuzz
  targets and options through :func:`fuzz.run.build_parser`, ``make``
  targets with ``make -n``, ``pip`` extras against simxen's metadata. A
  simxen command already run where it first appears (README.rst, then
  docs/ in name order, then the notebooks) is parsed where it appears again.
  Every simxen option a doc writes must be the option's full name
  (argparse would take an abbreviation).
  :data:`NOT_RUN` lists what is neither run nor checked, and why.

Both tables must name only commands the docs hold: a stale entry fails.
"""

import argparse
import contextlib
import functools
import importlib
import importlib.metadata
import io
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from simxen.server.loopback import free_port_pair

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:                       # fuzz/ is a folder of the repository
    sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent                   # the venv running the tests: simxen, python

pytestmark = pytest.mark.slow

#: A ``::`` block is a shell block when its first command starts with one of these.
SHELL_WORDS = re.compile(r"(\$ |\. |simxen |python3? |scripts/|make |pip |tpm2_|export |kill |"
                         r"jq |dask |for )")
#: Programs a parsed-only command may use, and that :func:`check_parsed` knows how to check.
PARSERS = ("simxen", "python", "python3", "scripts/fuzz.sh", "make", "pip")

#: (doc, start of the command) -> why the command is parsed, not run.
PARSED_ONLY = {
    ("README.rst", "make test"): "it is this test suite",
    ("README.rst", "make demo"): "builds .venv: make -n checks the target",
    ("docs/testing.rst", "make test"): "it is this test suite",
    ("docs/throughput-lab.rst", "simxen sweep scenarios/many-guests.toml --vary "
     "stack.guest_count=1,2,4,8,16,32 \\\n    --replications 3 --jobs 2"):
        "18 points x 3 runs of up to 32 guests: minutes",
    ("docs/throughput-lab.rst", "simxen plot /tmp/mg"): "needs the sweep above, which is parsed",
    ("docs/throughput-lab.rst", "simxen sweep scenarios/many-guests.toml --vary "
     "stack.guest_count=1,2,4,8,16,32 \\\n    --replications 10 --scheduler"):
        "needs a Dask cluster (and /nfs)",
    ("docs/throughput-lab.rst", "simxen sweep scenarios/many-guests.toml --vary "
     "stack.guest_count=1,8,32"): "6 points of up to 32 guests: a minute",
    ("docs/throughput-lab.rst", "simxen sweep scenarios/cpu-contention.toml"):
        "12 runs: ~8 s, more than this test's budget allows",
    ("docs/scale.rst", "simxen run scenarios/fleet.toml --set fleet.guest_count=200"):
        "200 guests x 3 rounds: ~7 s (the line above runs the fleet)",
    ("docs/fuzzing.rst", "pip install"): "installs packages: the extra must exist",
    ("docs/fuzzing.rst", "scripts/fuzz.sh"): "a fuzz campaign runs for minutes",
    ("docs/fuzzing.rst", "python -m fuzz.run"): "a fuzz campaign runs for minutes",
    ("docs/fuzzing.rst", "for t in engine:900"): "the long campaign: hours",
    ("notebooks/03-ring-throughput.ipynb", "simxen sweep"):
        "15 points of up to 16 guests: a minute",
    ("notebooks/03-ring-throughput.ipynb", "simxen plot /tmp/mg"): "needs the sweep, parsed",
}
#: Blocks run in full by another test: their commands are parsed here, not run twice.
RUN_ELSEWHERE = {
    ("README.rst", ". .venv/bin/activate"): "tests/interop/test_readme_tour.py runs the tour",
}
#: (doc, start of the command) -> why it is neither run nor checked.
NOT_RUN = {
    ("docs/throughput-lab.rst", "dask "): "starts a Dask cluster; dask's own command line",
}
#: Blocks that start like a command but are not one.
NOT_SHELL = {
    ("docs/serve.rst", "tpm2_pcrextend ──TCP (mssim)──> simxen serve"):
        "a picture of the path",
}
#: A usage line, not a command: each ``[--option VALUE]`` is parsed alone.
SYNOPSES = {
    ("docs/tpm.rst", "simxen tpm serve [--port"): "the usage of simxen tpm serve",
}
#: Values for the placeholders of a usage line.
PLACEHOLDERS = {"FILE": "state.bin", "TEXT": "seed"}


@dataclass
class Command:
    doc: str                  # path relative to the repository
    line: int                 # line of the doc where it starts
    text: str                 # as the doc writes it (continuations kept)
    output: list = field(default_factory=list)    # the lines a $ block shows after it
    note: str = ""            # comment lines indented under it

    @property
    def where(self):
        return f"{self.doc}:{self.line}"


@dataclass
class Block:
    doc: str
    line: int
    commands: list


def docs():
    return ["README.rst"] + sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.rst"))


def notebooks():
    return sorted(f"notebooks/{p.name}" for p in (ROOT / "notebooks").glob("*.ipynb"))


def literal_blocks(text):
    """``(line, language, lines)`` of every literal block, dedented."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        ln = lines[i]
        directive = re.match(r"\s*\.\. code-block::\s*(\S+)", ln)
        literal = (ln.rstrip().endswith("::") and not re.match(r"\s*\.\. ", ln))
        if directive or literal:
            base = len(ln) - len(ln.lstrip())
            j = i + 1
            while j < len(lines) and (not lines[j].strip()
                                      or directive and lines[j].strip().startswith(":")):
                j += 1
            indent = len(lines[j]) - len(lines[j].lstrip()) if j < len(lines) else 0
            if j < len(lines) and indent > base:
                start, body = j, []
                while j < len(lines) and (not lines[j].strip()
                                          or len(lines[j]) - len(lines[j].lstrip()) >= indent):
                    body.append(lines[j][indent:])
                    j += 1
                yield start + 1, directive.group(1) if directive else None, body
                i = j
                continue
        i += 1


def complete(text):
    """Whether bash takes ``text`` as whole commands (no open loop, quote or ``\\``)."""
    if text.rstrip().endswith("\\"):
        return False
    return subprocess.run(["bash", "-n", "-c", text], capture_output=True).returncode == 0


def split_commands(doc, first_line, body):
    """The commands of one shell block, with the output a ``$`` block shows."""
    prompted = any(ln.startswith("$ ") for ln in body)
    commands, pending = [], None
    for n, ln in enumerate(body):
        if pending is not None:                     # a command bash has not seen end yet
            pending.text += "\n" + ln
            if not ln.strip():
                continue
            if complete(pending.text):
                pending = None
            continue
        if prompted and not ln.startswith("$ "):
            if commands and ln.strip():
                commands[-1].output.append(ln)
            continue
        text = ln[2:] if prompted else ln
        if text.startswith(" ") and text.lstrip().startswith("#") and commands:
            commands[-1].note += text.strip() + "\n"
            continue
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        if text.startswith(" ") and text.lstrip().startswith("[") and commands:
            commands[-1].text += "\n" + text        # a usage line folded in two
            continue
        cmd = Command(doc, first_line + n, text)
        commands.append(cmd)
        if not complete(text):
            pending = cmd
    return commands


def shell_blocks(doc):
    """Every shell block of one .rst file."""
    text = (ROOT / doc).read_text()
    for line, lang, body in literal_blocks(text):
        if lang not in (None, "console", "bash", "shell", "sh"):
            continue
        first = next((ln for ln in body if ln.strip() and not ln.lstrip().startswith("#")), "")
        if not SHELL_WORDS.match(first) or (doc, first) in NOT_SHELL:
            continue
        yield Block(doc, line, split_commands(doc, line, body))


def notebook_blocks(doc):
    """One block per notebook: the inline ```simxen ...``` of its markdown cells."""
    cells = json.loads((ROOT / doc).read_text())["cells"]
    commands = []
    for number, cell in enumerate(cells, 1):
        if cell["cell_type"] != "markdown":
            continue
        source = "".join(cell["source"])
        for m in re.finditer(r"`(simxen [^`]+)`", source):
            for part in m.group(1).split(" && "):
                if len(part.split()) < 3:       # `simxen sweep`: the name of a command
                    continue
                commands.append(Command(doc, number, " ".join(part.split())))  # line: cell
    if commands:
        yield Block(doc, 0, commands)


def blocks_of(doc):
    return list(notebook_blocks(doc) if doc.endswith(".ipynb") else shell_blocks(doc))


def entry(table, cmd):
    """The entry of ``table`` for ``cmd`` (by doc and start of the command), or None."""
    for (doc, start), why in table.items():
        if doc == cmd.doc and cmd.text.startswith(start):
            return start, why
    return None


def mode(block, cmd):
    """How ``cmd`` is checked: run, parse, synopsis or not run."""
    how = table_mode(block, cmd)
    if how == "run" and first_runs().get(same(cmd), cmd.where) != cmd.where:
        return "parse"                  # run where it first appears (docs() order)
    return how


def table_mode(block, cmd):
    if entry(SYNOPSES, cmd):
        return "synopsis"
    if entry(NOT_RUN, cmd):
        return "not run"
    if entry(PARSED_ONLY, cmd) or entry(RUN_ELSEWHERE, block.commands[0]):
        return "parse"
    return "run"


def same(cmd):
    """What two copies of one command share: the words before any comment."""
    return " ".join(cmd.text.replace("\\\n", " ").split("#")[0].split())


@functools.lru_cache(maxsize=None)
def first_runs():
    """Command -> where it is first run; a later copy (the README's trace commands in
    docs/trace.rst, its explain in docs/attestation.rst) is only parsed."""
    first = {}
    for block, cmd in all_commands():
        if (table_mode(block, cmd) == "run" and cmd.text.startswith("simxen ")
                and not SERVER.match(cmd.text)):
            first.setdefault(same(cmd), cmd.where)
    return first


def expected_status(cmd):
    m = re.search(r"#.*\bexits (\d+)", cmd.text + "\n" + cmd.note)
    return int(m.group(1)) if m else 0


def needs_tools(doc):
    """The external tools a file's run commands call (the test needs them installed)."""
    tools = set()
    for block in blocks_of(doc):
        for cmd in block.commands:
            if mode(block, cmd) == "run":
                tools |= set(re.findall(r"(?:^|[\s;|(])(tpm2_\w+|jq|evmctl|clevis)\b", cmd.text))
                tools |= {f"openssl -provider {p}"
                          for p in re.findall(r"-provider (tpm2)\b", cmd.text)}
    return sorted(tools)


# --------------------------------------------------------------------------- the script

SERVER = re.compile(r"^simxen (tpm )?serve\b")


def script_for(block, index, ports, tmp, records):
    """The bash lines that run (or record) command ``index`` of ``block``."""
    cmd = block.commands[index]
    text = substitute(cmd.text, ports, tmp)
    how = mode(block, cmd)
    status = f'echo "{index} $?" >> "$SIMXEN_STATUS"'
    if how == "parse":
        recorded = record(text, f"{records}/{index}")
        if recorded is None:
            return [f"# not checked: {text}"]
        return [recorded.rstrip("& \n")]
    if how != "run":
        return [f"# {how}: {text}"]
    if SERVER.match(text):
        if "--port" not in text:
            text = re.sub(r"(\s*&?\s*(#.*)?)$", f" --port {ports['2321']}\\1", text, count=1)
        port = re.search(r"--port (\d+)", text).group(1)
        host = re.search(r"--host \[?([^\s\]]+)", text)        # bash's /dev/tcp takes ::1 too
        host = host.group(1) if host else "127.0.0.1"
        # (up to five minutes: a server boots its host before it listens, and on a loaded
        # machine that took more than the minute this once allowed; a server that listens
        # or dies ends the wait at once)
        wait = (f"for i in $(seq 3000); do (echo > /dev/tcp/{host}/{port}) 2>/dev/null && "
                "break; kill -0 $! 2>/dev/null || break; sleep 0.1; done")
        if text.split("#")[0].rstrip().endswith("&"):
            return [text, status, wait]
        # in the foreground, a reader stops it with Ctrl-C: here, once it listens, SIGTERM,
        # which it answers with the shell's 128 + 15 after a clean stop (0 as recorded)
        stopped = (f'st=$?; [ $st -eq 143 ] && st=0; echo "{index} $st" >> "$SIMXEN_STATUS"')
        return [text.split("#")[0].rstrip() + " &", wait, "kill -TERM $!", "wait $!", stopped]
    return [text, status]


def substitute(text, ports, tmp):
    for old, new in ports.items():
        text = text.replace(old, new)
    return text.replace("/tmp/", f"{tmp}/")


def record(text, prefix):
    """``text`` with each program :func:`check_parsed` knows replaced by a recorder of its
    arguments (files ``prefix.N``), or None when it runs none of them."""
    programs = "|".join(re.escape(p) for p in PARSERS)
    pattern = re.compile(rf"(^|[;&|]\s*|\bdo\s+|\bthen\s+|\n\s*)({programs})(?=\s)")
    if not pattern.search(text):
        return None
    return pattern.sub(rf"\1_record {prefix} \2", text)


#: Printed to stdout and stderr before each command, to cut the output by command.
MARK = "@@simxen-docs-command "

RECORDER = r"""_record() {
    local prefix=$1; shift
    local n=0; while [ -e "$prefix.$n" ]; do n=$((n+1)); done
    printf '%s\0' "$@" > "$prefix.$n"
}"""


def run_block(block, workdir, tmp, attempt=1):
    """Run one block in ``workdir``; return (statuses by command index, stdout, stderr, recorded
    argument lists by command index, the ports substituted)."""
    p, q = free_port_pair(), free_port_pair()
    ports = {"2321": str(p), "2322": str(p + 1), "2331": str(q)}
    records = tmp / f"records-{block.line}-{attempt}"
    records.mkdir()
    status_file = tmp / f"status-{block.line}-{attempt}"
    lines = [RECORDER, "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT"]
    for i in range(len(block.commands)):
        lines += [f"echo '{MARK}{i}'; echo '{MARK}{i}' >&2"]
        lines += script_for(block, i, ports, tmp, records)
    lines += ["kill $(jobs -p) 2>/dev/null; wait"]
    env = {k: v for k, v in os.environ.items() if k not in ("TPM2TOOLS_TCTI",)}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["SIMXEN_STATUS"] = str(status_file)
    r = subprocess.run(["bash", "-c", "\n".join(lines)], cwd=workdir, env=env,
                       capture_output=True, text=True, timeout=600)
    statuses = {}
    if status_file.exists():
        for ln in status_file.read_text().split("\n"):
            if ln:
                i, rc = ln.split()
                statuses.setdefault(int(i), int(rc))
    recorded = {}
    for f in sorted(records.iterdir(), key=lambda f: [int(x) for x in f.name.split(".")]):
        i = int(f.name.split(".")[0])
        recorded.setdefault(i, []).append(f.read_bytes().decode().split("\0")[:-1])
    return statuses, r.stdout, r.stderr, recorded, ports


# --------------------------------------------------------------------------- parse checks

def parse_simxen(argv, sweeps):
    """simxen's own parser, then the checks the chosen subcommand makes on its inputs
    before running anything. ``sweeps``: out folder -> metrics of the sweep writing it."""
    from simxen.cli import build_parser
    from simxen.scenario import runner, scenario_file
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = build_parser(argv).parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(f"simxen refuses it (exit {exc.code}): {err.getvalue().strip()}")
    spelled_in_full(argv)
    if args.command == "sweep":
        from simxen.experiment import sweep
        plan = sweep.Plan(args.scenario, [sweep.parse_axis(v) for v in args.vary],
                          args.replications, args.set)
        sweeps[os.path.normpath(args.out or f"sweep-{Path(args.scenario).stem}")] = plan.columns
    elif args.command == "plot":
        folder = os.path.normpath(args.folder)
        assert folder in sweeps, f"no sweep of this block writes {args.folder}"
        for y in args.y or ():          # --y is repeatable: each metric must be published
            assert y in sweeps[folder], f"--y {y}: the sweep publishes no such metric"
    elif getattr(args, "scenario", None):
        runner.prepare(scenario_file.load(args.scenario, getattr(args, "set", [])))


class ExactParser(argparse.ArgumentParser):
    """argparse as simxen builds it, but an option must be written in full."""

    def __init__(self, *args, **kwargs):
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)


def spelled_in_full(argv):
    """argparse takes ``--rep`` for ``--replications``: a doc that abbreviates keeps working
    after a rename that keeps the old name a prefix, and breaks when a new option makes it
    ambiguous. Every option a doc writes must be an option's full name."""
    from simxen.cli import COMMANDS
    command = next((a for a in argv if a in COMMANDS), None)
    if command is None:                             # simxen --version
        return
    parser = ExactParser(prog=f"simxen {command}")
    importlib.import_module(COMMANDS[command][0]).add_arguments(parser)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            parser.parse_args(argv[argv.index(command) + 1:])
    except SystemExit:
        raise AssertionError(f"an option is not written in full: {err.getvalue().strip()}")


def parse_fuzz(argv):
    from fuzz import run
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            run.build_parser().parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(f"fuzz.run refuses it (exit {exc.code}): {err.getvalue().strip()}")


def check_parsed(argv, workdir, sweeps):
    """Check one recorded command line with the parser of its program."""
    program, args = argv[0], argv[1:]
    if program == "simxen":
        parse_simxen(args, sweeps)
    elif program in ("python", "python3"):
        assert args[:2] == ["-m", "fuzz.run"], f"no parser known for {shlex.join(argv)}"
        parse_fuzz(args[2:])
    elif program == "scripts/fuzz.sh":
        assert (workdir / program).exists()
        parse_fuzz(["engine"] + args[1:] if args[:1] == ["all"] else args)
    elif program == "make":
        r = subprocess.run(["make", "-n"] + args, cwd=workdir, capture_output=True, text=True)
        assert r.returncode == 0, f"make -n {shlex.join(args)}: {r.stderr.strip()}"
    elif program == "pip":
        extras = importlib.metadata.metadata("simxen").get_all("Provides-Extra")
        for spec in args:
            m = re.fullmatch(r"\.\[(.+)\]", spec)
            if m:
                missing = set(m.group(1).split(",")) - set(extras)
                assert not missing, f"simxen has no extra {sorted(missing)} (has {extras})"
    else:
        raise AssertionError(f"no parser known for {shlex.join(argv)}")


def check_synopsis(text):
    """Each ``[--option VALUE|OTHER]`` of a usage line, parsed alone."""
    head = text.split("[", 1)[0].split()
    for group in re.findall(r"\[([^\]]+)\]", text):
        option, *value = group.split()
        for alternative in (value[0].split("|") if value else [None]):
            argv = head[1:] + [option] + ([PLACEHOLDERS.get(alternative, alternative)]
                                          if alternative else [])
            parse_simxen(argv, {})


# --------------------------------------------------------------------------- shown output

def shown_lines(output):
    """The lines a $ block shows, a folded line joined again (its continuation is indented
    by 4 and follows a line that starts at the margin)."""
    logical = []
    for ln in output:
        indent = len(ln) - len(ln.lstrip())
        if logical and indent >= 4 and logical[-1][0] == 0:
            logical[-1][1] += " " + ln.strip()
        elif ln.strip() != "...":
            logical.append([indent, ln.strip()])
    return [text for _, text in logical]


def pattern_of(line):
    """A shown line as a regular expression: every number free, ``...`` anything; a hex
    constant (an NV index, a digest) is a name, not a figure, and stays as shown."""
    parts = []
    for piece in re.split(r"(\.\.\.|0x[0-9A-Fa-f]+|\d+(?:\.\d+)?)", " ".join(line.split())):
        if piece.startswith("0x"):
            parts.append(re.escape(piece))
        elif piece == "...":
            parts.append(".*")
        elif piece and piece[0].isdigit():
            parts.append(r"\d+(?:\.\d+)?")
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts))


# --------------------------------------------------------------------------- the tests

def output_of(text, index):
    """What ``text`` (a block's stdout or stderr) holds between command ``index``'s mark and the
    next (a background server's lines land wherever they were printed)."""
    part = text.split(f"{MARK}{index}\n", 1)[-1]
    return part.split(MARK, 1)[0]


def all_commands():
    for doc in docs() + notebooks():
        for block in blocks_of(doc):
            for cmd in block.commands:
                yield block, cmd


def test_the_docs_hold_the_commands_this_test_expects():
    found = list(all_commands())
    assert len(found) > 60
    used = {entry(t, c)[0] for t in (PARSED_ONLY, NOT_RUN, SYNOPSES)
            for _, c in found if entry(t, c)}
    used |= {entry(RUN_ELSEWHERE, b.commands[0])[0] for b, _ in found
             if entry(RUN_ELSEWHERE, b.commands[0])}
    for table in (PARSED_ONLY, NOT_RUN, SYNOPSES, RUN_ELSEWHERE):
        stale = [k for k in table if k[1] not in used]
        assert not stale, f"entries that name no command of the docs: {stale}"
    for (doc, first) in NOT_SHELL:
        assert f"    {first}\n" in (ROOT / doc).read_text(), f"stale NOT_SHELL entry {first!r}"
    joined = [c.text for _, c in found]
    assert any("\\\n" in t for t in joined)                          # continuations joined
    assert any(t.startswith("for t in") and t.endswith("done") for t in joined)   # loops whole
    serve = next(c for _, c in found if c.doc == "docs/serve.rst" and "t.jsonl &" in c.text)
    assert any("TPM2_PCR_Extend" in ln for ln in serve.output) is False   # shown after its own $
    assert not any(c.text.startswith(("[", "+", "(")) for _, c in found)  # no output as commands


def failures_of(blocks, tmp_path):
    """Run (or parse) ``blocks``; return what is wrong, one message per command."""
    workdir = tmp_path / "repo"
    workdir.mkdir()
    for entry_ in ROOT.iterdir():
        if entry_.name != ".git":
            (workdir / entry_.name).symlink_to(entry_)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    failures = []
    for block in blocks:
        statuses, out, err, recorded, ports = run_block(block, workdir, tmp)
        if "Address already in use" in err:         # a free port taken before the server bound
            statuses, out, err, recorded, ports = run_block(block, workdir, tmp, attempt=2)
        sweeps = {}
        for i, cmd in enumerate(block.commands):
            how = mode(block, cmd)
            if how == "run" and cmd.text.startswith("simxen ") and "$" not in cmd.text:
                try:
                    argv = shlex.split(cmd.text.replace("\\\n", " "), comments=True)
                    spelled_in_full([a for a in argv[1:] if a != "&"])
                except AssertionError as exc:
                    failures.append(f"{cmd.where}: `{cmd.text}`: {exc}")
            if how == "run":
                want = expected_status(cmd)
                got = statuses.get(i)
                if got != want:
                    failures.append(f"{cmd.where}: `{cmd.text}` exited {got}, expected {want}\n"
                                    f"--- stdout\n{output_of(out, i)[-2000:]}\n"
                                    f"--- stderr\n{output_of(err, i)[-2000:]}")
            elif how == "parse":
                for argv in recorded.get(i, []):
                    try:
                        check_parsed(argv, workdir, sweeps)
                    except Exception as exc:           # noqa: BLE001 -- reported below
                        failures.append(f"{cmd.where}: `{cmd.text}` ({shlex.join(argv)}): "
                                        f"{type(exc).__name__}: {exc}")
            if how != "not run" and not complete(cmd.text):
                failures.append(f"{cmd.where}: bash cannot parse `{cmd.text}`")
            elif how == "synopsis":
                try:
                    check_synopsis(cmd.text)
                except Exception as exc:               # noqa: BLE001
                    failures.append(f"{cmd.where}: `{cmd.text}`: {exc}")
        if "Traceback" in out + err:
            failures.append(f"{block.doc}:{block.line}: a traceback\n{err[-3000:]}")
        printed = [" ".join(ln.split()) for ln in (out + "\n" + err).splitlines()
                   if not ln.startswith(MARK)]
        for cmd in block.commands:
            for line in shown_lines(cmd.output):
                line = substitute(line, ports, tmp)
                if not any(pattern_of(line).fullmatch(p) for p in printed):
                    failures.append(f"{cmd.where}: the doc shows {line!r} after `{cmd.text}`, "
                                    "which no longer prints it")
    return failures


def doc_params():
    params = []
    for doc in docs() + notebooks():
        if not blocks_of(doc):
            continue
        tools = needs_tools(doc)
        params.append(pytest.param(doc, tools, id=doc,
                                   marks=[pytest.mark.interop] if tools else []))
    return params


@pytest.mark.parametrize("doc, tools", doc_params())
def test_every_command_of_the_doc_runs_as_written(doc, tools, tmp_path):
    if tools:
        from interop.tpm_serve_helpers import require_openssl_provider, require_tool
        for tool in tools:
            if tool.startswith("openssl -provider "):
                require_openssl_provider(tool.split()[-1], "tpm2-openssl")
            else:
                require_tool(tool, {"clevis": "clevis-tpm2"}.get(tool, "tpm2-tools / swtpm"))
    failures = failures_of(blocks_of(doc), tmp_path)
    assert not failures, "\n\n".join(failures)


def test_a_command_that_drifted_fails(tmp_path, monkeypatch):
    """The checks can fail: an option renamed, a key that does not exist in a parsed sweep,
    an exit status the doc promises, an abbreviated option, an output line that is no longer
    printed."""
    doc = "docs/drifted.rst"
    monkeypatch.setitem(PARSED_ONLY, (doc, "simxen sweep"), "an example")
    run = Command(doc, 1, "simxen run scenarios/ring-pingpong.toml --sed 7")
    sweep = Command(doc, 2, "simxen sweep scenarios/many-guests.toml --vary stack.guests=1,2")
    status = Command(doc, 3, "simxen validate --keys   # exits 2")
    shown = Command(doc, 4, "simxen --version", output=["simxen 0.0.0 (drifted)"])
    short = Command(doc, 5, "simxen validate scenarios/ring-pingpong.toml --se scenario.seed=3")
    commands = [run, sweep, status, shown, short]
    body = "".join(f"$ {c.text}\n" for c in commands)
    assert [c.text for c in split_commands(doc, 1, body.splitlines())] == [
        c.text for c in commands]
    failures = failures_of([Block(doc, 1, commands)], tmp_path)
    for where, why in [(1, "unrecognized arguments: --sed 7"), (2, "stack.guests"),
                       (3, "exited 0, expected 2"), (4, "which no longer prints it"),
                       (5, "not written in full")]:
        assert any(f.startswith(f"{doc}:{where}: ") and why in f for f in failures), failures
