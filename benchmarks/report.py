"""The table every section adds its rows to, printed, as JSON (--json) and as Markdown (--write-docs)."""

from __future__ import annotations

import dataclasses
import re


# -- the table ---------------------------------------------------------------
@dataclasses.dataclass
class Row:
    section: str
    measure: str
    value: str
    target: str = ""
    verdict: str = "INFO"


class Report:
    def __init__(self, argv: list[str]):
        self.rows: list[Row] = []
        self.command = "scripts/bench.py " + " ".join(argv)

    def add(self, section: str, measure: str, value: str, target: str = "", ok: bool | None = None) -> None:
        verdict = "INFO" if ok is None else ("PASS" if ok else "FAIL")
        row = Row(section, measure, value, target, verdict)
        self.rows.append(row)
        print(f"  {row.measure:<58} {row.value:>14}  {row.target:<10} {row.verdict}", flush=True)

    def skip(self, section: str, measure: str, why: str) -> None:
        self.rows.append(Row(section, measure, why, "", "SKIP"))
        print(f"  {measure:<58} SKIP: {why}", flush=True)

    def table(self) -> str:
        head = f"{'section':<10} {'measure':<58} {'value':>14}  {'target':<10} result"
        lines = [head, "-" * len(head)]
        lines += [f"{r.section:<10} {r.measure:<58} {r.value:>14}  {r.target:<10} {r.verdict}" for r in self.rows]
        return "\n".join(lines)

    def figures(self, conditions: str) -> dict:
        """Every row as "section: measure" -> value (text), number (its first number), target, result."""
        out = {}
        for r in self.rows:
            m = re.search(r"[-+]?\d[\d,]*\.?\d*", r.value)
            number = float(m.group().replace(",", "")) if m else None
            out[f"{r.section}: {r.measure}"] = {
                "value": r.value,
                "number": number,
                "target": r.target,
                "result": r.verdict,
            }
        return {"command": self.command, "conditions": conditions, "figures": out}

    def markdown(self, conditions: str) -> str:
        out = [
            f"Command: `{self.command}`",
            "",
            conditions,
            "",
            "| section | measure | value | target | result | command |",
            "|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            command = f"`scripts/bench.py --only {r.section}`"
            out.append(f"| {r.section} | {r.measure} | {r.value} | {r.target} | {r.verdict} | {command} |")
        return "\n".join(out)
