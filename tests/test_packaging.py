"""The wheel claims only the name ``imgcli``, ships the function code inside it, and installs
a working console script.

``lambdas/`` and ``infra/`` sit beside ``imgcli/`` in the repository but are installed as
``imgcli.lambdas`` and ``imgcli.infra``: a top-level ``lambdas`` would collide with the PyPI
package of that name (installing one overwrote the other's files).
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_wheel(directory: Path) -> Path:
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
            str(directory),
            str(ROOT),
        ],
        check=True,
        cwd=directory,  # building must not depend on the working directory
        timeout=120,
    )
    (wheel,) = directory.glob("imgcli-*.whl")
    return wheel


def test_wheel_owns_only_the_imgcli_name_and_ships_the_functions(tmp_path: Path) -> None:
    wheel = zipfile.ZipFile(build_wheel(tmp_path))
    names = set(wheel.namelist())
    top_level = {name.split("/", 1)[0] for name in names}
    (dist_info,) = {name for name in top_level if name.endswith(".dist-info")}
    assert top_level == {"imgcli", dist_info}
    for module in (
        "imgcli/cli.py",
        "imgcli/lambdas/__init__.py",
        "imgcli/lambdas/save_delete.py",
        "imgcli/lambdas/retrieve.py",
        "imgcli/infra/__init__.py",
        "imgcli/infra/deploy.py",
    ):
        assert module in names, module
    assert not any("__pycache__" in name for name in names)
    text = wheel.read(f"{dist_info}/entry_points.txt").decode()
    assert "imgcli = imgcli.cli:main" in text
