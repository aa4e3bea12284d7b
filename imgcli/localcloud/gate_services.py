"""What the gate knows about the services behind it: which exist, and how big a request may be.

**Which services.** (And one more moto internal: where moto's request handler keeps the
original names of S3 metadata headers with ``_``, which the signature covers.) A
credential scope names a service (``s3``, ``dynamodb``...), and moto
dispatches a signed request by that name (``DomainDispatcherApplication``: the scope's
service, through its ``SIGNING_ALIASES``, becomes a host name matched against every
backend's URL patterns). :func:`moto_serves` answers the same way, so a scope the gate
accepts is one moto has a backend for; moto's own API (``moto_api``) and the instance
metadata endpoint are not services, and ``execute-api`` is the HTTP API's, served under
``/_api/`` and never by moto. These are moto internals: :func:`check_moto_internals` (a
test runs it) fails loudly when an upgrade moves them.

**How big.** AWS caps each API's request body; the local cloud caps them near AWS's
limits so that a request AWS would refuse is refused here too, and so the gate (which
reads a body into memory to check its hash) never reads an unbounded one:

===============================  ================================================
S3 object upload (PUT, part)     5 GiB, S3's largest single PUT (``EntityTooLarge``)
S3, anything else                10 MiB (policies, tagging, DeleteObjects' 1,000 keys)
DynamoDB                         16 MiB (BatchWriteItem's request limit)
Lambda                           70 MiB (a 50 MB zip uploaded directly, base64 in JSON)
SQS, CloudWatch Logs             2 MiB (a 1 MiB message or log batch, and its encoding)
IAM, STS                         1 MiB (their documents are kilobytes)
anything else                    10 MiB
===============================  ================================================

S3 object keys are at most 1,024 bytes of UTF-8, as on AWS (``KeyTooLongError``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import unquote, unquote_to_bytes

from imgcli.localcloud import MotoInternalsChanged
from imgcli.localcloud.gate_routing import PRESERVED_HEADER_NAMES
from imgcli.localcloud.sigv4 import EXECUTE_API

MIB: Final = 1024 * 1024
#: S3's largest single PUT (PutObject, UploadPart): 5 GiB.
MAX_OBJECT_BYTES: Final = 5 * 1024 * MIB
#: aws-chunked framing adds under 1 % to a body (at least 8 KiB per chunk, ~90 bytes each).
MAX_FRAMING_BYTES: Final = MAX_OBJECT_BYTES // 64
MAX_KEY_BYTES: Final = 1024
DEFAULT_MAX_BODY: Final = 10 * MIB
MAX_BODY_BYTES: Final[Mapping[str, int]] = {
    "s3": 10 * MIB,
    "dynamodb": 16 * MIB,
    "lambda": 70 * MIB,
    "sqs": 2 * MIB,
    "logs": 2 * MIB,
    "iam": MIB,
    "sts": MIB,
}
#: moto's backends that answer no AWS API.
NOT_SERVICES: Final = frozenset({"moto_api", "moto_api._internal", "instance_metadata"})
#: Query parameters an object upload may carry (a part's, botocore's and presigning's).
_UPLOAD_PARAMETERS: Final = frozenset({"partNumber", "uploadId", "x-id"})


@functools.cache
def moto_serves(service: str) -> bool:
    """Whether moto 5.2.5 has a backend for requests signed for ``service``."""
    if service == EXECUTE_API:
        return False
    backend = _backend_for(service)
    return backend is not None and backend not in NOT_SERVICES


def _backend_for(service: str) -> str | None:
    from moto.backend_index import backend_url_patterns
    from moto.moto_server.werkzeug_app import SIGNING_ALIASES

    name = SIGNING_ALIASES.get(service, service)
    # The host moto makes for a region of ours; which region does not change the answer.
    host = f"http://{name}.us-east-1.amazonaws.com"
    for backend, pattern in backend_url_patterns:
        if pattern.match(host):
            return str(backend)
    return None


def max_body_bytes(service: str) -> int:
    return MAX_BODY_BYTES.get(service, DEFAULT_MAX_BODY)


def s3_object_key(raw_path: str) -> bytes | None:
    """The object key of a path-style S3 request (``/bucket/key``) as UTF-8 bytes, or
    ``None`` when the request names only a bucket (or nothing)."""
    bucket, slash, key = raw_path.lstrip("/").partition("/")
    if not bucket or not slash or not key:
        return None
    return unquote_to_bytes(key)


def is_object_upload(method: str, raw_path: str, raw_query: str) -> bool:
    """PutObject or UploadPart (not a copy: its body is empty), whose body is an object's."""
    if method != "PUT" or s3_object_key(raw_path) is None:
        return False
    names = {unquote(part.partition("=")[0]) for part in raw_query.split("&") if part}
    return all(name in _UPLOAD_PARAMETERS or name.startswith("X-Amz-") for name in names)


def check_moto_internals() -> None:
    """Fail loudly, naming what moved, if the moto internals used here are not as expected."""
    problems: list[str] = []
    try:
        from moto.backend_index import backend_url_patterns
        from moto.core import request
        from moto.moto_server.werkzeug_app import SIGNING_ALIASES
    except ImportError as error:
        raise MotoInternalsChanged(
            f"imgcli's gate needs moto's dispatch tables: {error}"
        ) from error
    preserved = getattr(request, "PRESERVED_HEADER_NAMES_ENVIRON_KEY", None)
    if preserved != PRESERVED_HEADER_NAMES:
        problems.append(
            "moto keeps the names of headers with '_' under "
            f"{preserved!r}, not {PRESERVED_HEADER_NAMES!r}"
        )
    patterns: Any = backend_url_patterns
    if not isinstance(SIGNING_ALIASES, dict):
        problems.append("moto.moto_server.werkzeug_app.SIGNING_ALIASES is no longer a dict")
    if not isinstance(patterns, list) or not all(
        isinstance(entry, tuple) and len(entry) == 2 and hasattr(entry[1], "match")
        for entry in patterns
    ):
        problems.append("moto.backend_index.backend_url_patterns is no longer (name, regex) pairs")
    else:
        for service, backend in (("s3", "s3"), ("dynamodb", "dynamodb"), ("lambda", "awslambda")):
            if _backend_for(service) != backend:
                problems.append(f"moto no longer maps the {service} scope to its {backend} backend")
    if problems:
        raise MotoInternalsChanged(
            "imgcli's gate needs moto internals that moved: " + "; ".join(problems)
        )
