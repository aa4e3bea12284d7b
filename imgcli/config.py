"""Which stack imgcli talks to, and with which endpoint, region, profile and port.

Named stacks live in a TOML file in the user config dir (``IMGCLI_CONFIG`` overrides the
path)::

    default_stack = "dev"

    [stacks.dev]
    target = "local"            # the embedded local cloud (the default)

    [stacks.prod]
    target = "aws"
    region = "eu-west-1"
    profile = "gallery"
    # bootstrap records what it created here too (bucket, table, api_url, ...):
    # keys imgcli does not know are kept, never rejected.

Each value comes from the first source that sets it: command-line flags, then ``IMGCLI_*``
environment variables, then the stack's table in the file, then what bootstrap recorded
(the stack's state file), then a default. For an ``aws`` stack the default for region,
profile and endpoint is *nothing*: ``None`` is passed on so boto3 applies its standard
chain (``AWS_PROFILE``, ``AWS_REGION`` then ``AWS_DEFAULT_REGION`` (``imgcli.aws``),
``AWS_ENDPOINT_URL``, ``~/.aws/config``) exactly as the AWS CLI would; re-implementing that
chain here would drift from it. A ``local`` stack needs no AWS account: its endpoint is the
local cloud on 127.0.0.1, signed with the key pair that local cloud generated for its owner
(``local_access_key``): a local stack works on a machine with no AWS setup and never
sends a real credential to the local cloud.

A local stack has the local cloud's one region: any other region asked for (``--region``,
``IMGCLI_REGION``, the file) is a usage error naming it, never a request the local cloud
refuses later. Its port, unless configured, is the one the local cloud of this data dir
was started on (``local_cloud_port``, which the caller passes in: it reads the local
cloud's record, and ``imgcli.localcloud.process`` imports this module), so ``imgcli local
start --port N`` and the commands after it agree.

The stack name is checked (``imgcli.infra.names``) before anything is read by it: it
becomes the state file's name, so ``--stack ../../x`` must never reach the file system.

The result is a frozen ``StackSettings`` that also records where each value came from, so
``imgcli config`` can answer "why is it using that region?". This module is pure of boto3
(``imgcli.aws`` turns settings into clients) so reading settings never pays for botocore.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal, TypeVar
from urllib.parse import urlsplit

from imgcli.errors import ConfigError, NoStackError, UsageError

Target = Literal["local", "aws"]
TARGETS: Final = ("local", "aws")

DEFAULT_STACK: Final = "default"
LOCAL_DEFAULT_PORT: Final = 4599
LOCAL_HOST: Final = "127.0.0.1"
LOCAL_REGION: Final = "us-east-1"

# Keys a stack table may set that imgcli interprets; every other key is a record kept for
# whoever wrote it (bootstrap's outputs).
SETTING_KEYS: Final = frozenset({"target", "region", "profile", "endpoint_url", "local_port"})

DEFAULT_SOURCE: Final = "imgcli default"
# A None value with this source is deliberate: boto3 resolves it at client creation.
BOTO3_SOURCE: Final = "boto3 (AWS_* variables, ~/.aws/config)"


@dataclass(frozen=True)
class AccessKey:
    """A static AWS access key pair."""

    access_key_id: str
    secret_access_key: str = field(repr=False)


@dataclass(frozen=True)
class Flags:
    """Values given on the command line; ``None`` means the flag was not given."""

    stack: str | None = None
    target: Target | None = None
    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    local_port: int | None = None


@dataclass(frozen=True)
class StackSettings:
    """Everything imgcli needs to reach one stack, and where each value came from."""

    name: str
    target: Target
    region: str | None
    profile: str | None
    endpoint_url: str | None
    local_port: int
    credentials: AccessKey | None
    config_file: Path
    # Bootstrap's record of the stack (it may not exist yet).
    state_file: Path
    # The stack table's other keys, and bootstrap's outputs (bucket, table, api_url, ...).
    records: Mapping[str, Any] = field(default_factory=dict, compare=False)
    # Where each record came from: the stack's table in the file, or the state file.
    record_sources: Mapping[str, str] = field(default_factory=dict, compare=False)
    # Why the stack's resources are gone though nobody destroyed it (a local cloud reset).
    gone: str | None = None
    # Every stack the config file defines, so a mistyped --stack can be pointed out.
    known_stacks: tuple[str, ...] = ()
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def in_config_file(self) -> bool:
        """False for a stack the file does not define (yet): settings are all defaults."""
        return self.name in self.known_stacks

    def record(self, key: str) -> Any:
        """A value bootstrap recorded for this stack; a missing one means no stack yet."""
        if key in self.records:
            return self.records[key]
        if self.gone:
            raise NoStackError(
                f"stack '{self.name}' no longer exists: {self.gone} (its record: "
                f"{self.state_file})",
                hint=f"run 'imgcli --stack {self.name} bootstrap' to create it again",
            )
        found = (
            f"its bootstrap record {self.state_file} has no {key}"
            if self.state_file.exists()
            else f"no bootstrap record at {self.state_file}"
        )
        raise NoStackError(
            f"stack '{self.name}' has not been bootstrapped ({found})",
            hint=f"run 'imgcli --stack {self.name} bootstrap' first",
        )

    def describe(self) -> list[tuple[str, object, str]]:
        """(name, value, source) rows, for people and for ``imgcli config --json``."""
        rows: list[tuple[str, object, str]] = [
            ("stack", self.name, self.sources["stack"]),
            ("target", self.target, self.sources["target"]),
            ("region", self.region, self.sources["region"]),
            ("profile", self.profile, self.sources["profile"]),
            ("endpoint_url", self.endpoint_url, self.sources["endpoint_url"]),
        ]
        if self.target == "local":
            rows.append(("local_port", self.local_port, self.sources["local_port"]))
        if self.credentials is not None:
            rows.append(("access_key_id", self.credentials.access_key_id, DEFAULT_SOURCE))
        rows.extend(
            (key, value, self.record_sources.get(key, f"bootstrap record {self.state_file}"))
            for key, value in sorted(self.records.items())
        )
        rows.append(("config_file", str(self.config_file), self.sources["config_file"]))
        return rows


@dataclass(frozen=True)
class ConfigFile:
    """The parsed, shape-checked config file (empty when the file does not exist)."""

    path: Path
    default_stack: str | None = None
    stacks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def config_path(environ: Mapping[str, str]) -> Path:
    """Where the config file is: ``IMGCLI_CONFIG``, else the platform's user config dir."""
    override = environ.get("IMGCLI_CONFIG")
    if override:
        return Path(override).expanduser()
    # Imported here: only needed when no override is set, and it is not free to import.
    from platformdirs import user_config_dir

    return Path(user_config_dir("imgcli")) / "config.toml"


