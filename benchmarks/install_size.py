"""What a user install of imgcli costs: the size of its site-packages and the time pip takes.

Builds the wheel of a source tree (this checkout, or ``--source`` for another, such as a
``git worktree`` of an older commit), installs it with its dependencies into a fresh
virtual environment, and reports:

- the time ``pip install <wheel>`` took (dependencies come from PyPI or pip's cache: run
  it twice and take the second number for a warm cache);
- the apparent size of site-packages (``du --apparent-size``), without pip and setuptools,
  which every venv has whatever is installed, in MiB as ``du -h`` prints it;
- the number of distributions installed.

Usage: ``.venv/bin/python benchmarks/install_size.py [--source DIR] [--runs N]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: What a fresh venv holds before anything is installed into it.
VENV_BASELINE = (
    "pip",
    "setuptools",
    "pkg_resources",
    "_distutils_hack",
    "distutils-precedence.pth",
)


def run(*command: str) -> str:
    """``command``'s stdout; every command here is this script's own (pip, venv)."""
    done = subprocess.run(command, check=True, capture_output=True, text=True)  # noqa: S603
    return done.stdout


def build_wheel(source: Path, into: Path) -> Path:
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "--wheel-dir",
        str(into),
        str(source),
    )
    (wheel,) = into.glob("imgcli-*.whl")
    return wheel


def apparent_size(directory: Path) -> int:
    total = 0
    for entry in directory.iterdir():
        # A package's folder, or its "<name>-<version>.dist-info".
        if entry.name in VENV_BASELINE or entry.name.split("-")[0] in VENV_BASELINE:
            continue
        paths = entry.rglob("*") if entry.is_dir() else [entry]
        total += sum(path.lstat().st_size for path in paths if not path.is_dir())
    return total


def install_once(wheel: Path, scratch: Path) -> tuple[float, int, int]:
    venv = scratch / "venv"
    run(sys.executable, "-m", "venv", str(venv))
    started = time.perf_counter()
    run(str(venv / "bin/pip"), "install", "-q", str(wheel))
    seconds = time.perf_counter() - started
    (site,) = (venv / "lib").glob("python3.*/site-packages")
    listed = run(str(venv / "bin/pip"), "list", "--format=freeze").split()
    distributions = [line for line in listed if line.split("==")[0] not in ("pip", "setuptools")]
    return seconds, apparent_size(site), len(distributions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ROOT, help="source tree to build")
    parser.add_argument("--runs", type=int, default=3, help="installs into fresh venvs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        wheel = build_wheel(args.source, Path(scratch))
        results = []
        for run in range(args.runs):
            with tempfile.TemporaryDirectory() as install:
                results.append(install_once(wheel, Path(install)))
            print(f"run {run + 1}: {results[-1][0]:.1f} s", file=sys.stderr)
    seconds = [result[0] for result in results]
    size, count = results[-1][1], results[-1][2]
    print(
        f"{args.source}: pip install {statistics.median(seconds):.1f} s median "
        f"({min(seconds):.1f}-{max(seconds):.1f} s, {args.runs} runs); site-packages "
        f"{size / 2**20:.1f} MiB ({size / 1e6:.1f} MB) in {count} distributions"
    )


if __name__ == "__main__":
    main()
