"""Stack settings: flags > IMGCLI_* environment > config file > defaults, for every field."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest

from imgcli.config import (
    BOTO3_SOURCE,
    DEFAULT_SOURCE,
    LOCAL_DEFAULT_PORT,
    Flags,
    config_path,
    local_access_key,
    read_config_file,
    resolve_stack,
)
from imgcli.errors import ConfigError, ExitCode, NoStackError


@pytest.fixture
def config_file() -> Path:
    """The file conftest points IMGCLI_CONFIG at (not created yet)."""
    path = Path(os.environ["IMGCLI_CONFIG"])
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def environ(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}


LAYERS = ("flag", "env", "file", "default")


@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    env: str
    target: str
    values: dict[str, Any]
    sources: dict[str, str]


FIELDS = [
    Field(
        "region",
        "IMGCLI_REGION",
        "aws",
        {"flag": "eu-west-1", "env": "eu-west-2", "file": "eu-west-3", "default": None},
        {"flag": "flag --region", "default": BOTO3_SOURCE},
    ),
    Field(
        "profile",
        "IMGCLI_PROFILE",
        "aws",
        {"flag": "from-flag", "env": "from-env", "file": "from-file", "default": None},
        {"flag": "flag --profile", "default": BOTO3_SOURCE},
    ),
    Field(
        "endpoint_url",
        "IMGCLI_ENDPOINT_URL",
        "local",
        {
            "flag": "http://flag.example:1",
            "env": "http://env.example:2",
            "file": "https://file.example:3",
            "default": f"http://127.0.0.1:{LOCAL_DEFAULT_PORT}",
        },
        {"flag": "flag --endpoint-url", "default": DEFAULT_SOURCE},
    ),
    Field(
        "local_port",
        "IMGCLI_LOCAL_PORT",
        "local",
        {"flag": 5001, "env": 5002, "file": 5003, "default": LOCAL_DEFAULT_PORT},
        {"flag": "flag --port", "default": DEFAULT_SOURCE},
    ),
]


def toml_value(value: Any) -> str:
    return str(value) if isinstance(value, int) else f'"{value}"'


@pytest.mark.parametrize("field", FIELDS, ids=lambda field: field.name)
@pytest.mark.parametrize("winner", LAYERS)
def test_each_field_takes_the_first_layer_that_sets_it(
    config_file: Path, field: Field, winner: str
) -> None:
    # Every layer from the winner down is set, so the winner must beat all of them.
    present = LAYERS[LAYERS.index(winner) :]
    lines = ["[stacks.default]", f'target = "{field.target}"']
    if "file" in present:
        lines.append(f"{field.name} = {toml_value(field.values['file'])}")
    config_file.write_text("\n".join(lines) + "\n")
    flags = Flags(**{field.name: field.values["flag"]}) if "flag" in present else Flags()
    env = environ(**{field.env: str(field.values["env"])}) if "env" in present else environ()

    settings = resolve_stack(flags, env)

    assert getattr(settings, field.name) == field.values[winner]
    expected_source = {
        "env": f"env {field.env}",
        "file": "file [stacks.default]",
        **field.sources,
    }[winner]
    assert settings.sources[field.name] == expected_source


@pytest.mark.parametrize(
    ("winner", "expected", "source"),
    [
        ("flag", "from-flag", "flag --stack"),
        ("env", "from-env", "env IMGCLI_STACK"),
        ("file", "from-file", "file config.toml default_stack"),
        ("default", "default", DEFAULT_SOURCE),
    ],
)
def test_stack_name_precedence(config_file: Path, winner: str, expected: str, source: str) -> None:
    present = LAYERS[LAYERS.index(winner) :]
    if "file" in present:
        config_file.write_text('default_stack = "from-file"\n')
    flags = Flags(stack="from-flag") if "flag" in present else Flags()
    env = environ(IMGCLI_STACK="from-env") if "env" in present else environ()

    settings = resolve_stack(flags, env)

    assert settings.name == expected
    assert settings.sources["stack"] == source


@pytest.mark.parametrize(
    ("flag", "expected", "source"),
    [("local", "local", "flag --target"), (None, "aws", "file [stacks.default]")],
)
def test_target_flag_beats_file(config_file: Path, flag: Any, expected: str, source: str) -> None:
    config_file.write_text('[stacks.default]\ntarget = "aws"\n')
    settings = resolve_stack(Flags(target=flag), environ())
    assert (settings.target, settings.sources["target"]) == (expected, source)


def test_no_file_means_the_default_local_stack() -> None:
    settings = resolve_stack(Flags(), environ())
    assert settings.name == "default"
    assert settings.target == "local"
    assert settings.region == "us-east-1"
    assert settings.endpoint_url == "http://127.0.0.1:4599"
    assert settings.credentials == local_access_key(environ())
    assert settings.profile is None
    assert settings.records == {}


def test_selected_stack_table_is_used(config_file: Path) -> None:
    config_file.write_text(
        'default_stack = "prod"\n'
        "[stacks.dev]\n"
        'target = "local"\n'
        "[stacks.prod]\n"
        'target = "aws"\n'
        'region = "eu-central-1"\n'
        'profile = "gallery"\n'
    )
    prod = resolve_stack(Flags(), environ())
    assert (prod.name, prod.target, prod.region, prod.profile) == (
        "prod",
        "aws",
        "eu-central-1",
        "gallery",
    )
    # Left to boto3: it applies AWS_ENDPOINT_URL and its own resolution itself.
    assert prod.endpoint_url is None
    assert prod.credentials is None
    dev = resolve_stack(Flags(stack="dev"), environ())
    assert dev.target == "local"


def test_local_endpoint_follows_the_local_port() -> None:
    settings = resolve_stack(Flags(), environ(IMGCLI_LOCAL_PORT="5005"))
    assert settings.endpoint_url == "http://127.0.0.1:5005"


def test_profile_is_not_used_by_a_local_stack() -> None:
    settings = resolve_stack(Flags(profile="work"), environ(IMGCLI_PROFILE="work"))
    assert settings.profile is None


def test_empty_environment_variables_count_as_unset() -> None:
    settings = resolve_stack(Flags(), environ(IMGCLI_STACK="", IMGCLI_REGION=""))
    assert settings.name == "default"
    assert settings.region == "us-east-1"


def test_unknown_keys_are_kept_as_records(config_file: Path) -> None:
    config_file.write_text(
        "future_setting = 1\n"
        "[stacks.default]\n"
        'target = "aws"\n'
        'bucket = "imgcli-default-images"\n'
        'api_url = "https://abc.execute-api.us-east-1.amazonaws.com"\n'
    )
    settings = resolve_stack(Flags(), environ())
    assert settings.record("bucket") == "imgcli-default-images"
    assert dict(settings.records) == {
        "bucket": "imgcli-default-images",
        "api_url": "https://abc.execute-api.us-east-1.amazonaws.com",
    }


def test_a_missing_record_means_no_stack() -> None:
    settings = resolve_stack(Flags(stack="prod"), environ())
    with pytest.raises(NoStackError) as raised:
        settings.record("bucket")
    assert raised.value.exit_code == ExitCode.NO_STACK
    assert raised.value.hint == "run 'imgcli --stack prod bootstrap' first"


def test_settings_are_frozen() -> None:
    settings = resolve_stack(Flags(), environ())
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.region = "eu-west-1"  # type: ignore[misc]


def test_describe_lists_values_with_sources() -> None:
    rows = {
        name: (value, source)
        for name, value, source in resolve_stack(Flags(), environ()).describe()
    }
    assert rows["stack"] == ("default", DEFAULT_SOURCE)
    assert rows["endpoint_url"] == ("http://127.0.0.1:4599", DEFAULT_SOURCE)
    assert rows["config_file"] == (os.environ["IMGCLI_CONFIG"], "env IMGCLI_CONFIG")


def test_imgcli_config_overrides_the_path(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.toml"
    elsewhere.write_text('default_stack = "moved"\n')
    assert config_path({"IMGCLI_CONFIG": str(elsewhere)}) == elsewhere
    settings = resolve_stack(Flags(), environ(IMGCLI_CONFIG=str(elsewhere)))
    assert settings.name == "moved"
    assert settings.config_file == elsewhere


def test_default_path_is_the_user_config_dir() -> None:
    from platformdirs import user_config_dir

    assert config_path({}) == Path(user_config_dir("imgcli")) / "config.toml"


def test_malformed_toml_names_the_file_and_line(config_file: Path) -> None:
    config_file.write_text('default_stack = "dev"\n[stacks.dev]\ntarget = \n')
    with pytest.raises(ConfigError) as raised:
        resolve_stack(Flags(), environ())
    assert raised.value.exit_code == ExitCode.USAGE
    assert str(config_file) in raised.value.message
    assert "line 3" in raised.value.message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[stacks.dev]\ntarget = "gcp"\n', "[stacks.dev] target must be 'local' or 'aws'"),
        ("[stacks.dev]\nregion = 5\n", "[stacks.dev] region must be a string"),
        ("[stacks.dev]\nlocal_port = 70000\n", "[stacks.dev] local_port must be a port"),
        ('[stacks.dev]\nendpoint_url = "localhost"\n', "endpoint_url must be an http(s) URL"),
        ('stacks = "dev"\n', "stacks must be a table"),
        ('stacks = { dev = "x" }\n', "[stacks.dev] must be a table"),
        ("default_stack = 3\n", "default_stack must be a string"),
    ],
)
def test_wrong_shapes_are_config_errors(config_file: Path, text: str, problem: str) -> None:
    config_file.write_text(text)
    with pytest.raises(ConfigError) as raised:
        read_config_file(config_file)
    assert str(config_file) in raised.value.message
    assert problem in raised.value.message


def test_file_that_is_not_utf8(config_file: Path) -> None:
    config_file.write_bytes(b'default_stack = "\xff"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_config_file(config_file)


@pytest.mark.parametrize("value", ["abc", "0", "65536"])
def test_bad_local_port_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="IMGCLI_LOCAL_PORT"):
        resolve_stack(Flags(), environ(IMGCLI_LOCAL_PORT=value))


def test_bad_endpoint_variable() -> None:
    with pytest.raises(ConfigError, match="IMGCLI_ENDPOINT_URL"):
        resolve_stack(Flags(), environ(IMGCLI_ENDPOINT_URL="127.0.0.1:4599"))


def test_a_bootstrapped_stack_keeps_its_target_region_and_follows_the_local_port() -> None:
    from imgcli.infra.state import StackState, state_path

    environ = dict(os.environ)
    record = StackState(
        path=state_path("rec", environ),
        stack="rec",
        target="local",
        region="us-east-1",
        outputs={"api_id": "abc123", "api_url": "http://127.0.0.1:4599/_api/abc123"},
    )
    record.save()
    settings = resolve_stack(Flags(stack="rec"), {**environ, "IMGCLI_LOCAL_PORT": "5000"})
    assert settings.target == "local"
    assert settings.sources["target"].startswith("bootstrap record")
    assert settings.record("api_url") == "http://127.0.0.1:5000/_api/abc123"

    StackState(
        path=state_path("far", environ), stack="far", target="aws", region="eu-west-1"
    ).save()
    far = resolve_stack(Flags(stack="far"), environ)
    assert (far.target, far.region) == ("aws", "eu-west-1")
