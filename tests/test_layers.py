"""The direction of imports the layers fix (README.rst, "Where things live"): a lower layer never imports a
higher one.

``simxen.analysis`` reads trace records and results; it imports only layers 0
and 1 (the record type, constants), so the scenario reports and ``simxen serve``
may use it, and nothing it imports may import them back.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "simxen"

LAYER = {
    "errors": 0, "tpm": 0, "protocols": 0,
    "xen": 1, "hw": 1,
    "analysis": 1.5,
    "drivers": 2,
    "domains": 3,
    "scenario": 4,
    "experiment": 4.5,
    "server": 5, "cli": 5,
}

#: layer-0/1 packages that must not know about the TPM (the design's rule: the
#: hypervisor knows nothing of TPMs or drivers; protocols are pure layouts)
MUST_NOT_IMPORT = {"xen": {"tpm", "hw", "drivers"}, "protocols": {"tpm", "xen", "hw"},
                   "tpm": {"protocols", "xen", "hw"}}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).parts
        top = rel[0][:-3] if rel[0].endswith(".py") else rel[0]
        if top in LAYER:
            yield path, top


def _imports(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("simxen."):
            yield node.module.split(".")[1]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("simxen."):
                    yield alias.name.split(".")[1]


@pytest.mark.parametrize("path,top", list(_modules()), ids=lambda v: str(v).split("simxen/")[-1])
def test_no_import_reaches_up(path, top):
    for target in _imports(path):
        if target not in LAYER:
            continue
        assert LAYER[target] <= LAYER[top], f"{path}: layer {top} imports higher layer {target}"
        assert target not in MUST_NOT_IMPORT.get(top, ()), f"{path}: {top} must not import {target}"
