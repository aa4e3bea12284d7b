"""The wheel claims only the name ``imgcli``, ships the function code inside it, and installs
a working console script.

``lambdas/`` and ``infra/`` sit beside ``imgcli/`` in the repository but are installed as
``imgcli.lambdas`` and ``imgcli.infra``: a top-level ``lambdas`` would collide with the PyPI
package of that name (installing one overwrote the other's files).
"""

from __future__ import annotations

import json
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


IMPORT_EVERY_MODULE = """
import importlib, json, sys
from pathlib import Path
root = Path(sys.argv[1])
sys.path[:0] = [str(root), *sys.argv[2:]]
names = sorted(
    ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
    for path in (root / "imgcli").rglob("*.py")
)
for name in names:
    importlib.import_module(name)
ours = sorted(name for name in sys.modules if name.split(".")[0] in ("lambdas", "infra"))
outside = [name for name, module in sys.modules.items() if name.startswith("imgcli")
           and not str(getattr(module, "__file__", "") or root).startswith(str(root))]
print(json.dumps({"imported": len(names), "by_folder_name": ours, "from_elsewhere": outside}))
"""


def test_every_module_imports_from_the_wheel_alone(tmp_path: Path) -> None:
    # From the wheel's files and the dependencies only: without the checkout on sys.path,
    # nothing can lean on the top-level `lambdas` and `infra` folders.
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(build_wheel(tmp_path)).extractall(unpacked)
    dependencies = [path for path in sys.path if path.endswith("site-packages")]
    done = subprocess.run(
        [sys.executable, "-S", "-c", IMPORT_EVERY_MODULE, str(unpacked), *dependencies],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["imported"] > 60
    assert (report["by_folder_name"], report["from_elsewhere"]) == ([], [])
