"""Reading a scenario file: TOML in, a validated :class:`Scenario` out.

A scenario file has these tables (``simxen validate --keys`` prints every
key with its type and default)::

    [scenario]        name, description, seed, until, profile
    [profile]         overrides of the timing profile, by operation name
    [[domain]]        the domains the scenario starts itself
    [[workload]]      what the domains do (one table per workload, by type)
    [[expect]]        what must hold at the end; `simxen run` exits 1 otherwise
    [[plot]]          the pictures `simxen sweep` draws by default (metric vs a varied key)

Paths inside a scenario (a profile file, an image) are relative to the
scenario file's own folder.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from simxen.errors import TOO_DEEP, InputError
from simxen.scenario import expect, metrics, workloads
from simxen.scenario.schema import Field, Table, TableArray
from simxen.xen.hypervisor import MAX_VIRT_CPUS, vcpus_problem

SCENARIO = Table("scenario", "what this scenario is", [
    Field("name", str, "short name, shown in the report title"),
    Field("description", str, "what the scenario shows, in a few sentences", default=""),
    Field("seed", int, "seed of every random stream (overridden by --seed)", default=1, minimum=0),
    Field("until", float, "stop the simulation at this simulated time, in seconds "
          "(overridden by --until)", default=3600.0, minimum=0),
    Field("profile", str, "timing profile: a name shipped with simxen ('default') or a path "
          "to a TOML file, relative to the scenario", default="default"),
    Field("chip", str, "the physical TPM's figures: a chip shipped in simxen/profiles/chips "
          "('slb9670', 'npct75x', 'st33'); empty = the profile's own chip", default=""),
    Field("scheduler", str, "CPU scheduling: 'dedicated' gives every domain a physical CPU of "
          "its own; 'credit2' shares scenario.pcpus physical CPUs among all domains under "
          "Xen's credit2 rules (docs/cpu-scheduling.rst)", default="dedicated",
          choices=("dedicated", "credit2")),
    Field("pcpus", int, "physical CPUs the domains share when scheduler = 'credit2'",
          default=1, minimum=1),
], required=True)

def _domain_name(value):
    from simxen.domains.xl_config import name_problem
    return name_problem(value)


def _weight(value):
    if value is not None and not 1 <= value <= 65535:
        return f"expected a weight from 1 to 65535 (xl.cfg(5) cpu_weight), found {value!r}"
    return None


DOMAIN = Table("domain", "a domain the scenario creates directly (no toolstack)", [
    Field("name", str, "domain name; workloads refer to domains by it", check=_domain_name),
    Field("memory", int, "memory in MiB", default=16, minimum=1),
    Field("vcpus", int, f"number of virtual CPUs, 1 to {MAX_VIRT_CPUS} (Xen's limit for a PV "
          "domain)", default=1, check=vcpus_problem),
    Field("cpu_weight", int, "credit2 weight, 1 to 65535 (as xl.cfg's cpu_weight=); "
          "absent = the profile's default (256)", default=None, check=_weight),
    Field("cap", int, "credit2 cap in percent of one physical CPU (as xl.cfg's cap=); 0 = none",
          default=0, minimum=0),
])


PLOT = Table("plot", "a picture `simxen sweep` draws from its summary (docs/throughput-lab.rst)", [
    Field("y", (str, list), "the metric on the vertical axis, e.g. 'stack.latency_ms.p95' "
          "(`simxen metrics` lists them), or an array of metrics of one unit drawn together, "
          "e.g. ['stack.offered_per_s', 'stack.throughput_per_s']", items=str,
          check=lambda v: None if v else "expected at least one metric"),
    Field("x", str, "the varied key on the horizontal axis; empty = the first --vary",
          default=""),
    Field("hue", str, "a varied key drawn as one line per value; empty = one line per "
          "combination of the other varied keys", default=""),
    Field("title", str, "the picture's title; empty = '<y> vs <x>', the metric and the varied "
          "key", default=""),
])


def plot_metrics(plot, i) -> list:
    """``[(key, metric)]`` of what the ``[[plot]]`` table number ``i`` draws: its ``y``,
    one name (key ``plot[i].y``) or an array of them (``plot[i].y[j]``)."""
    if isinstance(plot["y"], str):
        return [(f"plot[{i}].y", plot["y"])]
    return [(f"plot[{i}].y[{j}]", y) for j, y in enumerate(plot["y"])]


def top_schema() -> Table:
    return Table("", "a simxen scenario file", [
        SCENARIO,
        Field("profile", dict, "timing-profile overrides: operation name -> distribution table "
              "(see docs/profiles.rst)", default={}),
        TableArray("domain", "a domain created at time 0", table=DOMAIN),
        TableArray("workload", "what the domains do", variants=workloads.schemas(),
                   minimum=1, name_key="name"),
        TableArray("expect", "a condition checked after the run", table=expect.EXPECT),
        TableArray("plot", "a default picture of a sweep", table=PLOT),
    ])


@dataclass
class Scenario:
    """A validated scenario file."""

    path: Path
    data: dict
    overrides: tuple = ()       #: the ``--set KEY=VALUE`` texts applied to the file

    @property
    def name(self) -> str:
        return self.data["scenario"]["name"]

    @property
    def folder(self) -> Path:
        return self.path.parent

    def resolve(self, relative: str) -> Path:
        """A path written in the file, relative to the file's folder."""
        p = Path(relative)
        return p if p.is_absolute() else self.folder / p

    def named_files(self) -> list:
        """Every existing file a string of the scenario names (a policy, a profile, an
        image), resolved as :meth:`resolve` does: what the run reads besides the
        scenario, and so what no output of the run may overwrite."""
        found, todo = [], [self.data]
        while todo:
            value = todo.pop()
            if isinstance(value, dict):
                todo.extend(value.values())
            elif isinstance(value, list):
                todo.extend(value)
            elif isinstance(value, str) and value and "\n" not in value:
                try:
                    path = self.resolve(value)
                    if path.is_file():
                        found.append(path)
                except (OSError, ValueError):       # too long for a name, a NUL
                    continue
        return found

    def reads(self, as_given) -> list:
        """What a run of the scenario reads, as ``(what, path)`` pairs for
        :func:`simxen.scenario.output.check_file`'s ``reads``: the scenario file
        itself, named ``as_given`` (the path as the user typed it, which an
        error message repeats), and every file it names (:meth:`named_files`).
        No output of the run may overwrite any of them."""
        return [("the scenario", as_given)] + [
            ("a file the scenario names", f) for f in self.named_files()]


