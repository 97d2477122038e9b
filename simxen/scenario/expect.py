"""Expectations: what a scenario says must hold when it ends.

A scenario lists ``[[expect]]`` tables. Each names a *metric* — a dotted path
into the run's results, such as ``pingpong.requests_completed`` or
``attest.verdict`` — and one comparison::

    [[expect]]
    metric = "pingpong.latency_us.p99"
    below = 500.0

``simxen run`` checks every expectation after the run, prints each with its
outcome, and exits with status 1 when any fails.
"""

from __future__ import annotations

from dataclasses import dataclass

from simxen.scenario.schema import Field, Table


def _same(found, want) -> bool:
    """Whether a result equals a wanted value, a yes/no never equal to a number: Python's
    ``0 == False`` would pass ``equals = false`` on a count of nothing."""
    return isinstance(found, bool) is isinstance(want, bool) and found == want


def _number(found) -> bool:
    """Whether a result can be ordered against a number (a yes/no cannot)."""
    return not isinstance(found, bool)


#: comparison key -> (test, words for the report)
OPERATORS = {
    "equals": (lambda found, want: _same(found, want), "equals"),
    "not_equals": (lambda found, want: not _same(found, want), "differs from"),
    "below": (lambda found, want: _number(found) and found < want, "is below"),
    "above": (lambda found, want: _number(found) and found > want, "is above"),
    "at_most": (lambda found, want: _number(found) and found <= want, "is at most"),
    "at_least": (lambda found, want: _number(found) and found >= want, "is at least"),
    "contains": (lambda found, want: want in found, "contains"),
    "not_contains": (lambda found, want: want not in found, "does not contain"),
}


EXPECT = Table("expect", "a condition that must hold after the run", [
    Field("metric", str, "dotted path of a result, e.g. 'pingpong.requests_completed'"),
    Field("why", str, "one line telling the reader why this must hold", default=""),
] + [Field(op, (int, float, str, bool), f"the metric {words} this value", default=None)
     for op, (_, words) in OPERATORS.items()])


@dataclass
class Outcome:
    """The result of checking one expectation."""

    metric: str
    operator: str
    wanted: object
    found: object
    passed: bool
    why: str = ""

    def line(self) -> str:
        mark = "PASS" if self.passed else "FAIL"
        words = OPERATORS[self.operator][1]
        text = f"{mark}  {self.metric} {words} {self.wanted!r} (found {_fmt(self.found)})"
        if self.why:
            text += f" — {self.why}"
        return text


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    return repr(value)


_ABSENT = object()


def lookup(results: dict, metric: str):
    """Follow a dotted path through nested dicts; :data:`_ABSENT` if missing."""
    node = results
    for part in metric.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return _ABSENT
    return node


def operator_of(expect: dict) -> str | None:
    """The one comparison key an ``[[expect]]`` table sets (validated later)."""
    ops = [op for op in OPERATORS if expect.get(op) is not None]
    return ops[0] if len(ops) == 1 else None


#: the comparisons that order numbers, and those that look for a piece of text
ORDERING = ("below", "above", "at_most", "at_least")
TEXTUAL = ("contains", "not_contains")


def check_shape(expects: list, path) -> None:
    """Every ``[[expect]]`` must set exactly one comparison, of a value it can compare:
    a number for an ordering (``below = "1000"`` would fail whatever the run found), a
    string for ``contains``."""
    from simxen.errors import InputError, found
    for i, e in enumerate(expects):
        ops = [op for op in OPERATORS if e.get(op) is not None]
        if len(ops) != 1:
            raise InputError("expected exactly one comparison key (one of "
                             + ", ".join(OPERATORS) + f"), found {len(ops)}",
                             path=path, key=f"expect[{i}]")
        op, wanted = ops[0], e[ops[0]]
        if op in ORDERING and (isinstance(wanted, bool) or not isinstance(wanted, (int, float))):
            raise InputError(f"expected a number to compare with, found {found(wanted)}",
                             path=path, key=f"expect[{i}].{op}")
        if op in TEXTUAL and not isinstance(wanted, str):
            raise InputError(f"expected a string to look for, found {found(wanted)}",
                             path=path, key=f"expect[{i}].{op}")


#: what a comparison of a metric of each kind (:data:`simxen.scenario.metrics.KINDS`)
#: may be given, and what that is called: a value of another type can never match
_FITS = {
    "number": ((int, float), "a number"),
    "bool": ((bool,), "true or false"),
    "text": ((str,), "a string"),
}


def check_kinds(expects: list, published, path) -> None:
    """Every ``[[expect]]`` on a metric the scenario publishes (``published``:
    :class:`~simxen.scenario.metrics.Metrics`) compares it with a value of its kind: a
    yes/no with true or false and never ordered, a number with a number, a text with a
    string -- anything else would fail (or, as ``equals = 0`` on a yes/no once did, pass)
    whatever the run found. Shared by ``simxen validate`` and ``simxen run``."""
    from simxen.errors import InputError, found
    for i, e in enumerate(expects):
        metric = published.get(e["metric"])
        if metric is None:          # not published (a note of validate's; run finds no result)
            continue
        op = operator_of(e)
        wanted = e[op]
        types, name = _FITS[metric.kind]
        if op in TEXTUAL and metric.kind != "text":
            problem = f"it is {'a yes/no' if metric.kind == 'bool' else 'a number'}, not a text"
        elif op in ORDERING and metric.kind != "number":
            problem = f"{'a yes/no' if metric.kind == 'bool' else 'a text'} is not ordered"
        elif op in TEXTUAL:
            continue                # a string to look for: check_shape made sure
        elif isinstance(wanted, bool) is not (metric.kind == "bool") \
                or not isinstance(wanted, types):
            problem = f"expected {name}, found {found(wanted)}"
        else:
            continue
        raise InputError(f"{e['metric']} cannot be compared so: {problem} "
                         f"(simxen metrics --json gives each metric's kind)", path=path,
                         key=f"expect[{i}].{op}")


def evaluate(expects: list, results: dict, absent=None) -> list[Outcome]:
    """Check each expectation against *results*.

    *absent*, if given, is ``absent(metric) -> str | None``: why a metric is not in the
    results (shown as what was found, instead of ``<no such result>``)."""
    outcomes = []
    for e in expects:
        op = operator_of(e)
        wanted = e[op]
        found = lookup(results, e["metric"])
        if found is _ABSENT:
            why = absent(e["metric"]) if absent is not None else None
            outcomes.append(Outcome(e["metric"], op, wanted,
                                    f"<no such result: {why}>" if why else "<no such result>",
                                    False, e["why"]))
            continue
        try:
            passed = bool(OPERATORS[op][0](found, wanted))
        except TypeError:
            passed = False
        outcomes.append(Outcome(e["metric"], op, wanted, found, passed, e["why"]))
    return outcomes
