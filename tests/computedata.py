"""What the compute handler tests share: the stack's desired resources built around a
tiny zip, a recorded ``sleep``, moto clients, and the round-trip check."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import zipfile
from typing import Any

import boto3

from imgcli.infra.handlers import ResourceHandler, resolved
from imgcli.infra.names import StackNames
from imgcli.infra.resources import FunctionCode, Kind, Resource, StackOptions, desired_stack

REGION = "us-east-1"
NAMES = StackNames("t1", "123456789012", REGION)  # moto's default account


def make_zip(body: str = "") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("lambdas/__init__.py", body)
    return buffer.getvalue()


def lambda_sha256(data: bytes) -> str:
    """What Lambda reports as ``CodeSha256``: base64 of the SHA-256 digest."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


ZIP = make_zip()
STACK = desired_stack(NAMES, StackOptions(), FunctionCode(ZIP, lambda_sha256(ZIP), "python3.13"))


def desired(kind: Kind) -> list[Resource]:
    return [resource for resource in STACK if resource.kind is kind]


def changed(resource: Resource, setting: str, value: Any, payload: bytes | None = None) -> Resource:
    settings = {**resource.settings, setting: value}
    return dataclasses.replace(
        resource, settings=settings, payload=payload if payload else resource.payload
    )


class Sleeps(list[float]):
    """Records each sleep instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client_factory(service: str) -> Any:
    return boto3.client(service, region_name=REGION)


def assert_reads_back(handler: ResourceHandler, resource: Resource, refs: dict[str, str]) -> None:
    observed = handler.read(resource.name)
    assert observed is not None
    assert observed.settings == resolved(resource.settings, refs)


def create_all(handlers: dict[Kind, ResourceHandler], kind: Kind, refs: dict[str, str]) -> None:
    for resource in desired(kind):
        refs.update(handlers[kind].create(resource, refs))
