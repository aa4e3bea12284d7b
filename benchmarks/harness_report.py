"""The harness's report: a table row per case (medians, the per-round ratio against the
compared client, its spread and target) and the ``## make bench`` section built from them,
which ``run.py`` prints to stdout and writes into ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness import Settings

SECTION = "## make bench"


@dataclass
class Row:
    case: str
    imgcli: str
    comparison: str
    ratio: float | None
    spread: str
    target: str
    met: bool | None

    def markdown(self) -> str:
        ratio = "—" if self.ratio is None else f"{self.ratio:.2f}"
        met = {True: "yes", False: "**no**", None: "—"}[self.met]
        return (
            f"| {self.case} | {self.imgcli} | {self.comparison} | {ratio} | {self.spread} "
            f"| {self.target} | {met} |"
        )


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cpu: dict[str, list[float]] = field(default_factory=dict)  # local cloud CPU, by run

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(row.markdown(), file=sys.stderr, flush=True)

    def table(self) -> str:
        lines = [
            "| case | imgcli median | comparison median | ratio median | spread | target | met? |",
            "|---|---:|---:|---:|---:|---|---|",
        ]
        return "\n".join(lines + [row.markdown() for row in self.rows])


def secs(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s"


def rate_row(case: str, mine: list[float], theirs: list[float], name: str, minimum: float) -> Row:
    """Throughput ratio per round (their time / my time): higher is better for imgcli."""
    return _ratio_row(
        case,
        mine,
        theirs,
        name,
        f"throughput ≥ {minimum:g} x {name}",
        [t / m for m, t in zip(mine, theirs, strict=True)],
        lambda ratio: ratio >= minimum,
    )


def time_row(case: str, mine: list[float], theirs: list[float], name: str, maximum: float) -> Row:
    """Time ratio per round (my time / their time): lower is better for imgcli."""
    return _ratio_row(
        case,
        mine,
        theirs,
        name,
        f"time ≤ {maximum:g} x {name}",
        [m / t for m, t in zip(mine, theirs, strict=True)],
        lambda ratio: ratio <= maximum,
    )


def _ratio_row(
    case: str,
    mine: list[float],
    theirs: list[float],
    name: str,
    target: str,
    ratios: list[float],
    met: Callable[[float], bool],
) -> Row:
    ratio = statistics.median(ratios)
    return Row(
        case,
        secs(mine),
        f"{secs(theirs)} ({name})",
        ratio,
        f"{min(ratios):.2f}-{max(ratios):.2f}",
        target,
        met(ratio),
    )


def section(config: Settings, report: Report, command: str, wall: float) -> str:
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    cores = os.cpu_count()
    cpu_lines = [
        f"| {name} | {statistics.median(values) * 100:.0f} % | "
        f"{min(values) * 100:.0f}-{max(values) * 100:.0f} % |"
        for name, values in report.cpu.items()
    ]
    parts = [
        f"{SECTION} ({today}, {cores} cores, Python {platform.python_version()})",
        "",
        f"Command: `{command}` — {config.rounds} round(s) per case (start-up: "
        f"{config.startup_rounds}), total wall time {wall:.0f} s.",
        "",
        report.table(),
        "",
        "Ratios are per round (clients back to back on the same local cloud), then the median;"
        " spread is the range over rounds. Throughput ratio = comparison time / imgcli time"
        " (higher is better); time ratio = imgcli time / comparison time (lower is better)."
        " Every client is timed as a process, start-up included (peak RSS from"
        " `/usr/bin/time`); the harness waits for the"
        " stack to index one client's upload before the next client starts.",
        "",
        *[f"- {note}" for note in report.notes],
        "",
        "Local cloud CPU (its process group, Lambda workers included; 100 % = one core)"
        " while each client ran:",
        "",
        "| while | median | spread |",
        "|---|---:|---:|",
        *cpu_lines,
    ]
    return "\n".join(parts) + "\n"


def write_results(path: Path, text: str) -> None:
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    lines = old.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.startswith(SECTION)), None)
    if start is None:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        tail = "".join(lines[end:])
        new = "".join(lines[:start]) + text + ("\n" + tail if tail else "")
    path.write_text(new)
