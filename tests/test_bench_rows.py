"""docs/benchmarks.md quotes only rows scripts/bench.py prints.

The row names are read from the benchmark sections' source (every `.add(SECTION,
MEASURE, ...)` call in benchmarks/), an f-string's fields standing for any text; every
table row of docs/benchmarks.md whose first cell names a section must match one of
that section's names. A row renamed in the code but not in the docs fails here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import benchmarks

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"


def _pattern(node: ast.expr) -> str | None:
    """A regular expression for the text node makes: a string as is, an f-string's fields as any text."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return re.escape(node.value)
    if isinstance(node, ast.JoinedStr):
        return "".join(re.escape(str(part.value)) if isinstance(part, ast.Constant) else ".+?" for part in node.values)
    return None


def printed_rows() -> dict[str, list[re.Pattern[str]]]:
    """section -> the patterns of the measures its code adds (rep.add, ctx.report.add, report.skip)."""
    rows: dict[str, list[re.Pattern[str]]] = {name: [] for name in benchmarks.SECTIONS}
    for path in sorted((ROOT / "benchmarks").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr not in ("add", "skip") or len(node.args) < 2:
                continue
            section, measure = node.args[0], _pattern(node.args[1])
            if isinstance(section, ast.Constant) and section.value in rows and measure:
                rows[section.value].append(re.compile(measure + "$"))
    return rows


def documented_rows() -> list[tuple[int, str, str]]:
    """(line, section, measure) of every table row in the docs whose first cell is a section's name."""
    out = []
    for n, line in enumerate(DOCS.read_text().splitlines(), 1):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 4 and cells[0] in benchmarks.SECTIONS:
            out.append((n, cells[0], cells[1]))
    return out


def test_every_section_names_its_rows_in_the_code():
    """Sections that add their rows (benchmarks.SECTIONS "module:function"); a run(args) module returns
    them as the keys of a dict, which this check does not read."""
    rows = printed_rows()
    adding = [name for name, where in benchmarks.SECTIONS.items() if ":sec_" in where]
    assert adding and not [name for name in adding if not rows[name]]


def test_every_row_in_the_docs_is_one_bench_prints():
    rows = printed_rows()
    quoted = documented_rows()
    assert len(quoted) > 50, "the docs' tables were not found"
    stale = [
        f"docs/benchmarks.md:{n}: {section} | {measure}"
        for n, section, measure in quoted
        if not any(p.match(measure) for p in rows[section])
    ]
    assert not stale, "rows bench.py no longer prints (run it with --write-docs, or rename them):\n" + "\n".join(stale)


def test_the_check_sees_a_renamed_row():
    """The matching is strict: one changed word is a different row."""
    rows = printed_rows()
    (n, section, measure) = documented_rows()[0]
    assert any(p.match(measure) for p in rows[section])
    assert not any(p.match(measure + " again") for p in rows[section])