def load(path, overrides=()) -> Scenario:
    """Read and validate *path*; raise :class:`InputError` naming the file and key.

    *overrides* are ``--set KEY=VALUE`` texts (or parsed
    :class:`~simxen.scenario.overrides.Override`), applied to the file's data
    before it is validated, so the schema checks them as it checks the file
    (see :mod:`simxen.scenario.overrides`)."""
    from simxen.scenario import overrides as ov_mod
    path = Path(path)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise InputError("no such file", path=path) from None
    except IsADirectoryError:
        raise InputError("is a folder, expected a scenario file (.toml)", path=path) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path=path) from None
    if text[:2] == b"\x1f\x8b":         # gzip's magic: a compressed trace, most likely
        raise InputError("is gzip-compressed, not a scenario (.toml); if it is a trace that "
                         "simxen run --trace wrote, gunzip it and read it with simxen trace "
                         "--from FILE", path=path)
    try:
        raw = tomllib.loads(text.decode("utf-8-sig"))   # a BOM (Windows editors) is left out
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", path=path) from None
    except RecursionError:
        raise InputError(f"not a scenario: {TOO_DEEP}", path=path) from None
    except tomllib.TOMLDecodeError as exc:
        if text.lstrip()[:1] == b"{":
            raise InputError("is JSON, not a scenario (TOML): a trace that simxen run --trace "
                             "wrote is read by simxen trace --from FILE", path=path) from None
        raise InputError(f"not valid TOML: {exc}", path=path) from None
    other = _other_kind(raw)
    if other:
        raise InputError(other, path=path)
    parsed = [o if isinstance(o, ov_mod.Override) else ov_mod.parse(o) for o in overrides]
    placed = ov_mod.apply(raw, parsed, path)
    try:
        data = top_schema().validate(raw, path, prefix="")
        expect.check_shape(data["expect"], path)
        _check_references(data, path)
        if data["expect"]:
            expect.check_kinds(data["expect"], _published(Scenario(path, data, ())), path)
    except InputError as err:
        raise ov_mod.blame(err, placed, path) from None
    return Scenario(path, data, tuple(o.text for o in parsed))


