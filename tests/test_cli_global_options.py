"""Global options after the command, help without ``<bool>``, and stack names and regions
checked wherever a stack is read (issue 12: "Messages")."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from imgcli.cli import app, build_app
from imgcli.commands.frame import ImgcliCommand, invocation, reports_failures
from imgcli.errors import ExitCode

runner = CliRunner()
GLOBAL_OPTIONS = ("--stack", "--json", "--quiet", "--verbose", "--profile", "--region")


def invoke(*args: str, target: typer.Typer = app, **extra: object) -> Result:
    return runner.invoke(target, list(args), **extra)  # type: ignore[arg-type]


@pytest.fixture
def config_file() -> Path:
    path = Path(os.environ["IMGCLI_CONFIG"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('[stacks.prod]\ntarget = "aws"\nregion = "eu-west-3"\n')
    return path


def command_paths(command: object, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command path of the app: (), ("config",), ("local",), ("local", "start")..."""
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from command_paths(sub, (*path, name))


def leaf(path: tuple[str, ...]) -> bool:
    command: object = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return not hasattr(command, "commands")


ALL_PATHS = list(command_paths(typer.main.get_command(app)))


# Global options after the command


def test_global_options_after_the_command_reach_the_settings(config_file: Path) -> None:
    result = invoke(
        "config", "--json", "--stack", "prod", "--region", "eu-west-1", "--profile", "work"
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["stack"] == {"value": "prod", "source": "flag --stack"}
    assert document["region"] == {"value": "eu-west-1", "source": "flag --region"}
    assert document["profile"] == {"value": "work", "source": "flag --profile"}


def test_short_global_flags_after_the_command() -> None:
    quiet = invoke("config", "-q")
    assert (quiet.exit_code, quiet.stdout, quiet.stderr) == (0, "", "")
    verbose = invoke("stack", "-v")  # nothing bootstrapped: fails, with its cause shown
    assert verbose.exit_code == ExitCode.NO_STACK
    assert "Traceback (most recent call last):" in verbose.stderr


def test_the_value_after_the_command_wins(config_file: Path) -> None:
    result = invoke("--stack", "default", "--json", "config", "--stack", "prod")
    assert json.loads(result.stdout)["stack"]["value"] == "prod"
    # Given only before, it stands.
    before = invoke("--stack", "prod", "--json", "config")
    assert json.loads(before.stdout)["stack"]["value"] == "prod"


def test_global_json_after_a_command_without_its_own() -> None:
    fresh = build_app()

    @fresh.command("try", cls=ImgcliCommand)
    @reports_failures
    def try_command(ctx: typer.Context) -> None:
        """Show the output's modes."""
        output = invocation(ctx).output
        output.document({"json": output.json_mode}, columns=("json",), rows=[("no",)])

    result = invoke("try", "--json", target=fresh)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"json": True}


@pytest.mark.parametrize("path", [p for p in ALL_PATHS if p and leaf(p)], ids=" ".join)
def test_every_command_takes_the_global_options(path: tuple[str, ...]) -> None:
    result = invoke(*path, "--help", env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for option in GLOBAL_OPTIONS:
        assert option in result.stdout, (path, option)


def test_upload_takes_quiet_after_the_command(tmp_path: Path) -> None:
    # The example: `imgcli upload -q photos` was "No such option: -q".
    result = invoke("upload", "-q", str(tmp_path / "missing"))
    assert "No such option" not in result.output
    assert result.exit_code != ExitCode.OK


# No Python types in any help: no <bool>, <str>, <list[str]>, <float range>


@pytest.mark.parametrize("path", ALL_PATHS, ids=lambda path: " ".join(path) or "imgcli")
def test_no_help_shows_a_python_type_as_metavar(path: tuple[str, ...]) -> None:
    result = invoke(*path, "--help", env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "--help" in result.stdout
    # A choice still shows its choices, <table|text|json|csv>, as Typer writes them.
    types = re.findall(r"<[A-Za-z][^<>|]*>", result.stdout)
    assert types == [], types


# Stack names, wherever a stack is read


def test_an_empty_stack_name_is_a_usage_error() -> None:
    result = invoke("--stack", "", "stack")
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr.startswith("error: the stack name is empty (flag --stack)")
    assert "--stack  " not in result.stderr


def test_a_path_as_stack_name_reads_nothing(tmp_path: Path) -> None:
    # ../../x would be <data dir>/stacks/../../x.json: a record planted there must never
    # be read (or written) as a stack's.
    data_dir = Path(os.environ["IMGCLI_DATA_DIR"])
    planted = data_dir / "stacks" / ".." / ".." / "x.json"
    planted.parent.mkdir(parents=True, exist_ok=True)
    record = {"version": 1, "stack": "x", "target": "aws", "outputs": {"bucket": "planted"}}
    planted.write_text(json.dumps({**record, "complete": True}))
    result = invoke("--stack", "../../x", "stack")
    assert result.exit_code == ExitCode.USAGE
    assert "planted" not in result.output
    assert "stack name '../../x' must be" in result.stderr
    assert "(flag --stack)" in result.stderr


def test_a_bad_default_stack_in_the_file_is_named(tmp_path: Path) -> None:
    path = Path(os.environ["IMGCLI_CONFIG"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('default_stack = "Prod_1"\n')
    result = invoke("config")
    assert result.exit_code == ExitCode.USAGE
    assert "'Prod_1'" in result.stderr and "default_stack" in result.stderr


# A local stack has one region


def test_another_region_for_a_local_stack_is_a_usage_error() -> None:
    result = invoke("--region", "eu-west-1", "config")
    assert result.exit_code == ExitCode.USAGE
    assert "local cloud has one region, us-east-1" in result.stderr
    assert "eu-west-1 (flag --region)" in result.stderr
    same = invoke("--region", "us-east-1", "--json", "config")
    assert same.exit_code == 0
    assert json.loads(same.stdout)["region"]["value"] == "us-east-1"
