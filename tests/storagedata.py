"""What the storage handler tests share: the stack's desired resources, moto clients made
per region, a ``sleep`` that must not be called, and the bucket's lifecycle rules."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import boto3

from imgcli.infra.names import StackNames
from imgcli.infra.resources import FunctionCode, Kind, Resource, StackOptions, desired_stack

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"

Clients = Callable[[str], Any]


def desired(kind: Kind, region: str = REGION) -> Resource:
    stack = desired_stack(
        StackNames("t1", ACCOUNT, region),
        StackOptions(),
        FunctionCode(b"zip", "sha", "python3.13"),
    )
    return next(r for r in stack if r.kind is kind)


def never_sleep(seconds: float) -> None:
    raise AssertionError(f"nothing here should wait, yet it slept {seconds} s")


def changed(resource: Resource, setting: str, value: Any) -> Resource:
    return dataclasses.replace(resource, settings={**resource.settings, setting: value})


def clients_in(region: str) -> Clients:
    made: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in made:
            made[service] = boto3.client(service, region_name=region)
        return made[service]

    return client


BUCKET_RULES = desired(Kind.BUCKET).settings["lifecycle"]
#: The rule that also removes delete markers left alone once their versions expired.
EXPIRE_NONCURRENT_AND_MARKERS = {
    "ID": "expire-noncurrent-versions",
    "Status": "Enabled",
    "Filter": {"Prefix": ""},
    "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
    "Expiration": {"ExpiredObjectDeleteMarker": True},
}
