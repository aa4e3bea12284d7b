"""Settings name their real sources: bootstrap's record (not the config file) for what it
recorded, the local cloud's own port, one region for a local stack (issue 12)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from imgcli.config import LOCAL_DEFAULT_PORT, Flags, resolve_stack
from imgcli.errors import ExitCode, NoStackError, UsageError
from imgcli.infra.state import StackState, state_path
from imgcli.invocation import Invocation
from imgcli.localcloud import process
from imgcli.localcloud.secret import local_cloud_dir
from imgcli.output import Output, Streams


def environ(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}


@pytest.fixture
def config_file() -> Path:
    path = Path(os.environ["IMGCLI_CONFIG"])
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def run(env: dict[str, str], **flags: object) -> Invocation:
    streams = Streams(stdin=io.StringIO(), stdout=io.StringIO(), stderr=io.StringIO())
    return Invocation(Output(streams), Flags(**flags), env)  # type: ignore[arg-type]


# "Not bootstrapped" names the bootstrap record


def test_not_bootstrapped_names_the_state_file_not_the_config_file() -> None:
    settings = resolve_stack(Flags(stack="prod"), environ())
    with pytest.raises(NoStackError) as raised:
        settings.record("bucket")
    record = state_path("prod", environ())
    assert raised.value.message == (
        f"stack 'prod' has not been bootstrapped (no bootstrap record at {record})"
    )
    assert str(settings.config_file) not in raised.value.message
    assert raised.value.hint == "run 'imgcli --stack prod bootstrap' first"


def test_a_record_without_the_value_says_so() -> None:
    StackState(path=state_path("half", environ()), stack="half", target="local").save()
    with pytest.raises(NoStackError, match=r"its bootstrap record .*half\.json has no bucket"):
        resolve_stack(Flags(stack="half"), environ()).record("bucket")


def test_a_stack_whose_resources_are_gone_says_why() -> None:
    state = StackState(
        path=state_path("reset", environ()),
        stack="reset",
        target="local",
        outputs={"bucket": "b"},
        complete=True,
    )
    state.mark_gone("the local cloud was reset")
    with pytest.raises(NoStackError) as raised:
        resolve_stack(Flags(stack="reset"), environ()).record("bucket")
    assert "stack 'reset' no longer exists: the local cloud was reset" in raised.value.message
    assert raised.value.hint == "run 'imgcli --stack reset bootstrap' to create it again"


def test_records_are_labelled_by_where_they_come_from(config_file: Path) -> None:
    config_file.write_text('[stacks.both]\ntarget = "local"\nnote = "kept"\n')
    record = state_path("both", environ())
    StackState(path=record, stack="both", target="local", outputs={"bucket": "imgcli-both"}).save()
    rows = {
        name: (value, source)
        for name, value, source in resolve_stack(Flags(stack="both"), environ()).describe()
    }
    assert rows["bucket"] == ("imgcli-both", f"bootstrap record {record}")
    assert rows["note"] == ("kept", "file [stacks.both]")


# Stack names


@pytest.mark.parametrize(
    ("env", "source"),
    [({"IMGCLI_STACK": "../x"}, "env IMGCLI_STACK"), ({}, "file config.toml default_stack")],
)
def test_stack_names_are_checked_from_every_source(
    config_file: Path, env: dict[str, str], source: str
) -> None:
    config_file.write_text('default_stack = "a/b"\n')
    with pytest.raises(UsageError) as raised:
        resolve_stack(Flags(), environ(**env))
    assert raised.value.exit_code == ExitCode.USAGE
    assert raised.value.message.endswith(f"({source})")


# One region for a local stack


@pytest.mark.parametrize(
    ("env", "file", "source"),
    [
        ({"IMGCLI_REGION": "eu-west-2"}, "", "env IMGCLI_REGION"),
        ({}, 'region = "eu-west-2"\n', "file [stacks.default]"),
    ],
)
def test_a_local_stack_refuses_another_region_from_any_source(
    config_file: Path, env: dict[str, str], file: str, source: str
) -> None:
    config_file.write_text('[stacks.default]\ntarget = "local"\n' + file)
    with pytest.raises(UsageError) as raised:
        resolve_stack(Flags(), environ(**env))
    assert f"region eu-west-2 ({source}) cannot apply" in raised.value.message


def test_an_aws_stack_takes_any_region(config_file: Path) -> None:
    config_file.write_text('[stacks.default]\ntarget = "aws"\n')
    assert resolve_stack(Flags(region="eu-west-2"), environ()).region == "eu-west-2"


# The local cloud's own port


def test_a_local_stack_uses_the_port_its_local_cloud_was_started_on() -> None:
    env = environ()
    # What `imgcli local start --port 4739` leaves behind (the server writes it).
    process.write_record(local_cloud_dir(env), 4739)
    settings = run(env).settings
    assert settings.local_port == 4739
    assert settings.endpoint_url == "http://127.0.0.1:4739"
    assert settings.sources["local_port"] == "the local cloud started from this data dir"


def test_a_configured_port_beats_the_started_one() -> None:
    env = environ(IMGCLI_LOCAL_PORT="5005")
    process.write_record(local_cloud_dir(env), 4739)
    settings = run(env).settings
    assert (settings.local_port, settings.sources["local_port"]) == (5005, "env IMGCLI_LOCAL_PORT")


def test_without_a_started_local_cloud_the_default_port() -> None:
    settings = run(environ()).settings
    assert (settings.local_port, settings.endpoint_url) == (
        LOCAL_DEFAULT_PORT,
        f"http://127.0.0.1:{LOCAL_DEFAULT_PORT}",
    )


def test_an_aws_stack_never_asks_for_the_local_clouds_port(config_file: Path) -> None:
    config_file.write_text('[stacks.default]\ntarget = "aws"\n')

    def never() -> int | None:
        raise AssertionError("asked")

    assert resolve_stack(Flags(), environ(), local_cloud_port=never).target == "aws"