def read_config_file(path: Path) -> ConfigFile:
    """Read and shape-check the config file; a missing file is an empty configuration."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return ConfigFile(path)
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start})", hint="save it as UTF-8"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message already says "(at line N, column M)".
        raise ConfigError(
            f"{path}: invalid TOML: {exc}", hint="fix that line, or move the file away"
        ) from exc
    return _checked(path, document)


def _checked(path: Path, document: dict[str, Any]) -> ConfigFile:
    def problem(what: str) -> ConfigError:
        return ConfigError(f"{path}: {what}", hint="fix the file, or move it away")

    default_stack = document.get("default_stack")
    if default_stack is not None and not isinstance(default_stack, str):
        raise problem("default_stack must be a string")
    stacks = document.get("stacks", {})
    if not isinstance(stacks, dict):
        raise problem("stacks must be a table of [stacks.<name>] tables")
    for name, entry in stacks.items():
        where = f"[stacks.{name}]"
        if not isinstance(entry, dict):
            raise problem(f"{where} must be a table")
        target = entry.get("target")
        if target is not None and target not in TARGETS:
            raise problem(f"{where} target must be 'local' or 'aws', not {target!r}")
        for key in ("region", "profile", "endpoint_url"):
            if key in entry and not isinstance(entry[key], str):
                raise problem(f"{where} {key} must be a string")
        if "endpoint_url" in entry:
            _check_endpoint(entry["endpoint_url"], f"{path}: {where} endpoint_url")
        port = entry.get("local_port")
        if port is not None and (
            isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536
        ):
            raise problem(f"{where} local_port must be a port number (1-65535)")
    return ConfigFile(path, default_stack, stacks)


def resolve_stack(
    flags: Flags,
    environ: Mapping[str, str],
    *,
    local_key: bool = True,
    local_cloud_port: Callable[[], int | None] | None = None,
) -> StackSettings:
    """Decide the selected stack's settings from flags, environment, file and defaults.

    ``local_key=False`` leaves a local stack's credentials out (``None``) rather than read
    the local cloud's key pair: ``imgcli local reset`` must work when it cannot be read.
    ``local_cloud_port`` says where this data dir's local cloud was started (None: not
    started); asked only for a local stack whose port nothing else sets.
    """
    path = config_path(environ)
    file = read_config_file(path)
    sources: dict[str, str] = {
        "config_file": "env IMGCLI_CONFIG" if environ.get("IMGCLI_CONFIG") else DEFAULT_SOURCE
    }

    def env(name: str) -> tuple[str | None, str]:
        # An empty variable counts as unset, as in most tools: `IMGCLI_STACK= imgcli ...`.
        return environ.get(name) or None, f"env {name}"

    name, sources["stack"] = _first(
        (flags.stack, "flag --stack"),
        env("IMGCLI_STACK"),
        (file.default_stack, f"file {path.name} default_stack"),
        (DEFAULT_STACK, DEFAULT_SOURCE),
    )
    assert name is not None
    _check_stack_name(name, sources["stack"])
    entry = file.stacks.get(name, {})
    in_file = f"file [stacks.{name}]"
    # What bootstrap recorded: where the stack was actually created wins over defaults.
    from imgcli.infra.state import StackState, state_path

    state_file = state_path(name, environ)
    recorded = StackState.load(state_file)
    in_state = f"bootstrap record {state_file}"

    chosen_target, sources["target"] = _first(
        (flags.target, "flag --target"),
        (entry.get("target"), in_file),
        (recorded.target if recorded else None, in_state),
        ("local", DEFAULT_SOURCE),
    )
    # Narrowed for the type checker; _checked already rejected anything else in the file.
    target: Target = "aws" if chosen_target == "aws" else "local"
    local = target == "local"

    region, sources["region"] = _first(
        (flags.region, "flag --region"),
        env("IMGCLI_REGION"),
        (entry.get("region"), in_file),
        (recorded.region if recorded else None, in_state),
        (LOCAL_REGION if local else None, DEFAULT_SOURCE if local else BOTO3_SOURCE),
    )
    if local and region != LOCAL_REGION:
        raise UsageError(
            f"stack '{name}' is local, and the local cloud has one region, {LOCAL_REGION}: "
            f"region {region} ({sources['region']}) cannot apply to it",
            hint="leave the region out for a local stack, or use a stack with target = 'aws'",
        )

    if local:
        # The local cloud accepts only its own key, so a profile would change nothing.
        profile, sources["profile"] = None, "not used by a local stack"
    else:
        profile, sources["profile"] = _first(
            (flags.profile, "flag --profile"),
            env("IMGCLI_PROFILE"),
            (entry.get("profile"), in_file),
            (None, BOTO3_SOURCE),
        )

    port_text, port_source = env("IMGCLI_LOCAL_PORT")
    local_port, sources["local_port"] = _first(
        (flags.local_port, "flag --port"),
        (_port_from_env(port_text) if port_text else None, port_source),
        (entry.get("local_port"), in_file),
    )
    if local_port is None:
        running = local_cloud_port() if local and local_cloud_port is not None else None
        local_port, sources["local_port"] = _first(
            (running, "the local cloud started from this data dir"),
            (LOCAL_DEFAULT_PORT, DEFAULT_SOURCE),
        )
    assert local_port is not None

    endpoint_url, sources["endpoint_url"] = _first(
        (flags.endpoint_url, "flag --endpoint-url"),
        env("IMGCLI_ENDPOINT_URL"),
        (entry.get("endpoint_url"), in_file),
        (
            f"http://{LOCAL_HOST}:{local_port}" if local else None,
            DEFAULT_SOURCE if local else BOTO3_SOURCE,
        ),
    )
    if endpoint_url is not None:
        _check_endpoint(endpoint_url, sources["endpoint_url"])

    from_file = {k: v for k, v in entry.items() if k not in SETTING_KEYS}
    outputs = recorded.outputs if recorded else {}
    records = {**from_file, **outputs}
    record_sources = {
        **dict.fromkeys(from_file, in_file),
        **dict.fromkeys(outputs, in_state),
    }
    if local and endpoint_url is not None and "api_id" in records:
        # The URL follows the local cloud's current port, whatever it was at bootstrap.
        from imgcli.localcloud import api_url

        records["api_url"] = api_url(endpoint_url, str(records["api_id"]))

    return StackSettings(
        name=name,
        target=target,
        region=region,
        profile=profile,
        endpoint_url=endpoint_url,
        local_port=local_port,
        credentials=local_access_key(environ) if local and local_key else None,
        config_file=path,
        state_file=state_file,
        records=MappingProxyType(records),
        record_sources=MappingProxyType(record_sources),
        gone=recorded.gone if recorded else None,
        known_stacks=tuple(sorted(file.stacks)),
        sources=MappingProxyType(sources),
    )


def local_access_key(environ: Mapping[str, str]) -> AccessKey:
    """The local cloud's key pair for this data dir, made on first use (0600, owner only)."""
    from imgcli.localcloud.secret import load_or_create, local_cloud_dir

    key = load_or_create(local_cloud_dir(environ))
    return AccessKey(key.access_key_id, key.secret_access_key)


T = TypeVar("T")


def _first(*candidates: tuple[T | None, str]) -> tuple[T | None, str]:
    for value, source in candidates:
        if value is not None:
            return value, source
    return None, candidates[-1][1]


def _check_stack_name(name: str, source: str) -> None:
    from imgcli.infra.errors import InvalidStackName
    from imgcli.infra.names import check_stack_name

    if not name:
        raise UsageError(
            f"the stack name is empty ({source})",
            hint="name a stack (for example --stack dev), or leave it out for the default stack",
        )
    try:
        check_stack_name(name)
    except InvalidStackName as exc:
        raise UsageError(f"{exc.message} ({source})", hint=exc.hint) from None


def _port_from_env(text: str) -> int:
    if text.isdigit() and 0 < int(text) < 65536:
        return int(text)
    raise ConfigError(
        f"IMGCLI_LOCAL_PORT must be a port number (1-65535), not {text!r}",
        hint="fix or unset IMGCLI_LOCAL_PORT",
    )


def _check_endpoint(url: str, where: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ConfigError(
            f"{where}: endpoint_url must be an http(s) URL, not {url!r}",
            hint="for example http://127.0.0.1:4599",
        )
