"""The trace is a documented format: every record of every shipped scenario
validates against ``simxen/analysis/trace_schema.json``, and ``docs/trace.rst``
is the schema rendered."""

import importlib.util
import json
from pathlib import Path

import jsonschema
import pytest

from simxen.analysis import trace_format
from simxen.xen import Hypervisor

ROOT = Path(__file__).resolve().parents[2]


def test_schema_is_a_valid_draft7_schema():
    jsonschema.Draft7Validator.check_schema(trace_format.schema())


@pytest.mark.slow
def test_every_shipped_scenario_trace_validates(shipped_traces):
    """Each record by its kind's branch of the schema (:func:`trace_format.check_record`,
    what reading a trace file checks: the whole schema through jsonschema takes about
    1 ms a record, the branch compiled by fastjsonschema a few us)."""
    seen = set()
    known = set(trace_format.kinds())
    for name, records in shipped_traces.items():
        assert records, name
        for r in records:
            assert r["kind"] in known, f"{name}: seq {r['seq']}: kind {r['kind']!r} is not in the schema"
            problem = trace_format.check_record(r)
            assert problem is None, f"{name}: seq {r['seq']} ({r['kind']}): {problem}"
            seen.add(r["kind"])
    # the shipped scenarios exercise the kinds a student meets first
    assert {"tpm.front.submit", "tpm.exec", "page.write", "evtchn.send", "gnttab.map",
            "xs.write", "pvgrub.measure", "attest.verdict", "tis.go"} <= seen


@pytest.mark.slow
def test_whole_schema_agrees_with_per_kind_check(shipped_traces):
    """The full schema (its if/then chain), through jsonschema, on one record of
    each kind and on records broken in the ways the schema must catch."""
    validator = jsonschema.Draft7Validator(trace_format.schema())
    one_each = {}
    for records in shipped_traces.values():
        for r in records:
            one_each.setdefault(r["kind"], r)
    for r in one_each.values():
        validator.validate(r)
        assert trace_format.check_record(r) is None
    submit = dict(one_each["tpm.front.submit"])
    for broken in ({**submit, "surprise": 1}, {**submit, "cc": "TPM2_PCR_Extend"},
                   {k: v for k, v in submit.items() if k != "cc_name"},
                   {**submit, "t": -1.0}, {**submit, "dom": [1]},
                   {**one_each["page.write"], "data": "xyz"}):
        assert not validator.is_valid(broken), broken
        assert trace_format.check_record(broken) is not None, broken
    # a kind the schema does not know: the whole schema refuses it; reading checks the
    # fields every record has (an export passes over a kind it does not draw)
    assert not validator.is_valid({**submit, "kind": "tpm.front.submits"})
    assert trace_format.check_record({**submit, "kind": "tpm.front.submits"}) is None
    assert trace_format.check_record({**submit, "kind": "x.y", "dom": "d"}) is not None
    # what JSON Schema allows but a reader of the record could not use: an integer
    # written as a float (``1.0`` and ``1e308`` are integers to JSON Schema), and one
    # of the fields that come in pairs without the other
    assert validator.is_valid({**submit, "length": 10.0})
    assert trace_format.check_record({**submit, "length": 10.0}) == (
        "length must be an integer, not 10.0")
    write = {k: v for k, v in one_each["page.write"].items() if k not in ("gfn", "gref")}
    assert trace_format.check_record({**write, "granter": 1}) == (
        "the record: missing dependency gref for granter")
    send = {k: v for k, v in one_each["evtchn.send"].items() if k != "remote_port"}
    assert "remote_port" in trace_format.check_record(send)


@pytest.mark.slow
def test_names_and_codes_ride_along(shipped_traces):
    records = shipped_traces["boot-attest"]
    names = trace_format.domain_names(records)
    assert names[0] == "Domain-0" and "guest1" in names.values()
    for r in records:
        if r["dom"] is not None:
            assert r["dom_name"] == names[r["dom"]], r
        if "cc" in r and r["cc"] is not None:
            assert isinstance(r["cc"], int) and isinstance(r["cc_name"], str), r
    extends = [r for r in records if r.get("cc_name") == "TPM2_PCR_Extend" and r["kind"] == "tpm.exec"]
    assert extends and all(r["cc"] == 0x182 for r in extends)


def test_dom_name_in_a_bare_hypervisor_trace():
    hv = Hypervisor(seed=3)
    dom = hv.domain_create("alice")
    hv.xs.write(dom, f"/local/domain/{dom.domid}/x", "1")
    lines = [json.loads(line) for line in hv.trace.dumps_jsonl().splitlines()]
    mine = [r for r in lines if r["dom"] == dom.domid]
    assert mine and all(r["dom_name"] == "alice" for r in mine)


def test_docs_page_is_the_schema_rendered():
    """docs/trace.rst ends with the schema's reference; regenerate it with
    scripts/trace-doc.py when a record kind changes."""
    spec = importlib.util.spec_from_file_location("trace_doc", ROOT / "scripts" / "trace-doc.py")
    trace_doc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(trace_doc)
    page = (ROOT / "docs" / "trace.rst").read_text()
    assert page.endswith(trace_doc.render()), "run: python scripts/trace-doc.py"
