"""``imgcli local status`` and ``imgcli local env``: the owner sees the local cloud's key, and
other AWS tools get it with ``eval "$(imgcli local env)"``."""

from __future__ import annotations

import io
import json
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imgcli.cli import build_app
from imgcli.errors import ExitCode
from imgcli.infra.state import StackState, state_path
from imgcli.localcloud import health, process
from imgcli.localcloud.secret import SECRET_FILE, load_or_create, local_cloud_dir
from imgcli.output import Streams
from tests.images import image_bytes
from tests.localstack import (
    KEY,
    REPO,
    SECRET,
    cloud_environment,
    give_owner_key,
    local_cloud_env,
    run_imgcli,
)

#: What an owner's shell may hold that must not reach (or redirect) the local cloud.
HOSTILE = {
    "AWS_ACCESS_KEY_ID": "AKIAREALOWNERKEY0000",
    "AWS_SECRET_ACCESS_KEY": "the-owners-real-aws-secret",
    "AWS_SESSION_TOKEN": "a-real-session-token",
    "AWS_PROFILE": "no-such-profile-here",
    "AWS_ENDPOINT_URL_S3": "https://s3.example.invalid",
}
VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A running local cloud with one bucket, created as its owner."""
    with local_cloud_env(tmp_path_factory.mktemp("local-commands"), "commands") as env:
        status, _ = process.start(int(env["IMGCLI_LOCAL_PORT"]), env)
        import boto3

        boto3.client(
            "s3",
            endpoint_url=status.endpoint,
            region_name="us-east-1",
            aws_access_key_id=KEY,
            aws_secret_access_key=SECRET,
        ).create_bucket(Bucket="listed-through-local-env")
        yield env


def in_shell(env: dict[str, str], script: str) -> subprocess.CompletedProcess[str]:
    """``script`` run by ``sh`` with ``$IMGCLI`` as the command that runs imgcli."""
    return subprocess.run(
        ["sh", "-c", script],
        cwd=REPO,
        env={**env, "IMGCLI": f"{sys.executable} -m imgcli"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_status_shows_the_owner_how_to_reach_it(cloud: dict[str, str]) -> None:
    shown = run_imgcli(cloud, "local", "status", "--json")
    assert shown.returncode == 0, shown.stderr
    fields = json.loads(shown.stdout)
    port = cloud["IMGCLI_LOCAL_PORT"]
    assert fields["running"] is True and isinstance(fields["pid"], int)
    assert fields["endpoint"] == f"http://127.0.0.1:{port}"
    assert (fields["access_key_id"], fields["secret_access_key"]) == (KEY, SECRET)
    assert fields["region"] == "us-east-1"
    assert fields["data_dir"] == str(local_cloud_dir(cloud))
    table = run_imgcli(cloud, "local", "status")
    assert table.returncode == 0, table.stderr
    for value in (fields["endpoint"], KEY, SECRET, "us-east-1", str(fields["pid"])):
        assert value in table.stdout


def test_env_output_evaluated_by_sh_lets_boto3_list_the_buckets(cloud: dict[str, str]) -> None:
    listing = (
        "import boto3; "
        "print(json.dumps([b['Name'] for b in boto3.client('s3').list_buckets()['Buckets']]))"
    )
    done = in_shell(
        {**cloud, **HOSTILE},
        f'eval "$($IMGCLI local env)" && {sys.executable} -c "import json; {listing}"',
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["listed-through-local-env"]


@pytest.mark.skipif(shutil.which("aws") is None, reason="the AWS CLI is not installed")
def test_env_output_evaluated_by_sh_lets_the_aws_cli_list_the_buckets(
    cloud: dict[str, str],
) -> None:
    done = in_shell({**cloud, **HOSTILE}, 'eval "$($IMGCLI local env)" && aws s3 ls')
    assert done.returncode == 0, done.stderr
    assert "listed-through-local-env" in done.stdout


def test_env_quotes_for_the_shell_and_unsets_what_would_interfere(tmp_path: Path) -> None:
    env = {**cloud_environment(tmp_path, "quoting"), **HOSTILE}
    awkward = 'it\'s a $ecret `with` "quotes" & spaces'
    give_owner_key(env, KEY, awkward)
    printed = run_imgcli(env, "local", "env")
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert [line.split("=")[0] for line in lines[:-1]] == [f"export {v}" for v in VARIABLES]
    assert lines[-1].startswith("unset ")
    assert {"AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL_S3"} <= set(lines[-1].split())

    shown = in_shell(
        env,
        'eval "$($IMGCLI local env)" && printf "%s\\n" "$AWS_SECRET_ACCESS_KEY" '
        '"${AWS_SESSION_TOKEN-unset}" "${AWS_PROFILE-unset}" "${AWS_ENDPOINT_URL_S3-unset}" '
        '"$AWS_ENDPOINT_URL"',
    )
    assert shown.returncode == 0, shown.stderr
    port = env["IMGCLI_LOCAL_PORT"]
    assert shown.stdout.splitlines() == [
        awkward,
        "unset",
        "unset",
        "unset",
        f"http://127.0.0.1:{port}",
    ]


def test_env_as_json_is_an_object_of_the_variables(tmp_path: Path) -> None:
    env = cloud_environment(tmp_path, "json")
    give_owner_key(env, KEY, SECRET)
    printed = run_imgcli(env, "local", "env", "--json")
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == {
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{env['IMGCLI_LOCAL_PORT']}",
    }


def test_env_makes_the_secret_but_does_not_start_the_local_cloud(tmp_path: Path) -> None:
    env = cloud_environment(tmp_path, "fresh")
    printed = run_imgcli(env, "local", "env", "--json")
    assert printed.returncode == 0, printed.stderr
    directory = local_cloud_dir(env)
    key = load_or_create(directory)
    assert json.loads(printed.stdout)["AWS_SECRET_ACCESS_KEY"] == key.secret_access_key
    assert stat.S_IMODE((directory / SECRET_FILE).stat().st_mode) == 0o600
    assert health.nobody_listens(int(env["IMGCLI_LOCAL_PORT"]))
    assert not (directory / process.RECORD).exists()
    helped = run_imgcli(env, "local", "env", "--help").stdout
    assert "does not start the local cloud" in " ".join(helped.replace("│", " ").split())


def test_reset_discards_the_key_pair_so_the_next_start_makes_another(tmp_path: Path) -> None:
    env = cloud_environment(tmp_path, "reset")
    first = json.loads(run_imgcli(env, "local", "env", "--json").stdout)
    reset = run_imgcli(env, "local", "reset", "--yes")
    assert reset.returncode == 0, reset.stderr
    second = json.loads(run_imgcli(env, "local", "env", "--json").stdout)
    assert first["AWS_SECRET_ACCESS_KEY"] != second["AWS_SECRET_ACCESS_KEY"]


def test_a_tampered_snapshot_is_set_aside_and_named_by_status(tmp_path: Path) -> None:
    with local_cloud_env(tmp_path, "tampered") as env:
        port = int(env["IMGCLI_LOCAL_PORT"])
        status, _ = process.start(port, env)
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=status.endpoint,
            region_name="us-east-1",
            aws_access_key_id=KEY,
            aws_secret_access_key=SECRET,
        )
        s3.create_bucket(Bucket="before-the-tampering")
        assert process.stop(port, env)
        snapshot = local_cloud_dir(env) / "state.pickle"
        data = bytearray(snapshot.read_bytes())
        data[-1] ^= 0x01  # one bit of the pickle: its HMAC no longer matches
        snapshot.write_bytes(bytes(data))
        shown = run_imgcli(env, "local", "start")
        assert shown.returncode == 0, shown.stderr
        described = json.loads(run_imgcli(env, "local", "status", "--json").stdout)
        assert described["running"]
        assert any("set aside as" in problem for problem in described["problems"])
        assert "did not restore" in run_imgcli(env, "local", "status").stderr
        assert list(snapshot.parent.glob("state.pickle.rejected-*"))
        assert s3.list_buckets()["Buckets"] == []  # never loaded


# --json everywhere, reset's records and its prompt ----------------------------------------


def test_start_and_stop_take_json(tmp_path: Path) -> None:
    with local_cloud_env(tmp_path, "json-start") as env:
        started = run_imgcli(env, "local", "start", "--json")
        assert started.returncode == 0, started.stderr
        fields = json.loads(started.stdout)
        assert fields["running"] is True
        assert fields["endpoint"] == f"http://127.0.0.1:{env['IMGCLI_LOCAL_PORT']}"
        stopped = run_imgcli(env, "local", "stop", "--json")
        assert stopped.returncode == 0, stopped.stderr
        assert json.loads(stopped.stdout) == {
            "stopped": True,
            "port": int(env["IMGCLI_LOCAL_PORT"]),
        }


def test_after_reset_local_stacks_must_be_bootstrapped_again_and_say_so(tmp_path: Path) -> None:
    """The records of local stacks said "complete" after a reset, so upload and delete
    failed on a bare NoSuchBucket. (That bootstrap clears the mark: test_cli_stack.py.)"""
    with local_cloud_env(tmp_path, "gone") as env:
        photo = tmp_path / "photo.jpg"
        photo.write_bytes(image_bytes("JPEG"))
        records = {
            name: StackState(
                path=state_path(name, env),
                stack=name,
                target=target,
                complete=True,
                outputs={"bucket": f"imgcli-{name}-bucket", "table": f"imgcli-{name}-images"},
            )
            for name, target in (("gone", "local"), ("also-gone", "local"), ("on-aws", "aws"))
        }
        for record in records.values():
            record.save()

        reset = run_imgcli(env, "local", "reset", "--yes", "--json")
        assert reset.returncode == 0, reset.stderr
        assert json.loads(reset.stdout) == {"reset": True, "stacks_gone": ["also-gone", "gone"]}
        assert "bootstrap" in reset.stderr

        described = run_imgcli(env, "stack")
        assert described.returncode == ExitCode.NO_STACK, described.stderr
        assert "stack 'gone' no longer exists: the local cloud was reset" in described.stderr
        assert "bootstrap" in described.stderr
        # Not a bare NoSuchBucket (exit 5) from a bucket that is no more.
        uploaded = run_imgcli(env, "upload", str(photo))
        assert uploaded.returncode == ExitCode.NO_STACK, uploaded.stderr
        assert "bootstrap" in uploaded.stderr
        assert StackState.load(state_path("on-aws", env)) == records["on-aws"]  # not local


def test_reset_asks_first_and_enter_keeps_everything(tmp_path: Path) -> None:
    """The prompt's default is no: Enter discards nothing (it used to be refused, and the
    next line's answer taken instead)."""
    env = cloud_environment(tmp_path, "asked")
    key = load_or_create(local_cloud_dir(env))
    stdout, stderr = io.StringIO(), io.StringIO()
    terminal = Streams(io.StringIO("\ny\n"), stdout, stderr, stdin_isatty=True)
    result = CliRunner().invoke(build_app(), ["local", "reset", "--json"], env=env, obj=terminal)
    assert result.exit_code == 0, stderr.getvalue()
    assert json.loads(stdout.getvalue()) == {"reset": False, "stacks_gone": []}
    assert load_or_create(local_cloud_dir(env)) == key  # nothing discarded
