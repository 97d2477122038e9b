"""The report a scenario run prints: a short story, figures, and the verdict
of every expectation.

A workload fills a :class:`Report` — :meth:`Report.say` adds a sentence of the
story, :meth:`Report.section` a block of figures — and the runner appends the
expectation outcomes. :meth:`Report.render` gives the text ``simxen run``
prints; :meth:`Report.as_dict` the same content for ``--json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Section:
    """A titled block: ``rows`` of (label, value) pairs, or a ``table``."""

    title: str
    rows: list = field(default_factory=list)
    headers: list | None = None
    table: list = field(default_factory=list)

    def row(self, label, value, unit=""):
        self.rows.append((label, _fmt(value) + (f" {unit}" if unit else "")))
        return self


@dataclass
class Report:
    title: str
    story: list = field(default_factory=list)
    sections: list = field(default_factory=list)
    outcomes: list = field(default_factory=list)
    #: why the run stopped early (a signal), or ``None`` for a complete run
    partial: str | None = None

    def say(self, paragraph: str) -> None:
        """Add one paragraph to the story."""
        self.story.append(paragraph)

    def section(self, title: str, headers=None) -> Section:
        s = Section(title, headers=list(headers) if headers else None)
        self.sections.append(s)
        return s

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outcomes)

    def render(self, width: int = 88) -> str:
        import textwrap
        out = [self.title, "=" * len(self.title), ""]
        if self.partial:
            out.extend(textwrap.wrap(f"PARTIAL: {self.partial}.", width) + [""])
        for paragraph in self.story:
            out.extend(textwrap.wrap(paragraph, width) or [""])
            out.append("")
        for s in self.sections:
            out.append(s.title)
            out.append("-" * len(s.title))
            if s.rows:
                w = max(len(label) for label, _ in s.rows)
                out.extend(f"  {label:<{w}}  {value}" for label, value in s.rows)
            if s.table:
                cells = [list(map(str, s.headers or []))] + [[_fmt(c) for c in r] for r in s.table]
                widths = [max(len(r[i]) for r in cells if i < len(r)) for i in range(len(cells[0]))]
                for j, r in enumerate(cells):
                    out.append("  " + "  ".join(c.rjust(widths[i]) if i else c.ljust(widths[i])
                                                for i, c in enumerate(r)).rstrip())
                    if j == 0 and s.headers:
                        out.append("  " + "  ".join("-" * w for w in widths))
            out.append("")
        if self.outcomes:
            out.append("Expectations")
            out.append("------------")
            out.extend("  " + o.line() for o in self.outcomes)
            failed = sum(not o.passed for o in self.outcomes)
            out.append("")
            out.append(f"{len(self.outcomes) - failed} of {len(self.outcomes)} expectations held"
                       + (f"; {failed} did not" if failed else ""))
        return "\n".join(out).rstrip() + "\n"

    def as_dict(self) -> dict:
        return {
            "title": self.title,
            "partial": self.partial,
            "story": list(self.story),
            "sections": [{"title": s.title, "rows": [list(r) for r in s.rows],
                          "headers": s.headers, "table": [[_fmt(c) for c in r] for r in s.table]}
                         for s in self.sections],
            "expectations": [{"metric": o.metric, "operator": o.operator, "wanted": o.wanted,
                              "found": o.found, "passed": o.passed} for o in self.outcomes],
        }


def _fmt(value) -> str:
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1e9 or abs(value) < 1e-3:
            return f"{value:.4g}"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
