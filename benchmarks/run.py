"""The benchmark harness (issue 6): imgcli against raw boto3 and the AWS CLI, in one run.

``make bench`` runs this with the project's venv. It installs ``awscli`` into
``benchmarks/.venv-awscli`` when missing, starts private local clouds on free ports with a
bootstrapped stack (a fresh one per group of cases, since the local cloud's cost grows with
its state), generates the test data with Pillow under a temporary directory, runs every
case of ``harness_cases.py``, prints a Markdown table to stdout and writes it into
``benchmarks/RESULTS.md`` as the ``## make bench`` section (``harness_report.py``).

Usage: ``.venv/bin/python benchmarks/run.py [--smoke] [--rounds N] [--output PATH]``.
``--smoke`` runs tiny data for one round, skips the 10,000-item cases and the AWS CLI when
its venv is missing, and writes no file unless ``--output`` is given.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from harness import (
    AWS,
    AWS_VENV,
    PYTHON,
    REPO,
    RESULTS,
    STARTED,
    Cloud,
    folder_bytes,
    local_cloud,
    log,
    photo_like_jpeg,
    settings,
    warm_up,
    write_files,
)
from harness_cases import Bench
from harness_report import Report, section, write_results


def ensure_awscli() -> bool:
    if AWS.exists():
        return True
    log(f"installing awscli from PyPI into {AWS_VENV.relative_to(REPO)}")
    try:
        subprocess.run([PYTHON, "-m", "venv", str(AWS_VENV)], check=True)  # noqa: S603
        pip = [str(AWS_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "awscli"]
        subprocess.run(pip, check=True)  # noqa: S603
    except (OSError, subprocess.CalledProcessError) as error:
        log(f"warning: could not install awscli ({error}); the AWS CLI comparisons are skipped")
        return False
    return AWS.exists()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny data, one round, no file")
    parser.add_argument("--rounds", type=int, help="rounds per case (default 3; smoke 1)")
    parser.add_argument("--output", type=Path, help="results file (default benchmarks/RESULTS.md)")
    args = parser.parse_args(argv)
    use_aws = AWS.exists() if args.smoke else ensure_awscli()
    config = settings(args.smoke, args.rounds, use_aws)
    output: Path | None = args.output or (None if args.smoke else RESULTS)
    given = sys.argv[1:] if argv is None else argv
    command = " ".join(["make bench" if not given else "benchmarks/run.py", *given])
    report = Report()
    with tempfile.TemporaryDirectory(prefix="imgcli-bench-") as tmp:
        base = Path(tmp)
        bench = Bench(config, base, report)
        log("generating test data")
        small = write_files(base / "small", config.small_count, 20_000, 90, "s")
        large = write_files(base / "large", config.medium_count, config.medium_bytes, 95, "m")
        write_files(base / "large", config.large_count, config.large_bytes, 100, "L")
        photo = base / "photo" / "photo-12mp.jpg"
        photo.parent.mkdir()
        photo.write_bytes(photo_like_jpeg(*config.photo_size))
        log(f"test data: {folder_bytes(small) / 1e6:.1f} MB small, "
            f"{folder_bytes(large) / 1e6:.1f} MB large")  # fmt: skip

        # (name, warm up first, cases): a fresh local cloud per group.
        groups: list[tuple[str, bool, list[Callable[[Cloud], None]]]] = [
            ("small", True, [bench.startup, lambda cloud: bench.small_uploads(cloud, small)]),
            (
                "large",
                True,
                [
                    lambda cloud: bench.large_uploads(cloud, large),
                    lambda cloud: bench.save_reads(cloud, [*sorted(large.glob("L*")), photo]),
                ],
            ),
            ("indexing", True, [bench.indexing]),
        ]
        if config.many_count:
            groups.append(("many", False, [bench.listing, bench.upload_memory]))
        if config.smoke:  # one local cloud for everything: start-up costs more than the cases
            groups = [("all", True, [case for _, _, cases in groups for case in cases])]
        bench.check_time(photo)
        for name, warm, cases in groups:
            with local_cloud(base, name) as cloud:
                if warm:
                    warm_up(cloud)
                for case in cases:
                    case(cloud)
    wall = time.perf_counter() - STARTED
    text = section(config, report, command, wall)
    print(text)
    if output is not None:
        write_results(output, text)
        log(f"wrote {output}")
    log(f"done in {wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
