"""The benchmark harness on tiny data, so `make test` keeps it from rotting.

``benchmarks/run.py --smoke`` starts its own private local cloud on a free port, uploads
10 small images per client for one round, skips the 10,000-item cases (and the AWS CLI
when ``benchmarks/.venv-awscli`` is missing: the smoke never downloads it) and writes no
results file; it must exit 0 and print the Markdown table.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "RESULTS.md"


def test_the_harness_runs_on_tiny_data_and_prints_its_table(tmp_path: Path) -> None:
    before = RESULTS.read_bytes()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IMGCLI_"))}
    env["TMPDIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--smoke"],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| case | imgcli median | comparison median |" in done.stdout
    assert "| upload 10 x 20 KB |" in done.stdout
    assert "| `imgcli --help` start-up |" in done.stdout
    assert "| upload's check of a 0.12 MP photo-like JPEG" in done.stdout
    assert "| save function on a " in done.stdout
    assert RESULTS.read_bytes() == before, "the smoke run must not write RESULTS.md"
