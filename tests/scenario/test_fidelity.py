"""Xen-faithful defaults and honest labels (docs/fidelity.rst)."""

import pytest

from simxen.analysis import certainty
from simxen.cli import main
from simxen.domains.stack import HostSpec, build_host
from simxen.protocols.vtpmmgr import VTPM_ORD_SAVEHASHKEY
from simxen.xen import Hypervisor
from simxen.xen.profile import Profile, shipped_chips


def test_a_pcr_extend_through_the_default_stack_saves_and_asks_the_manager():
    """Xen's vTPM saves after every successful command (strong persistence): even a PCR
    extend writes the sealed state to the vTPM's disk and makes a SaveHashKey round trip."""
    hv = Hypervisor(seed=1)
    host = build_host(hv, HostSpec.standard())
    hv.env.run(until=host.ready)
    vtpm, mgr = host.vtpm("vtpm-guest1"), host.vtpmmgr
    saves, served = vtpm.saves, mgr.served
    writes = host.op_counts()["disk.write"]
    tpm = host.guest("guest1").tpm
    proc = hv.env.process(tpm.pcr_extend(16, b"measured"))
    hv.env.run(until=proc)
    flow = tpm.last_flow
    assert vtpm.saves == saves + 1 and mgr.served == served + 1          # counters
    assert host.op_counts()["disk.write"] == writes + 1                   # the vTPM's slot only
    (save,) = [r for r in hv.trace.select("vtpm.save") if r.fields["flow"] == flow]
    assert save.fields["rc"] == 0
    (req,) = [r for r in hv.trace.select("vtpmmgr.request") if r.fields["flow"] == flow]
    assert req.fields["ordinal"] == VTPM_ORD_SAVEHASHKEY and req.fields["rc"] == 0
    assert mgr.storage.kind == "xen" and mgr.storage.unsynced_saves > 0   # Xen: nothing written


def test_save_on_changed_stays_selectable():
    hv = Hypervisor(seed=1)
    host = build_host(hv, HostSpec.standard(options={"vtpm-guest1": {"save_on": "changed"}}))
    hv.env.run(until=host.ready)
    vtpm = host.vtpm("vtpm-guest1")
    saves = vtpm.saves
    proc = hv.env.process(host.guest("guest1").tpm.pcr_extend(16, b"measured"))
    hv.env.run(until=proc)
    assert vtpm.saves == saves                       # PCRs are not persistent state


@pytest.mark.parametrize("chip", [None] + shipped_chips())
def test_every_op_of_every_shipped_profile_and_chip_has_a_source(chip):
    profile = Profile.load("default")
    if chip:
        profile = profile.with_chip(chip)
    assert profile.chip == (chip or "slb9670")       # the default names its chip
    for name in profile.ops:
        op = profile.op(name)
        assert len(op.source) > 20 and op.certainty in "VPU", name
        assert "placeholder" not in op.source or op.certainty == "U", name


def test_the_three_chips_differ_where_the_benchmarks_do():
    rsa = {c: Profile.load("default").with_chip(c).op("tpm.ptpm.Create.rsa").params["median"]
           for c in shipped_chips()}
    assert rsa["slb9670"] < rsa["npct75x"] < rsa["st33"]        # 2.2 s, 3.4 s, 7.5 s


