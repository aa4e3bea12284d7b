"""What the snapshot test files share: a client of the in-process moto, and snapshot edits.

``KEY`` authenticates the tests' snapshots. ``rewrite_header`` and ``rewrite_body``
change a saved snapshot the way another moto or format would have written it, with a
valid HMAC: they stand for an authentic snapshot the checks after the HMAC must refuse.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import boto3
from moto.core.base_backend import BackendDict

from tests.conftest import FAKE_REGION

ACCOUNT = "123456789012"
KEY = b"the tests' snapshot key, 32 byte"


def client(service: str, endpoint_url: str | None = None) -> Any:
    return boto3.client(service, region_name=FAKE_REGION, endpoint_url=endpoint_url)


def wipe_moto() -> None:
    """What a fresh process starts with: moto holding nothing."""
    BackendDict.reset()


def rewrite_header(path: Path, **changes: Any) -> None:
    magic, _, header, body = path.read_bytes().split(b"\n", 3)
    _write(path, magic, json.loads(header) | changes, body)


def rewrite_body(path: Path, body: bytes) -> None:
    magic, _, header, _ = path.read_bytes().split(b"\n", 3)
    _write(path, magic, json.loads(header) | {"body_bytes": len(body)}, body)


def _write(path: Path, magic: bytes, fields: dict[str, Any], body: bytes) -> None:
    header = json.dumps(fields, sort_keys=True).encode() + b"\n"
    mac = hmac.new(KEY, header + body, hashlib.sha256).hexdigest().encode()
    path.write_bytes(magic + b"\n" + mac + b"\n" + header + body)
