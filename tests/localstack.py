"""A local cloud and a bootstrapped stack of a test module's own, for end-to-end tests.

Each module gets its own data dir, config file and free port, so modules never share
state and never touch a developer's own local cloud on the default port.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from botocore.credentials import Credentials

from imgcli.config import LOCAL_REGION
from imgcli.gallery_api import GalleryApi
from imgcli.localcloud import process
from imgcli.localcloud.secret import SECRET_FILE, local_cloud_dir

REPO = Path(__file__).resolve().parents[1]
#: The key pair every test's local cloud is given (its secret new for each test run), so
#: tests can sign requests as its owner; how a local cloud makes its own is tested apart.
KEY, SECRET = "LKIATESTS0000000000A", secrets.token_urlsafe(30)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def local_cloud_env(base: Path, stack: str, **extra: str) -> Iterator[dict[str, str]]:
    """The environment of a stack on a private local cloud; the cloud stops at exit."""
    env = cloud_environment(base, stack, **extra)
    give_owner_key(env, KEY, SECRET)
    try:
        yield env
    finally:
        process.stop(int(env["IMGCLI_LOCAL_PORT"]), env)


def cloud_environment(base: Path, stack: str, **extra: str) -> dict[str, str]:
    """The environment of a stack on a local cloud of its own (data dir under ``base``, a
    free port), without AWS's or imgcli's variables of this process; creates nothing."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IMGCLI_"))},
        "IMGCLI_DATA_DIR": str(base / "data"),
        "IMGCLI_CONFIG": str(base / "config.toml"),
        "IMGCLI_LOCAL_PORT": str(free_port()),
        "IMGCLI_STACK": stack,
        **extra,
    }


def give_owner_key(env: dict[str, str], key: str, secret: str) -> None:
    """Install ``key``/``secret`` as the owner's key of the environment's local cloud."""
    directory = local_cloud_dir(env)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / SECRET_FILE
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump({"access_key_id": key, "secret_access_key": secret}, file)


def run_imgcli(
    env: dict[str, str], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``imgcli ARGS`` in a subprocess, as a script would run it (stdin not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "imgcli", *args],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def bootstrap(env: dict[str, str]) -> dict[str, Any]:
    """Bootstrap the environment's stack; its description."""
    created = run_imgcli(env, "bootstrap", "--json")
    assert created.returncode == 0, created.stderr
    description: dict[str, Any] = json.loads(created.stdout)
    return description


def local_client(stack: dict[str, Any], service: str) -> Any:
    """A plain boto3 client for the stack's local cloud, with its credentials."""
    return boto3.client(
        service,
        endpoint_url=stack["endpoint_url"],
        region_name=LOCAL_REGION,
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
    )


def api_of(stack: dict[str, Any]) -> GalleryApi:
    """The stack's API as the owner calls it (signed with the local cloud's test key)."""
    return GalleryApi(stack["api_url"], Credentials(KEY, SECRET), LOCAL_REGION)


def eventually(check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Return once ``check()`` is true, polling every 0.1 s; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout_s} s")


def failed_queue_depth(stack: dict[str, Any]) -> tuple[int, int]:
    """The stack's failed-events queue: (messages visible, messages held by a reader)."""
    sqs = local_client(stack, "sqs")
    url = sqs.get_queue_url(QueueName=stack["failed_events_queue"])["QueueUrl"]
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


def create_http_api(apis: Any, name: str, function_arn: str, routes: dict[str, str]) -> str:
    """An HTTP API in moto whose ``routes`` (route key: authorization type) all call
    ``function_arn`` through a payload 2.0 proxy integration, with a ``$default`` stage;
    its id. ``apis`` is an ``apigatewayv2`` client."""
    api_id: str = apis.create_api(Name=name, ProtocolType="HTTP")["ApiId"]
    integration_id = apis.create_integration(
        ApiId=api_id,
        IntegrationType="AWS_PROXY",
        IntegrationUri=function_arn,
        PayloadFormatVersion="2.0",
    )["IntegrationId"]
    for route_key, authorization in routes.items():
        apis.create_route(
            ApiId=api_id,
            RouteKey=route_key,
            AuthorizationType=authorization,
            Target=f"integrations/{integration_id}",
        )
    apis.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)
    return api_id


def aws_cli() -> str | None:
    """The AWS CLI: the benchmark's own (``make bench`` installs it), else one on PATH."""
    bench = REPO / "benchmarks" / ".venv-awscli" / "bin" / "aws"
    return str(bench) if bench.exists() else shutil.which("aws")
