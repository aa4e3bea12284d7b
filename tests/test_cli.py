"""The CLI frame: global options, stdout/stderr, exit codes and lazy imports, end to end.

Failure paths run through real commands: a test-only command registered on a fresh app
from ``build_app()``, wrapped by the same ``reports_failures`` every imgcli command uses.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import typer
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
from typer.testing import CliRunner, Result

from imgcli import __version__
from imgcli.cli import app, build_app
from imgcli.commands.frame import invocation, reports_failures
from imgcli.errors import ExitCode, NoStackError, PartialFailure, UsageError
from imgcli.output import Streams

REPO = Path(__file__).resolve().parents[1]
HEAVY = {"boto3", "botocore", "s3transfer", "PIL", "moto", "imgcli.infra", "imgcli.lambdas"}
# Resolving a stack checks its name and reads bootstrap's record: a JSON file, the modules
# that name and read it, and their errors, no more.
LIGHT = {"imgcli.infra", "imgcli.infra.state", "imgcli.infra.errors", "imgcli.infra.names"}

runner = CliRunner()


def is_heavy(module: str, heavy: set[str]) -> bool:
    """``module`` is one of ``heavy`` or inside one of them."""
    return any(module == name or module.startswith(name + ".") for name in heavy)


def invoke(*args: str, target: typer.Typer = app, **extra: object) -> Result:
    return runner.invoke(target, list(args), **extra)  # type: ignore[arg-type]


def app_with_command(body: Callable[[typer.Context], None]) -> typer.Typer:
    """A fresh imgcli app with one extra command, ``try``, that runs ``body``."""
    fresh = build_app()

    @fresh.command("try")
    @reports_failures
    def try_command(ctx: typer.Context) -> None:
        """Run the test's body."""
        body(ctx)

    return fresh


def raising(exc: BaseException) -> typer.Typer:
    def body(ctx: typer.Context) -> None:
        raise exc

    return app_with_command(body)


@pytest.fixture
def config_file() -> Path:
    path = Path(os.environ["IMGCLI_CONFIG"])
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


# Help, version, usage errors


def test_help_lists_global_options_and_commands() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for option in ("--stack", "--json", "--quiet", "--verbose", "--profile", "--region"):
        assert option in result.stdout
    assert "--version" in result.stdout
    assert "config" in result.stdout
    assert "Example:" in result.stdout


def test_no_arguments_shows_help() -> None:
    result = invoke()
    assert "Usage:" in result.output
    assert "config" in result.output


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout == f"imgcli {__version__}\n"


def test_command_help_has_an_example() -> None:
    result = invoke("config", "--help")
    assert result.exit_code == 0
    assert "Example: imgcli" in result.stdout


@pytest.mark.parametrize("args", [["--bogus"], ["config", "--bogus"], ["no-such-command"]])
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = invoke(*args)
    assert result.exit_code == ExitCode.USAGE
    assert result.stdout == ""


def test_tracebacks_never_show_locals() -> None:
    assert build_app().pretty_exceptions_show_locals is False


# The config command: table vs JSON, stdout vs stderr, quiet


def test_config_prints_a_table_on_stdout() -> None:
    result = invoke("config")
    assert result.exit_code == 0
    assert "http://127.0.0.1:4599" in result.stdout
    assert "imgcli default" in result.stdout
    assert result.stderr == ""


def test_config_json_is_one_object() -> None:
    result = invoke("--json", "config")
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document["stack"] == {"value": "default", "source": "imgcli default"}
    assert document["endpoint_url"]["value"] == "http://127.0.0.1:4599"
    assert result.stderr == ""


def test_global_flags_reach_the_settings(config_file: Path) -> None:
    config_file.write_text('[stacks.prod]\ntarget = "aws"\nregion = "eu-west-3"\n')
    result = invoke(
        "--stack", "prod", "--region", "eu-west-1", "--profile", "gallery", "--json", "config"
    )
    document = json.loads(result.stdout)
    assert document["stack"]["value"] == "prod"
    assert document["target"] == {"value": "aws", "source": "file [stacks.prod]"}
    assert document["region"] == {"value": "eu-west-1", "source": "flag --region"}
    assert document["profile"] == {"value": "gallery", "source": "flag --profile"}


