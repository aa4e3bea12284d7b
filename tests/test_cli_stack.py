"""bootstrap, destroy and stack through the CLI, on moto in process."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imgcli.cli import app
from imgcli.infra.state import StackState, state_path
from imgcli.output import Streams

runner = CliRunner()


def imgcli(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["--stack", "c1", *args], input=input)


def test_dry_run_prints_the_plan_and_changes_nothing(moto_aws: None) -> None:
    result = imgcli("bootstrap", "--target", "aws", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "bootstrap plan for stack 'c1' (15 steps):" in result.stderr
    assert "  + create bucket imgcli-c1-123456789012-us-east-1" in result.stderr
    assert "  + create thumbnails bucket imgcli-c1-thumbs-123456789012-us-east-1" in result.stderr
    assert result.stdout == ""
    assert imgcli("stack").exit_code == 3


def test_bootstrap_stack_and_a_destroy_that_needs_confirmation(moto_aws: None) -> None:
    created = imgcli("bootstrap", "--target", "aws", "--json")
    assert created.exit_code == 0, created.stderr
    assert "[15/15]" in created.stderr
    description = json.loads(created.stdout)
    assert description["bucket"] == "imgcli-c1-123456789012-us-east-1"
    assert description["thumbnails_bucket"] == "imgcli-c1-thumbs-123456789012-us-east-1"
    assert description["api_url"].startswith("https://")

    shown = imgcli("--json", "stack")
    assert json.loads(shown.stdout) == description
    table = imgcli("stack")
    assert "imgcli-c1-123456789012-us-east-1" in table.stdout

    refused = imgcli("destroy")  # CliRunner's stdin is not a terminal
    assert refused.exit_code == 2
    assert "--yes" in refused.stderr
    assert imgcli("stack").exit_code == 0  # nothing was removed

    destroyed = imgcli("destroy", "--yes", "--json")
    assert destroyed.exit_code == 0, destroyed.stderr
    summary = json.loads(destroyed.stdout)
    assert summary["destroyed"] is True and len(summary["steps"]) == 15
    assert imgcli("stack").exit_code == 3


def test_an_invalid_stack_name_is_a_usage_error(moto_aws: None) -> None:
    result = runner.invoke(app, ["--stack", "Bad_Name", "bootstrap", "--target", "aws"])
    assert result.exit_code == 2
    assert "stack name" in result.stderr


def test_dry_run_json_is_the_plan(moto_aws: None) -> None:
    result = imgcli("--json", "bootstrap", "--target", "aws", "--dry-run")
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["stack"] == "c1" and plan["up_to_date"] is False
    assert plan["steps"][0] == {"action": "create", "description": "create table imgcli-c1-images"}


def test_destroy_with_target_reaches_a_stack_whose_record_is_lost(moto_aws: None) -> None:
    import os
    from pathlib import Path

    assert imgcli("bootstrap", "--target", "aws").exit_code == 0
    Path(os.environ["IMGCLI_DATA_DIR"], "stacks", "c1.json").unlink()
    destroyed = imgcli("destroy", "--target", "aws", "--yes")
    assert destroyed.exit_code == 0, destroyed.stderr
    assert "[15/15]" in destroyed.stderr


def test_config_takes_json_after_the_command() -> None:
    result = imgcli("config", "--json")
    assert result.exit_code == 0, result.stderr
    settings = json.loads(result.stdout)
    assert settings["stack"] == {"value": "c1", "source": "flag --stack"}
    assert settings["target"]["value"] == "local"


@pytest.mark.parametrize(
    ("variables", "region", "source"),
    [
        (
            {"AWS_REGION": "eu-west-2", "AWS_DEFAULT_REGION": "us-west-1"},
            "eu-west-2",
            "env AWS_REGION",
        ),
        ({"AWS_DEFAULT_REGION": "us-west-1"}, "us-west-1", "env AWS_DEFAULT_REGION"),
    ],
)
def test_config_shows_the_region_an_aws_stack_uses(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    variables: dict[str, str],
    region: str,
    source: str,
) -> None:
    # "imgcli config shows the profile and region in use", says a refusal's hint: it
    # showed null for a region botocore found in the environment.
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    config = tmp_path / "config.toml"
    config.write_text('[stacks.c9]\ntarget = "aws"\n')
    monkeypatch.setenv("IMGCLI_CONFIG", str(config))
    result = runner.invoke(app, ["--stack", "c9", "config", "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["region"] == {"value": region, "source": source}


def test_destroy_asks_first_and_enter_keeps_the_stack(moto_aws: None) -> None:
    """The prompt's default is no: Enter keeps everything (it used to be refused, and the
    next line's answer taken instead)."""
    assert imgcli("bootstrap", "--target", "aws").exit_code == 0
    stdout, stderr = io.StringIO(), io.StringIO()
    terminal = Streams(io.StringIO("\ny\n"), stdout, stderr, stdin_isatty=True)
    result = runner.invoke(app, ["--stack", "c1", "destroy"], obj=terminal)
    assert result.exit_code == 0, stderr.getvalue()
    assert "Delete 15 resources of stack 'c1'?" in stderr.getvalue()
    assert "nothing was changed" in stderr.getvalue()
    assert imgcli("stack").exit_code == 0


def test_a_stack_whose_resources_are_gone_says_so_until_bootstrapped_again(
    moto_aws: None,
) -> None:
    """What ``imgcli local reset`` leaves (test_commands_local.py), on any target."""
    assert imgcli("bootstrap", "--target", "aws").exit_code == 0
    record = StackState.load(state_path("c1"))
    assert record is not None
    record.mark_gone("its resources were discarded")

    gone = imgcli("stack")
    assert gone.exit_code == 3
    assert "stack 'c1' no longer exists: its resources were discarded" in gone.stderr
    assert "imgcli --stack c1 bootstrap" in gone.stderr

    again = imgcli("bootstrap", "--json")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["complete"] is True
    assert imgcli("stack").exit_code == 0
    assert StackState.load(state_path("c1")).gone is None  # type: ignore[union-attr]