def test_profile_show_lists_every_op_with_its_source(capsys):
    assert main(["profile", "show"]) == 0
    out = capsys.readouterr().out
    profile = Profile.load("default")
    for name in profile.ops:
        line = next(l for l in out.splitlines() if l.startswith(name + "  ["))
        assert f"[{profile.op(name).certainty}]" in line
    assert out.count("    source: ") == len(profile.ops)
    assert "physical TPM chip: slb9670" in out
    assert main(["profile", "show", "--chip", "st33"]) == 0
    assert "physical TPM chip: st33" in capsys.readouterr().out
    assert main(["profile", "show", "--chip", "nope"]) == 2
    assert "no such chip 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, said", [
    (["chips", "st33"], "chips: `chips` takes no profile (found 'st33'); `simxen profile show "
     "st33` prints that one"),
    (["chips", "--chip", "st33"], "--chip: applies to `show`: `simxen profile show --chip st33`"),
])
def test_profile_chips_refuses_what_it_would_ignore(argv, said, capsys):
    # was: exit 0 and the list of chips, the name or --chip silently unread
    assert main(["profile", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.strip() == f"simxen profile: {said}"


def test_a_latency_resting_on_assumed_figures_is_labelled_an_estimate():
    profile = Profile.load("default")
    # a linux-6 guest's command: ~4.85 ms of which 4.7+ is the sourced usleep_range
    polled = {"front_to_back": 0.01, "vtpm": 0.2, "manager": 0.02, "ptpm": 0.0,
              "back_to_front": 4.6}
    share = certainty.unverified_share(polled, profile, era="linux-6", unit=1e-3)
    assert share < 0.05 and not certainty.is_estimate(share)
    # interrupt-driven (linux-3.12): the same work, no sleep -- the assumed event-channel and
    # disk costs are now most of it
    irq = dict(polled, back_to_front=0.01)
    share = certainty.unverified_share(irq, profile, polls=False, era="linux-3.12", unit=1e-3)
    assert certainty.is_estimate(share)


def test_every_report_names_its_profile_chip_and_kernel_era(tmp_path):
    from simxen.scenario import runner, scenario_file
    path = tmp_path / "s.toml"
    path.write_text('[scenario]\nname = "s"\nchip = "npct75x"\n[[workload]]\ntype = "vtpm-stack"\n'
                    'iterations = 2\nkernel_era = "linux-3.12"\n')
    text = runner.run(scenario_file.load(path)).report.render()
    assert "timing profile     default" in text
    assert "physical TPM chip  npct75x" in text
    assert "guest kernel era   linux-6" in text
    assert "estimate" in text                        # interrupt-driven: rests on assumed figures


def test_an_op_without_a_source_is_refused():
    """No default number without a source (ops): the loader refuses an op that lacks one,
    naming the file and key, so a shipped profile cannot lose a citation unnoticed."""
    from simxen.errors import InputError
    doc = {"ops": {"evtchn.notify": {"dist": "fixed", "value": 1e-6, "certainty": "U"}}}
    with pytest.raises(InputError) as err:
        Profile.from_dict(doc, path="p.toml", require=())
    assert "ops.evtchn.notify.source" in str(err.value)


def test_every_default_switch_number_cites_its_source():
    """No default number without a source (switches): each switch of a shipped profile file
    sits under a comment that gives its source and a certainty tag ([V], [P] or [U]) --
    `simxen profile show` prints the values; the file is where their sources live."""
    import re
    from pathlib import Path

    import simxen.profiles
    for path in sorted(Path(simxen.profiles.__file__).parent.rglob("*.toml")):
        lines = path.read_text().splitlines()
        in_switches = False
        for i, line in enumerate(lines):
            if line.startswith("["):
                in_switches = line.strip() == "[switches]"
                continue
            if not in_switches or not re.match(r'\s*"?[\w.]+"?\s*=', line):
                continue
            j = i - 1
            while j >= 0 and re.match(r'\s*"?[\w.]+"?\s*=', lines[j]):
                j -= 1                       # a group of switches under one comment
            comment = []
            while j >= 0 and lines[j].startswith("#"):
                comment.insert(0, lines[j])
                j -= 1
            text = " ".join(comment)
            assert re.search(r"\[[VPU][]:]", text), f"{path.name}: {line.strip()} has no source"


@pytest.mark.parametrize("layout", ["", "configs = []\nguest_count = 2\n"])
def test_an_era_for_a_guest_the_workload_does_not_boot_is_refused(tmp_path, capsys, layout):
    # a misspelt guest in guest_kernels would leave the guest on the default era unnoticed
    path = tmp_path / "s.toml"
    path.write_text('[scenario]\nname = "s"\n[[workload]]\ntype = "vtpm-stack"\nname = "st"\n'
                    + layout + 'guest_kernels = { gust1 = "linux-3.12" }\n')
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "workload.st.guest_kernels.gust1" in err and str(path) in err
    assert "'gust1' is not a guest of this workload (its guests: guest1" in err
    path.write_text(path.read_text().replace("gust1", "guest1"))
    assert main(["validate", str(path)]) == 0
