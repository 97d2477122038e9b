"""The worked example of docs/xen-api.rst, run as written."""

from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "xen-api.rst"


def example_code():
    text = DOC.read_text()
    start = text.index(".. code-block:: python", text.index("Worked example"))
    block = text[start:].split("\n\n``simxen.domains.pingpong")[0]
    return "\n".join(line[4:] for line in block.splitlines()[2:])


def test_worked_example_runs():
    namespace = {}
    exec(compile(example_code(), str(DOC), "exec"), namespace)   # it asserts its own result
    hv = namespace["hv"]
    assert not hv.domains[1].grant_table.entries and not hv.domains[2].maptrack
    kinds = {r.kind for r in hv.trace.records()}
    assert {"gnttab.map", "gnttab.unmap", "evtchn.send", "evtchn.deliver", "page.write",
            "page.read", "xs.watch_event"} <= kinds