def test_environment_reaches_the_settings() -> None:
    result = invoke("--json", "config", env={"IMGCLI_STACK": "from-env"})
    assert json.loads(result.stdout)["stack"]["source"] == "env IMGCLI_STACK"


def test_quiet_config_prints_nothing() -> None:
    result = invoke("--quiet", "config")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert result.stderr == ""


def test_malformed_config_is_a_one_line_usage_error(config_file: Path) -> None:
    config_file.write_text("default_stack = \n")
    result = invoke("config")
    assert result.exit_code == ExitCode.USAGE
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert str(config_file) in result.stderr
    assert "line 1" in result.stderr


def test_broken_config_does_not_break_help(config_file: Path) -> None:
    config_file.write_text("[[[\n")
    assert invoke("config", "--help").exit_code == 0


def test_data_to_stdout_messages_to_stderr() -> None:
    def body(ctx: typer.Context) -> None:
        output = invocation(ctx).output
        output.info("working on it")
        output.warning("one was skipped")
        output.document({"done": 2}, columns=("done",), rows=[(2,)])

    result = invoke("--json", "try", target=app_with_command(body))
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"done": 2}
    assert "working on it" in result.stderr
    assert "warning: one was skipped" in result.stderr


def test_quiet_keeps_errors() -> None:
    def body(ctx: typer.Context) -> None:
        invocation(ctx).output.info("chatter")
        raise NoStackError("stack 'prod' has not been bootstrapped")

    result = invoke("--quiet", "try", target=app_with_command(body))
    assert result.exit_code == ExitCode.NO_STACK
    assert result.stdout == ""
    assert result.stderr == "error: stack 'prod' has not been bootstrapped\n"


def test_streams_can_be_handed_in_as_the_context_object() -> None:
    stdout, stderr = io.StringIO(), io.StringIO()
    streams = Streams(stdin=io.StringIO(), stdout=stdout, stderr=stderr, stdout_isatty=True)
    result = invoke("config", obj=streams)
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "\x1b[" in stdout.getvalue()


# Exit codes through a real command path


@pytest.mark.parametrize(
    ("error", "code", "says"),
    [
        (UsageError("bad --limit"), ExitCode.USAGE, "bad --limit"),
        (NoStackError("no stack 'prod'"), ExitCode.NO_STACK, "no stack 'prod'"),
        (PartialFailure(1, 3, "uploads"), ExitCode.SOME_FAILED, "1 of 3 uploads failed"),
        (
            ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "PutObject"),
            ExitCode.AUTH,
            "AWS refused PutObject (AccessDenied): no",
        ),
        (
            ClientError({"Error": {"Code": "InvalidRequest", "Message": "bad"}}, "PutObject"),
            ExitCode.REMOTE,
            "PutObject failed (InvalidRequest): bad",
        ),
        (NoCredentialsError(), ExitCode.AUTH, "no AWS credentials found"),
        (
            EndpointConnectionError(endpoint_url="http://127.0.0.1:4599/"),
            ExitCode.NETWORK,
            "imgcli local start",
        ),
        (RuntimeError("oops"), ExitCode.INTERNAL, "please report"),
    ],
)
def test_each_failure_family_has_its_exit_code(
    error: BaseException, code: ExitCode, says: str
) -> None:
    result = invoke("try", target=raising(error))
    assert result.exit_code == code
    assert says in result.stderr
    assert result.stderr.startswith("error: ")
    assert result.stdout == ""


def test_ctrl_c_exits_130() -> None:
    result = invoke("try", target=raising(KeyboardInterrupt()))
    assert result.exit_code == 130
    assert result.stderr == "error: interrupted\n"


def test_an_aborted_prompt_exits_130_not_1() -> None:
    result = invoke("try", target=raising(typer.Abort()))
    assert result.exit_code == 130
    assert result.stderr == "error: interrupted\n"


def test_without_verbose_a_failure_is_one_line() -> None:
    result = invoke("try", target=raising(RuntimeError("oops")))
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_verbose_adds_the_traceback() -> None:
    result = invoke("--verbose", "try", target=raising(RuntimeError("oops")))
    assert result.exit_code == ExitCode.INTERNAL
    assert result.stderr.startswith("Traceback (most recent call last):")
    assert "RuntimeError: oops" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: unexpected error: RuntimeError")


