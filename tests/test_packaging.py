"""The wheel ships imgcli, lambdas and infra, and a working console script."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contains_the_three_packages_and_the_script(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        cwd=tmp_path,  # building must not depend on the working directory
        timeout=120,
    )
    (wheel,) = tmp_path.glob("imgcli-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in (
        "imgcli/cli.py",
        "lambdas/save_delete.py",
        "lambdas/retrieve.py",
        "infra/__init__.py",
    ):
        assert module in names, module
    assert not any(name.startswith("tests/") for name in names)
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "imgcli = imgcli.cli:main" in text
