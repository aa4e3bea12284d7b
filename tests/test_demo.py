"""``make demo``'s imgcli commands, run as the Makefile runs them, on a private local cloud.

Creating a venv is the Makefile's job (``make test`` already proves the install); this
runs the recipe's own ``imgcli`` lines, read from the Makefile, so the two cannot drift.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.localstack import REPO, local_cloud_env, run_imgcli


def demo_commands() -> list[list[str]]:
    recipe = (REPO / "Makefile").read_text().split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    return [
        shlex.split(line.strip())[1:]
        for line in recipe.splitlines()
        if line.strip().startswith("$(BIN)/imgcli ")
    ]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    with local_cloud_env(tmp_path, "default") as environment:
        yield environment


def test_the_demo_bootstraps_uploads_and_lists_the_sample_images(env: dict[str, str]) -> None:
    commands = demo_commands()
    assert [c[0] for c in commands] == ["bootstrap", "upload", "list"]
    for command in commands:
        result = run_imgcli(env, *command)
        assert result.returncode == 0, (command, result.stderr)
    listed = run_imgcli(env, "--json", "list")
    keys = {json.loads(line)["key"] for line in listed.stdout.splitlines()}
    samples = {
        str(path.relative_to(REPO / "demo/images"))
        for path in (REPO / "demo/images").rglob("*")
        if path.is_file()
    }
    assert keys == samples and len(samples) == 5

    again = run_imgcli(env, *commands[1])
    assert again.returncode == 0 and "5 skipped" in again.stderr
