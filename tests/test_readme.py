"""The README's examples run as written, in their order, after ``make demo``.

Every line of a ``sh`` block is a command a newcomer may paste: this test runs them all on
a private local cloud, from a folder holding the demo's images, with ``imgcli`` on the PATH
as ``source .venv/bin/activate`` puts it there. Lines marked ``# needs ...`` (an AWS
account, the AWS CLI) or ``# placeholder`` (a path of the reader's own) are the only ones
left out, and ``make``/``source`` lines are what the set-up itself does.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.localstack import REPO, local_cloud_env, run_imgcli
from tests.test_demo import demo_commands

SKIPPED_MARKS = re.compile(r"#\s*(needs\b|placeholder\b)")


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text("utf-8")
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            command = line.strip()
            if not command or command.startswith("#") or SKIPPED_MARKS.search(command):
                continue
            if command.split()[0] in ("make", "source"):
                continue
            commands.append(command)
    return commands


def test_the_readme_has_runnable_examples_of_every_command() -> None:
    commands = readme_commands()
    names = (
        "bootstrap destroy stack upload download list show delete versions restore url doctor"
        " reconcile events logs local"
    )
    for name in names.split():
        assert any(f" {name}" in command for command in commands), name


def test_the_readme_examples_run_as_written(tmp_path: Path) -> None:
    work = tmp_path / "work"
    shutil.copytree(REPO / "demo", work / "demo")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    imgcli = bin_dir / "imgcli"
    imgcli.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m imgcli "$@"\n')
    imgcli.chmod(0o755)
    with local_cloud_env(tmp_path, "default") as env:
        env["PATH"] = f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}"
        for arguments in demo_commands():
            done = run_imgcli(env, *arguments)
            assert done.returncode == 0, (arguments, done.stderr)
        for command in readme_commands():
            done = subprocess.run(
                ["bash", "-o", "pipefail", "-c", command],
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=180,
            )
            if done.returncode != 0:
                pytest.fail(f"{command!r} exited {done.returncode}:\n{done.stderr}")
    assert (work / "holiday.csv").read_text().startswith("key,status,format")
