"""What the snapshot test files share: a client of the in-process moto, and snapshot edits.

``rewrite_header`` and ``rewrite_body`` change a saved snapshot the way a damaged file, an
older format or another moto would have left it, keeping the header's checks consistent
where the test needs them to be.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import boto3
from moto.core.base_backend import BackendDict

from tests.conftest import FAKE_REGION

ACCOUNT = "123456789012"


def client(service: str, endpoint_url: str | None = None) -> Any:
    return boto3.client(service, region_name=FAKE_REGION, endpoint_url=endpoint_url)


def wipe_moto() -> None:
    """What a fresh process starts with: moto holding nothing."""
    BackendDict.reset()


def rewrite_header(path: Path, **changes: Any) -> None:
    magic, header, body = path.read_bytes().split(b"\n", 2)
    fields = json.loads(header) | changes
    path.write_bytes(magic + b"\n" + json.dumps(fields).encode() + b"\n" + body)


def rewrite_body(path: Path, body: bytes) -> None:
    magic, header, _ = path.read_bytes().split(b"\n", 2)
    fields = json.loads(header) | {
        "body_bytes": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
    }
    path.write_bytes(magic + b"\n" + json.dumps(fields).encode() + b"\n" + body)