def _published(scenario):
    """The metrics *scenario* publishes, for checking its ``[[expect]]`` tables -- or none
    when a workload cannot list them yet: its tables hold a mistake (a config naming a
    domain no config creates, say) that :func:`simxen.scenario.runner.prepare` refuses
    with its own error, in ``validate`` and ``run`` alike."""
    try:
        return metrics.of_scenario(scenario)
    except InputError:
        return metrics.Metrics()


#: top-level table -> what a TOML file holding it (and no [scenario]) is, and what reads it;
#: the first that matches names the file (a chip's file holds [ops] too)
OTHER_KINDS = {
    "policy": "a verifier's golden policy, not a scenario: an attestation or fleet workload's "
              "policy key names it",
    "chip": "a physical TPM chip's figures, not a scenario: a scenario's scenario.chip names "
            "a shipped one, and simxen profile chips lists them",
    "ops": "a timing profile, not a scenario: a scenario's scenario.profile names it, and "
           "simxen profile show FILE prints it",
}


def _other_kind(raw) -> str | None:
    """What the TOML document *raw* is when it is another of simxen's files (a policy,
    a profile, a chip), so that it is named for what it is rather than refused for its
    first key; ``None`` for anything with a ``[scenario]`` table or none of theirs."""
    if "scenario" in raw:
        return None
    kind = next((k for k in OTHER_KINDS if k in raw), None)
    return f"is {OTHER_KINDS[kind]}" if kind else None


#: the prefix of the CPU scheduler's metrics (``cpu.utilisation``), when one is configured
CPU_METRICS = "cpu"


def _check_references(data, path):
    """Workloads and expectations must name things that exist."""
    names = [d["name"] for d in data["domain"]]
    seen = set()
    for i, d in enumerate(data["domain"]):
        if d["name"] in seen:
            raise InputError(f"domain name {d['name']!r} is used twice", path=path,
                             key=f"domain[{i}].name")
        seen.add(d["name"])
    wl_names = set()
    for i, w in enumerate(data["workload"]):
        if not w["name"].strip() or "." in w["name"]:
            # a metric is named <workload>.<result>, and split at its first dot
            raise InputError("expected a name that is not blank and holds no '.' (a result "
                             "is named <name>.<result>, split at its first '.'), found "
                             f"{w['name']!r}", path=path, key=f"workload[{i}].name")
        if w["name"] in wl_names:
            raise InputError(f"workload name {w['name']!r} is used twice; give each a distinct "
                             "'name'", path=path, key=f"workload[{i}].name")
        wl_names.add(w["name"])
        module = workloads.module(w["type"])
        problem = module.check(w) if hasattr(module, "check") else None
        if problem:
            raise InputError(problem[1], path=path, key=f"workload.{w['name']}.{problem[0]}")
        for key in getattr(module, "DOMAIN_KEYS", ()):
            if w[key] not in names:
                raise InputError(f"no [[domain]] is named {w[key]!r} (domains: "
                                 f"{', '.join(map(repr, names)) or 'none'})",
                                 path=path, key=f"workload.{w['name']}.{key}")
    for i, p in enumerate(data["plot"]):
        for where, y in plot_metrics(p, i):
            head = y.split(".", 1)[0]
            if head not in wl_names:
                raise InputError(f"metric must start with a workload name (one of "
                                 f"{', '.join(map(repr, sorted(wl_names)))}), found {head!r}",
                                 path=path, key=where)
    if data["scenario"]["scheduler"] != "dedicated" and CPU_METRICS in wl_names:
        raise InputError(f"the name {CPU_METRICS!r} is taken by the CPU scheduler's metrics "
                         f"(scenario.scheduler = {data['scenario']['scheduler']!r})",
                         path=path, key=f"workload.{CPU_METRICS}.name")
    # cpu.* names the scheduler's metrics; with scheduler = "dedicated" there are none,
    # and an expectation on one fails as any missing result does (a sweep over the
    # scheduler keeps its expectations)
    wl_names.add(CPU_METRICS)
    for i, e in enumerate(data["expect"]):
        head = e["metric"].split(".", 1)[0]
        if head not in wl_names:
            raise InputError(f"metric must start with a workload name (one of "
                             f"{', '.join(map(repr, sorted(wl_names)))}), found {head!r}",
                             path=path, key=f"expect[{i}].metric")


def reference() -> str:
    """Every key of a scenario file, one line each (for --keys and the docs)."""
    return "\n".join(top_schema().reference(prefix=""))
