"""Where a request to the local cloud goes: decided once, on the raw path.

The local cloud serves four kinds of request on one port: its health check, a stack's
HTTP API under ``/_api/<apiId>/``, moto's own ``/moto-api/`` (its recorder, seed, reset
and replay: never reachable), and the AWS APIs. Deciding that twice, once on the raw
path and once on a decoded one, is how an unsigned ``PUT /_apiprobe`` created a bucket
(the gate saw ``/_api``, the HTTP API did not) and how ``/%5Fapi/...`` slipped past. So
:func:`route` decides once, on the request target exactly as the client sent it
(werkzeug's ``REQUEST_URI``), and the HTTP API takes the ``ApiCall`` it found
(``API_CALL_KEY`` in the environ) instead of deciding again.

moto itself still dispatches on the decoded ``PATH_INFO`` (``/%6Doto-api/`` reaches its
recorder there). A request whose decoded path would be routed differently from its raw
one is therefore refused outright: no client needs to percent-encode ``_`` or ``m``.
Request targets in absolute form, ``*``, or with a ``#`` are refused too: clients send
none of them to a server, and ``urlsplit`` (which werkzeug uses to build ``PATH_INFO``)
reads them differently from the plain split used here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final
from urllib.parse import unquote

from imgcli.localcloud import API_PATH_PREFIX
from imgcli.localcloud.health import HEALTH_PATH

#: Where the gate leaves the ``ApiCall`` of a request it routed to the HTTP API.
API_CALL_KEY: Final = "imgcli.api_call"
#: moto's own API (``moto.moto_server``: any path *starting* with this goes there).
MOTO_API_PREFIX: Final = "/moto-api"
#: imgcli's own endpoints; only the health check exists.
IMGCLI_PREFIX: Final = "/_imgcli"
#: Where moto's request handler keeps the names of headers with ``_`` it preserved (S3
#: metadata such as ``x-amz-meta-my_key``; werkzeug drops them): moto 5.2.5's
#: ``PRESERVED_HEADER_NAMES_ENVIRON_KEY``, checked by ``gate_services``.
PRESERVED_HEADER_NAMES: Final = "moto.preserved_header_names"


class Destination(Enum):
    HEALTH = "health"
    API = "api"
    AWS = "aws"
    REFUSED = "refused"


@dataclass(frozen=True)
class ApiCall:
    """A request for a stack's HTTP API: the API, and the path within it."""

    api_id: str
    #: The path within the API (``/images/a.jpg``), still percent-encoded.
    raw_path: str
    raw_query: str
    #: The whole path as sent, which is what the client signed.
    signed_path: str


@dataclass(frozen=True)
class Route:
    destination: Destination
    #: The path and query exactly as sent (empty when the target could not be read).
    raw_path: str
    raw_query: str
    api_call: ApiCall | None = None
    #: Why a ``REFUSED`` request is refused.
    reason: str = ""


def route(environ: Mapping[str, Any]) -> Route:
    """The one routing decision for the request ``environ`` describes."""
    target = environ.get("REQUEST_URI") or environ.get("RAW_URI")
    if not isinstance(target, str) or not target:
        return Route(Destination.REFUSED, "", "", reason="the request target is unknown")
    if not target.startswith("/") or "#" in target:
        return Route(
            Destination.REFUSED, "", "", reason="the request target must be a path ('/...')"
        )
    raw_path, _, raw_query = target.partition("?")
    destination = _destination(raw_path)
    if destination != _destination(unquote(raw_path)):
        return Route(
            Destination.REFUSED,
            raw_path,
            raw_query,
            reason="the path means something else once percent-decoded",
        )
    if destination is Destination.REFUSED:
        return Route(destination, raw_path, raw_query, reason="no such endpoint")
    if destination is Destination.API:
        api_id, slash, rest = raw_path.removeprefix(API_PATH_PREFIX + "/").partition("/")
        call = ApiCall(api_id, slash + rest, raw_query, signed_path=raw_path)
        return Route(destination, raw_path, raw_query, api_call=call)
    return Route(destination, raw_path, raw_query)


def _destination(path: str) -> Destination:
    if path == HEALTH_PATH:
        return Destination.HEALTH
    if path.startswith(API_PATH_PREFIX + "/"):
        return Destination.API
    if path.startswith((MOTO_API_PREFIX, IMGCLI_PREFIX)):
        return Destination.REFUSED
    return Destination.AWS


def request_headers(environ: Mapping[str, Any]) -> dict[str, str]:
    """The request's headers by lower-case name as the client sent it, values as sent."""
    preserved = environ.get(PRESERVED_HEADER_NAMES)
    original = preserved if isinstance(preserved, Mapping) else {}
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key in original:
            name = str(original[key]).lower()
        elif key.startswith("HTTP_"):
            name = key[5:].lower().replace("_", "-")
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            name = key.lower().replace("_", "-")
        else:
            continue
        headers[name] = wsgi_text(str(value))
    return headers


def wsgi_text(value: str) -> str:
    """WSGI hands header bytes over as latin-1; clients that send non-ASCII send UTF-8."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value