def test_aws_text_is_printed_literally() -> None:
    error = ClientError(
        {"Error": {"Code": "ValidationException", "Message": "Value [bold]x[/bold] invalid"}},
        "Query",
    )
    result = invoke("try", target=raising(error))
    assert "Value [bold]x[/bold] invalid" in result.stderr


def test_typer_exit_passes_through() -> None:
    result = invoke("try", target=raising(typer.Exit(0)))
    assert result.exit_code == 0
    assert result.stderr == ""


def registered_callbacks(typer_app: typer.Typer) -> Iterator[Callable[..., object]]:
    for command in typer_app.registered_commands:
        assert command.callback is not None
        yield command.callback
    for group in typer_app.registered_groups:
        assert group.typer_instance is not None
        yield from registered_callbacks(group.typer_instance)


def test_every_command_reports_failures() -> None:
    # Every reports_failures wrapper shares one code object, so this finds any command
    # registered without it.
    wrapper_code = reports_failures(lambda: None).__code__
    callbacks = list(registered_callbacks(app))
    assert callbacks
    for callback in callbacks:
        assert callback.__code__ is wrapper_code, callback.__name__


@pytest.mark.parametrize("args", [["config"], ["--json", "config"]], ids=["table", "json"])
def test_a_reader_that_stops_early_is_no_failure(args: list[str]) -> None:
    # `imgcli ... | head`: the pipe's reading end is closed before imgcli writes.
    reading, writing = os.pipe()
    os.close(reading)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "imgcli", *args],
            cwd=REPO,
            stdout=writing,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    finally:
        os.close(writing)

    assert result.returncode == ExitCode.BROKEN_PIPE  # 141, as `ls | head` reports
    assert result.stderr == ""


# Speed: nothing heavy is imported for --help, --version or config


def test_importing_the_cli_imports_nothing_heavy() -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import imgcli.cli"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "imgcli.cli" in imported
    assert {name for name in imported if is_heavy(name, HEAVY)} == set()
    assert "imgcli.aws" not in imported


PROBE = """
import sys
from imgcli.cli import main
sys.argv = ["imgcli", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
loaded = sorted(
    m for m in sys.modules
    if (any(m == h or m.startswith(h + ".") for h in {heavy!r}) and m not in {light!r})
    or m == "imgcli.aws"
)
sys.stderr.write("LOADED=" + ",".join(loaded) + "\\n")
"""


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["config"], ["--json", "config"]])
def test_running_without_aws_work_loads_nothing_heavy(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY, light=LIGHT), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout
    assert result.stderr.splitlines()[-1] == "LOADED="


def test_json_results_load_no_rich() -> None:
    # rich is for people: a script reading JSON does not pay for importing it.
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy={"rich"}, light=set()), "--json", "config"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(result.stdout)
    assert result.stderr.splitlines()[-1] == "LOADED="


GC_PROBE = """
import gc, sys
from imgcli.cli import main
sys.argv = ["imgcli", "--version"]
try:
    main()
except SystemExit:
    pass
sys.stderr.write(f"THRESHOLD={gc.get_threshold()[0]} FROZEN={gc.get_freeze_count()}\\n")
"""


def test_the_console_script_collects_less_often_and_skips_the_last_collection() -> None:
    result = subprocess.run(
        [sys.executable, "-c", GC_PROBE], cwd=REPO, capture_output=True, text=True, check=True
    )
    threshold, frozen = (
        int(field.split("=")[1]) for field in result.stderr.splitlines()[-1].split()
    )
    # Start-up's long-lived objects are not walked every 700 allocations, and the
    # interpreter's final collection skips everything made before the command ended.
    assert threshold > 700
    assert frozen > 10_000


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "imgcli", "--version"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == f"imgcli {__version__}\n"


def test_config_warns_about_a_stack_the_file_does_not_define(config_file: Path) -> None:
    config_file.write_text('[stacks.prod]\ntarget = "aws"\nregion = "eu-west-1"\n')
    result = invoke("--stack", "prdo", "config")
    assert result.exit_code == 0
    assert "stack 'prdo' is not in" in result.stderr
    assert "defines prod" in result.stderr
    known = invoke("--stack", "prod", "config")
    assert known.exit_code == 0 and known.stderr == ""
