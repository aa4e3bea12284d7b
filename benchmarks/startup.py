"""Start-up time of imgcli's fast paths, beside plain Python and `import boto3`.

`imgcli --help` and `--version` must not pay for boto3, Pillow or moto; this prints the
median and range over repeated runs as a Markdown table, so the claim has its numbers.
Run from the repository root: `.venv/bin/python benchmarks/startup.py [runs]`.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent

CASES = [
    ("python -c pass", [sys.executable, "-c", "pass"]),
    ("python -c 'import boto3'", [sys.executable, "-c", "import boto3"]),
    ("imgcli --version", [str(BIN / "imgcli"), "--version"]),
    ("imgcli --help", [str(BIN / "imgcli"), "--help"]),
]


def timings(command: list[str], runs: int) -> list[float]:
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, check=True)  # noqa: S603
        seconds.append(time.perf_counter() - started)
    return seconds


def minmax(values: list[float]) -> tuple[float, float]:
    return min(values), max(values)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    print(f"| command | median | min-max ({runs} runs) |")
    print("|---|---:|---:|")
    for name, command in CASES:
        seconds = timings(command, runs)
        median, low, high = (v * 1000 for v in (statistics.median(seconds), *minmax(seconds)))
        print(f"| `{name}` | {median:.0f} ms | {low:.0f}-{high:.0f} ms |")


if __name__ == "__main__":
    main()
