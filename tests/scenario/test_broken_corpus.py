"""A corpus of broken scenarios: each is refused by ``simxen validate`` AND
``simxen run`` with one line naming the file and the key, exit status 2,
never a traceback -- and ``run`` refuses it before simulating anything.

Each case is a small working scenario (one of :data:`BASES`) with one thing
broken: a text replacement, or lines appended. The bases themselves must pass
``validate`` (checked below), so each case tests exactly its one change.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from simxen import cli

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "scenarios" / "policies" / "web-guest.toml"

PING = '''
[scenario]
name = "ping"
seed = 1
until = 10.0

[[domain]]
name = "front"

[[domain]]
name = "back"

[[workload]]
type = "ring-pingpong"
name = "pp"
frontend = "front"
backend = "back"
requests = 10
window = 2

[[expect]]
metric = "pp.requests_completed"
equals = 10
'''

MGR = '''"""
name="vtpmmgr"
kernel="/usr/lib/xen/boot/vtpmmgr-stubdom.gz"
memory=16
disk=["file:/var/vtpmmgr-stubdom.img,hda,w"]
iomem=["fed40,5"]
"""'''
VTPM = '''"""
name="vtpm-guest1"
kernel="/usr/lib/xen/boot/vtpm-stubdom.gz"
memory=8
disk=["file:/var/vtpm-guest1.img,hda,w"]
vtpm=["backend=vtpmmgr,uuid=ac0a5b9e-cbe2-4c07-b43b-1d69e46fb839"]
"""'''
GUEST = '''"""
name="guest1"
kernel="/boot/vmlinuz-domU"
memory=512
vtpm=["backend=vtpm-guest1"]
"""'''

STACK = f'''
[scenario]
name = "stack"
until = 60.0

[[workload]]
type = "vtpm-stack"
name = "st"
iterations = 1
commands = ["pcr_extend"]
configs = [{MGR}, {VTPM}, {GUEST}]
'''

STACK_STD = '''
[scenario]
name = "stack-std"
until = 60.0

[[workload]]
type = "vtpm-stack"
name = "st"
iterations = 1
guests = ["guest1"]
'''

ATTEST = '''
[scenario]
name = "attest"
until = 120.0

[[workload]]
type = "attestation"
name = "at"
guest = "guest1"
policy = "policy.toml"
images = { kernel = { name = "linux", version = "6.1" }, initrd = { name = "initrd", version = "6.1" }, cmdline = "ro" }
exec = [{ path = "/usr/bin/bash", version = "5.2" }]
rounds = 1
'''

BASES = {"ping": PING, "stack": STACK, "stack-std": STACK_STD, "attest": ATTEST}


def change(old, new):
    return ("replace", old, new)


def add(text):
    return ("append", text, None)


#: (case id, base, edits, the key the error line must name, a word of the message)
CASES = [
    # -- the file and [scenario] ------------------------------------------------------
    ("not-toml", "ping", [change("[scenario]", "[scenario")], "", "not valid TOML"),
    ("no-scenario-table", "ping", [change("[scenario]", "[scenaria]")], "scenaria", "unknown key"),
    ("no-name", "ping", [change('name = "ping"', "")], "scenario.name", "missing required"),
    ("seed-negative", "ping", [change("seed = 1", "seed = -1")], "scenario.seed", ">= 0"),
    ("seed-float", "ping", [change("seed = 1", "seed = 1.5")], "scenario.seed", "integer"),
    ("until-nan", "ping", [change("until = 10.0", "until = nan")], "scenario.until", "finite"),
    ("until-inf", "ping", [change("until = 10.0", "until = inf")], "scenario.until", "finite"),
    ("until-negative", "ping", [change("until = 10.0", "until = -1.0")], "scenario.until", ">= 0"),
    ("until-string", "ping", [change("until = 10.0", 'until = "10 s"')], "scenario.until", "number"),
    ("unknown-top-key", "ping", [add("\n[scenarios]\nx = 1\n")], "scenarios", "did you mean"),
    # -- the profile --------------------------------------------------------------------
    ("profile-nosuch", "ping", [change("until = 10.0", 'until = 10.0\nprofile = "nosuch"')],
     "scenario.profile", "no such profile 'nosuch'"),
    ("profile-bad-name", "ping", [change("until = 10.0", 'until = 10.0\nprofile = "no such!"')],
     "scenario.profile", "profile name"),
    ("profile-file-missing", "ping",
     [change("until = 10.0", 'until = 10.0\nprofile = "missing.toml"')], "missing.toml",
     "cannot read profile"),
    ("op-typo", "ping", [add('\n[profile.ops."evtchn.notifyy"]\ndist = "fixed"\nvalue = 1e-6\n')],
     "profile.ops.evtchn.notifyy", "did you mean 'evtchn.notify'"),
    ("op-bad-dist", "ping", [add('\n[profile.ops."evtchn.notify"]\ndist = "gaussian"\nvalue = 1e-6\n')],
     "profile.ops.evtchn.notify.dist", "one of fixed"),
    ("op-negative", "ping", [add('\n[profile.ops."evtchn.notify"]\ndist = "fixed"\nvalue = -1e-6\n')],
     "profile.ops.evtchn.notify.value", "positive"),
    ("op-nan", "ping", [add('\n[profile.ops."evtchn.notify"]\ndist = "fixed"\nvalue = nan\n')],
     "profile.ops.evtchn.notify.value", "number of seconds"),
    ("op-missing-param", "ping", [add('\n[profile.ops."evtchn.notify"]\ndist = "lognormal"\nmedian = 1e-6\n')],
     "profile.ops.evtchn.notify.sigma", "missing"),
    ("op-unknown-key", "ping", [add('\n[profile.ops."evtchn.notify"]\ndist = "fixed"\nvalue = 1e-6\nmean = 2\n')],
     "profile.ops.evtchn.notify.mean", "unknown key"),
    ("op-uniform-reversed", "ping", [add('\n[profile.ops."evtchn.notify"]\ndist = "uniform"\nlow = 2e-6\nhigh = 1e-6\n')],
     "profile.ops.evtchn.notify.high", "high >= low"),
    ("switch-typo", "ping", [add('\n[profile.switches]\n"tpmfront.wiat" = "interrupt"\n')],
     "profile.switches.tpmfront.wiat", "did you mean 'tpmfront.wait'"),
    ("switch-type", "ping", [add('\n[profile.switches]\n"tpmfront.poll_interval" = "soon"\n')],
     "profile.switches.tpmfront.poll_interval", "expected"),
    ("profile-unknown-table", "ping", [add('\n[profile.opps."evtchn.notify"]\ndist = "fixed"\nvalue = 1e-6\n')],
     "profile.opps", "unknown key"),
    # -- [[domain]] ---------------------------------------------------------------------
    ("domain-name-empty", "ping", [change('name = "back"', 'name = ""')], "domain[1].name",
     "not a usable domain name"),
    ("domain-name-space", "ping", [change('name = "back"', 'name = "the back"')], "domain[1].name",
     "not a usable domain name"),
    ("domain-name-long", "ping", [change('name = "back"', f'name = "{"b" * 65}"')],
     "domain[1].name", "not a usable domain name"),
    ("domain-twice", "ping", [change('name = "back"', 'name = "front"')], "domain[1].name",
     "used twice"),
    ("domain-memory-0", "ping", [change('name = "back"', 'name = "back"\nmemory = 0')],
     "domain[1].memory", ">= 1"),
    # -- CPU scheduling (docs/cpu-scheduling.rst) ----------------------------------------
    ("scheduler-unknown", "ping", [change("until = 10.0", 'until = 10.0\nscheduler = "credit"')],
     "scenario.scheduler", "one of 'dedicated', 'credit2'"),
    ("pcpus-zero", "ping", [change("until = 10.0", 'until = 10.0\nscheduler = "credit2"\npcpus = 0')],
     "scenario.pcpus", ">= 1"),
    ("domain-weight-0", "ping", [change('name = "back"', 'name = "back"\ncpu_weight = 0')],
     "domain[1].cpu_weight", "1 to 65535"),
    ("domain-weight-big", "ping", [change('name = "back"', 'name = "back"\ncpu_weight = 65536')],
     "domain[1].cpu_weight", "1 to 65535"),
    ("domain-cap-negative", "ping", [change('name = "back"', 'name = "back"\ncap = -5')],
     "domain[1].cap", ">= 0"),
    ("workload-named-cpu", "ping", [change('name = "pp"', 'name = "cpu"'),
                                    change('metric = "pp.', 'metric = "cpu.'),
                                    change("until = 10.0", 'until = 10.0\nscheduler = "credit2"')],
     "workload.cpu.name", "taken by the CPU scheduler"),
    ("xl-weight-0", "stack", [change('memory=8', 'memory=8\ncpu_weight=0')],
     "configs[1]: cpu_weight", "1 to 65535"),
    ("xl-cap-string", "stack", [change('memory=8', 'memory=8\ncap="half"')],
     "configs[1]: cap", "percent of one physical CPU"),
    # -- [[workload]] and [[expect]] ------------------------------------------------------
    ("no-workload", "ping", [change('type = "ring-pingpong"', 'typ = "ring-pingpong"')],
     "workload.pp.type", "missing required"),
    ("workload-type", "ping", [change('type = "ring-pingpong"', 'type = "ring-ping"')],
     "workload.pp.type", "unknown type"),
    ("workload-key-typo", "ping", [change("requests = 10", "requets = 10")],
     "workload.pp.requets", "did you mean 'requests'"),
    ("requests-0", "ping", [change("requests = 10", "requests = 0")], "workload.pp.requests", ">= 1"),
    ("request-size-big", "ping", [change("window = 2", "window = 2\nrequest_size = 5000")],
     "workload.pp.request_size", "at most 4032"),
    ("window-0", "ping", [change("window = 2", "window = 0")], "workload.pp.window", ">= 1"),
    ("frontend-missing", "ping", [change('frontend = "front"', 'frontend = "nobody"')],
     "workload.pp.frontend", "no [[domain]]"),
    ("workload-twice", "ping", [add('\n[[workload]]\ntype = "ring-pingpong"\nname = "pp"\n'
                                    'frontend = "front"\nbackend = "back"\n')],
     "workload[1].name", "used twice"),
    ("expect-metric", "ping", [change('metric = "pp.requests_completed"', 'metric = "p.requests"')],
     "expect[0].metric", "must start with a workload name"),
    ("expect-two-ops", "ping", [change("equals = 10", "equals = 10\nbelow = 3")], "expect[0]",
     "exactly one comparison"),
    ("expect-no-op", "ping", [change("equals = 10", "")], "expect[0]", "exactly one comparison"),
    # -- vtpm-stack: xl configs as the toolstack takes them -----------------------------------
    ("backend-missing", "stack", [change("backend=vtpm-guest1", "backend=vtpm-guest9")],
     "workload.st.configs[2]: vtpm[0]", "no config creates it"),
    ("backend-later", "stack", [change(f"configs = [{MGR}, {VTPM}, {GUEST}]",
                                       f"configs = [{MGR}, {GUEST}, {VTPM}]")],
     "workload.st.configs[1]: vtpm[0]", "created later"),
    ("manager-no-iomem", "stack", [change('iomem=["fed40,5"]', "")],
     "workload.st.configs[0]: iomem", "TIS window"),
    ("manager-short-iomem", "stack", [change('iomem=["fed40,5"]', 'iomem=["fed40,2"]')],
     "workload.st.configs[0]: iomem", "TIS window"),
    ("iomem-twice", "stack", [change('memory=8', 'memory=8\niomem=["fed40,5"]')],
     "workload.st.configs[1]: iomem", "EBUSY"),
    ("config-name-twice", "stack", [change('name="guest1"', 'name="vtpmmgr"')],
     "workload.st.configs[2]: name", "EEXIST"),
    ("config-key-typo", "stack", [change("memory=512", "memroy=512")], "configs", "did you mean 'memory'"),
    ("config-iomem-malformed", "stack", [change('iomem=["fed40,5"]', 'iomem=["fed40"]')],
     "workload.st.configs", "iomem[0]"),
    ("config-name-empty", "stack", [change('name="guest1"', 'name=""')], "workload.st.configs", "name"),
    ("config-uuid", "stack", [change("uuid=ac0a5b9e", "uuid=zz0a5b9e")], "workload.st.configs",
     "not a UUID"),
    ("stack-command", "stack", [change('commands = ["pcr_extend"]', 'commands = ["pcr_extnd"]')],
     "workload.st.commands", "unknown command"),
    ("stack-pcr", "stack", [change("iterations = 1", "iterations = 1\npcr = 24")],
     "workload.st.pcr", "0..23"),
    ("stack-iterations", "stack", [change("iterations = 1", "iterations = 0")],
     "workload.st.iterations", ">= 1"),
    ("stack-boot-pcr", "stack", [change("iterations = 1", 'iterations = 1\nboot = [{ pcr = 30, '
                                        'component = "xen", data = "x" }]')],
     "workload.st.boot", "0..23"),
    ("stack-think-nan", "stack", [change("iterations = 1", "iterations = 1\nthink_time = nan")],
     "workload.st.think_time", "finite"),
    ("stack-guest-empty", "stack-std", [change('guests = ["guest1"]', 'guests = [""]')],
     "workload.st.guests[0]", "not a usable domain name"),
    ("stack-guests-twice", "stack-std", [change('guests = ["guest1"]', 'guests = ["g", "g"]')],
     "workload.st.guests[1]", "EEXIST"),
    ("two-hosts", "stack-std", [add('\n[[workload]]\ntype = "vtpm-stack"\nname = "st2"\n')],
     "workload.st2 (its vTPM manager)", "EEXIST"),
    ("domain-vs-config", "stack", [add('\n[[domain]]\nname = "vtpmmgr"\n')],
     "workload.st.configs[0]", "EEXIST"),
    # -- attestation: every file it reads and every name it creates -----------------------------
    ("policy-missing", "attest", [change('policy = "policy.toml"', 'policy = "nope.toml"')],
     "workload.at.policy", "no policy file"),
    ("policy-not-toml", "attest", [change('policy = "policy.toml"', 'policy = "bad-policy.toml"')],
     "bad-policy.toml", "not valid TOML"),
    ("policy-bad-digest", "attest", [change('policy = "policy.toml"', 'policy = "digest-policy.toml"')],
     "digest-policy.toml", "digest"),
    ("policy-folder", "attest", [change('policy = "policy.toml"', 'policy = "."')],
     "", "policy"),
    ("image-file-missing", "attest", [change('kernel = { name = "linux", version = "6.1" }',
                                             'kernel = { file = "vmlinuz-missing" }')],
     "workload.at.images.kernel.file", "cannot read"),
    ("image-100GB", "attest", [change('version = "6.1" }, initrd', 'version = "6.1", size = 100_000_000_000 }, initrd')],
     "workload.at.images.kernel.size", "64 MiB"),
    ("initrd-negative", "attest", [change('{ name = "initrd", version = "6.1" }',
                                          '{ name = "initrd", version = "6.1", size = -1 }')],
     "workload.at.images.initrd.size", "from 0"),
    ("flip-byte-range", "attest", [change('version = "6.1" }, initrd', 'version = "6.1", flip_byte = 70000 }, initrd')],
     "workload.at.images.kernel.flip_byte", "below"),
    ("flip-byte-negative", "attest", [change('version = "6.1" }, initrd', 'version = "6.1", flip_byte = -1 }, initrd')],
     "workload.at.images.kernel.flip_byte", "below"),
    ("image-both", "attest", [change('kernel = { name = "linux", version = "6.1" }',
                                     'kernel = { name = "linux", version = "6.1", file = "x" }')],
     "workload.at.images.kernel", "either file"),
    ("images-no-kernel", "attest", [change('kernel = { name = "linux", version = "6.1" }, ', '')],
     "workload.at.images.kernel", "missing"),
    ("images-unknown", "attest", [change('cmdline = "ro"', 'cmdline = "ro", initramfs = "x"')],
     "workload.at.images.initramfs", "unknown key"),
    ("exec-relative", "attest", [change('path = "/usr/bin/bash"', 'path = "usr/bin/bash"')],
     "workload.at.exec[0].path", "absolute path"),
    ("exec-no-version", "attest", [change(', version = "5.2" }', " }")],
     "workload.at.exec[0].version", "string"),
    ("exec-unknown-key", "attest", [change('version = "5.2" }', 'version = "5.2", sha = "x" }')],
     "workload.at.exec[0].sha", "unknown key"),
    ("exec-later-relative", "attest", [change("rounds = 1", 'rounds = 1\nexec_later = [{ path = "x", version = "1" }]')],
     "workload.at.exec_later[0].path", "absolute path"),
    ("peer-is-guest", "attest", [change("rounds = 1", 'rounds = 1\nattack = "relay"\npeer = "guest1"')],
     "workload.at.peer", "another guest"),
    ("export-is-file", "attest", [change("rounds = 1", 'rounds = 1\nexport = "policy.toml"')],
     "workload.at.export", "is a file"),
    ("guest-name-empty", "attest", [change('guest = "guest1"', 'guest = ""')], "workload.at.guest",
     "not a usable domain name"),
    ("guest-like-domain", "attest", [add('\n[[domain]]\nname = "guest1"\n')], "workload.at.guest",
     "EEXIST"),
    ("guest-like-manager", "attest", [change('guest = "guest1"', 'guest = "vtpmmgr"')],
     "workload.at.guest", "EEXIST"),
    ("host-tamper-component", "attest", [change("rounds = 1", 'rounds = 1\nattack = "host-tampered"\n'
                                                'host_tamper = { component = "bios", data = "x" }')],
     "workload.at.host_tamper.component", "no component"),
    ("host-tamper-shape", "attest", [change("rounds = 1", 'rounds = 1\nattack = "host-tampered"\n'
                                            'host_tamper = { component = "xen" }')],
     "workload.at.host_tamper", "expected"),
    ("attack-unknown", "attest", [change("rounds = 1", 'rounds = 1\nattack = "rootkit"')],
     "workload.at.attack", "one of"),
    ("interval-inf", "attest", [change("rounds = 1", "rounds = 1\ninterval = inf")],
     "workload.at.interval", "finite"),
    ("boot-unknown", "attest", [change("rounds = 1", 'rounds = 1\nboot = "uefi"')],
     "workload.at.boot", "one of"),
]


def make(tmp_path, base, edits):
    text = BASES[base]
    for kind, a, b in edits:
        if kind == "replace":
            assert a in text, (a, base)
            text = text.replace(a, b, 1)
        else:
            text += a
    shutil.copy(POLICY, tmp_path / "policy.toml")
    (tmp_path / "bad-policy.toml").write_text("[policy\n")
    (tmp_path / "digest-policy.toml").write_text(
        POLICY.read_text().replace('kernel = "sha256:', 'kernel = "sha257:', 1))
    path = tmp_path / "broken.toml"
    path.write_text(text)
    return path


def simxen(capsys, *argv):
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("base", sorted(BASES))
def test_the_bases_are_valid(tmp_path, capsys, base):
    status, out, err = simxen(capsys, "validate", str(make(tmp_path, base, [])))
    assert status == 0, err


def test_the_corpus_covers_every_kind():
    assert len(CASES) >= 60
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case,base,edits,key,words", CASES, ids=[c[0] for c in CASES])
def test_validate_and_run_refuse_alike(tmp_path, capsys, case, base, edits, key, words):
    path = make(tmp_path, base, edits)
    lines = {}
    for command in ("validate", "run"):
        status, out, err = simxen(capsys, command, str(path), *(["--no-progress"] * (command == "run")))
        assert status == 2, f"{command}: exit {status}\n{out}{err}"
        assert out == "", f"{command} printed a report: it simulated"
        assert "Traceback" not in err and err.count("\n") == 1, err
        line = err.strip()
        assert line.startswith(f"simxen {command}: "), line
        assert key in line and words in line, line
        assert str(path.parent) in line, line        # the file (the scenario, or one it names)
        lines[command] = line.split(": ", 1)[1]
    assert lines["validate"] == lines["run"]


@pytest.mark.parametrize("argv,key,words", [
    (["--trace", "{dir}"], "--trace", "is a folder"),
    (["--trace", "{dir}/no/such/t.jsonl"], "--trace", "folder does not exist"),
    # was "folder does not exist: .../policy.toml", of a file that does exist
    (["--trace", "{dir}/policy.toml/t.jsonl"], "--trace", "policy.toml is a file, not a folder"),
    (["--trace", "/sys/simxen-trace.jsonl"], "--trace", "cannot write"),
    (["--until", "nan"], "--until", "finite"),
    (["--until", "-1"], "--until", ">= 0"),
    (["--until", "inf"], "--until", "finite"),
    (["--seed", "-3"], "--seed", ">= 0"),
], ids=["trace-folder", "trace-missing-folder", "trace-under-a-file", "trace-unwritable",
        "until-nan", "until-negative",
        "until-inf", "seed-negative"])
def test_bad_run_arguments_are_refused_before_the_run(tmp_path, capsys, argv, key, words):
    path = make(tmp_path, "ping", [])
    argv = [a.replace("{dir}", str(tmp_path)) for a in argv]
    status, out, err = simxen(capsys, "run", str(path), "--no-progress", *argv)
    assert status == 2 and out == "", err
    assert "Traceback" not in err and err.count("\n") == 1
    assert key in err and words in err, err


@pytest.mark.parametrize("base,sets,words,key", [
    ("attest", ["at.policy=nope.toml"], "no policy file", "--set at.policy=nope.toml"),
    ("attest", ['at.images.kernel.size=-5'], "from 0", "--set at.images.kernel.size=-5"),
    ("ping", ['profile.ops."evtchn.notifyy"={dist = "fixed", value = 1e-6}'], "did you mean",
     '--set profile.ops."evtchn.notifyy"='),
    ("ping", ["scenario.until=nan"], "finite", "--set scenario.until=nan"),
    ("stack-std", ['st.guests=["guest1", "guest1"]'], "EEXIST", "workload.st.guests[1]"),
], ids=["policy", "kernel-size", "op-typo", "until-nan", "guests-twice"])
def test_overrides_are_checked_alike_and_named(tmp_path, capsys, base, sets, words, key):
    """``--set`` values go through the same checks, and the error names the ``--set``."""
    path = make(tmp_path, base, [])
    argv = [a for s in sets for a in ("--set", s)]
    lines = {}
    for command in ("validate", "run"):
        status, out, err = simxen(capsys, command, str(path), *argv)
        assert status == 2 and out == "", err
        assert "Traceback" not in err and err.count("\n") == 1, err
        assert words in err, err
        lines[command] = err.split(": ", 1)[1]
    assert lines["validate"] == lines["run"]
    assert key in lines["run"]


@pytest.mark.parametrize("argv", [
    ["trace", "{scenario}", "--format", "text", "-o", "{dir}"],
    ["trace", "{scenario}", "--format", "pcap", "-o", "{dir}/no/such/t.pcap"],
    ["serve", "{scenario}", "--domain", "guest1", "--trace", "{dir}"],
], ids=["trace-o-folder", "trace-o-missing-folder", "serve-trace-folder"])
def test_other_commands_check_their_output_before_working(tmp_path, capsys, argv):
    path = make(tmp_path, "stack", [])
    argv = [a.replace("{scenario}", str(path)).replace("{dir}", str(tmp_path)) for a in argv]
    status, out, err = simxen(capsys, *argv)
    assert status == 2 and out == "", err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert "folder" in err, err


def test_until_0_is_taken_from_the_command_line_as_from_the_file(tmp_path, capsys):
    """``scenario.until = 0`` is a valid file (nothing runs; the report says how far each
    workload got); ``--until 0`` was refused as not positive."""
    path = make(tmp_path, "ping", [])
    from_file = tmp_path / "zero.toml"
    from_file.write_text(path.read_text().replace("until = 10.0", "until = 0.0"))
    assert "until = 0.0" in from_file.read_text()
    for argv in ([str(path), "--until", "0"], [str(from_file)]):
        status, out, err = simxen(capsys, "run", *argv, "--no-progress", "--json")
        assert "Traceback" not in err and "--until" not in err, err
        assert status in (0, 1) and json.loads(out)["metrics"], err


@pytest.mark.parametrize("until", [False, True, -0.5, float("nan"), float("inf")])
def test_until_from_the_python_api_is_a_number_of_seconds_not_a_bool(tmp_path, until):
    """``until=False`` equals 0 to Python but is no number of seconds: refused, as a bool
    seed is; 0 itself is taken (the previous test)."""
    from simxen.errors import InputError
    from simxen.scenario import runner, scenario_file
    scenario = scenario_file.load(make(tmp_path, "ping", []))
    with pytest.raises(InputError, match="--until: expected a finite number of seconds >= 0"):
        runner.prepare(scenario, until=until)
