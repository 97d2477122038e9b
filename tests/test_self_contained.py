"""The repository stands on its own: nothing in it cites notes that live
outside it. Facts are cited from their primary source (a repository, file and
function; a paper; a datasheet) or restated in docs/."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: names of notes outside the repository (spelled in pieces so this file does not match)
OUTSIDE = ["xen-vtpm" + ".md", "latency-and-prior-art" + ".md", "DESIGN" + ".md",
           "tpm2-and-tools" + ".md", "fidelity-sources" + ".md", "scale-profile" + ".md",
           "tools-install" + ".md", "tpm2-" + "traces/",
           "../" + "shared/", "/work/" + "shared", "shared/" + "reference",
           "reference " + "\u00a7"]      # a section of those notes: "reference" + section sign
#: a numbered section of those notes, cited bare: "(reference" followed by a number
SECTION = re.compile(r"\(reference \d")
WHERE = ["README.rst", "docs", "simxen", "tests", "scripts", "benchmarks", "scenarios",
         "Makefile", "setup.cfg", ".ci"]
TEXT = {".py", ".rst", ".md", ".toml", ".txt", ".cfg", ".sh", ".jsonl", ".json", ".yaml", ""}


def files():
    for name in WHERE:
        path = ROOT / name
        if path.is_file():
            yield path
        elif path.is_dir():
            for p in path.rglob("*"):
                if p.is_file() and p.suffix in TEXT and ".venv" not in p.parts \
                        and "__pycache__" not in p.parts:
                    yield p


def test_nothing_points_outside_the_repository():
    found = []
    for path in files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for name in OUTSIDE:
                if name in line:
                    found.append(f"{path.relative_to(ROOT)}:{number}: {name}")
            if SECTION.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {SECTION.search(line).group()}")
    assert not found, "cite the primary source instead:\n" + "\n".join(found)
