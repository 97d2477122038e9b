"""A doc page whose tail is generated: what follows a marker line is rewritten from a schema.

``docs/scenarios.rst`` ends with the scenario key reference
(``scripts/scenario-keys-doc.py``) and ``docs/trace.rst`` with the trace
record reference (``scripts/trace-doc.py``). Each script owns its marker (a
reST comment telling readers not to edit below it) and renders the tail,
marker first; :func:`rewrite_tail` keeps the hand-written part above the
marker and replaces the rest. A test per page checks that the page ends with
what its script renders.

The scripts import this module by its bare name: Python puts a script's own
folder first on ``sys.path`` when it runs ``python scripts/NAME.py``.
"""

import sys
from pathlib import Path


def rewrite_tail(page: Path, marker: str, tail: str) -> None:
    """Keep ``page`` up to ``marker`` (or all of it, if the marker is not there yet),
    write ``tail`` after it, and say so on stderr.

    ``tail`` starts with ``marker`` itself, so that running a script twice
    changes nothing.
    """
    head = page.read_text().split(marker)[0]
    page.write_text(head + tail)
    print(f"wrote {page}", file=sys.stderr)
