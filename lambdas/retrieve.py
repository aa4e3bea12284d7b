"""The retrieve function: serves the image index as JSON behind the HTTP API.

Routes (API Gateway HTTP API, payload format 2.0, AWS_IAM authorization):

* ``GET /images`` — one page of images, sorted by key. Query parameters: ``limit``
  (1-1000, default 100), ``cursor`` (opaque, from the previous page's ``next_cursor``),
  ``prefix`` (key prefix), ``status`` (``active``, the default, or ``invalid``). The body
  is ``{"items": [...], "next_cursor": "..." | null}``; ``null`` means nothing follows.
* ``GET /images/{key+}`` — one image's record; 404 when absent, deleted or expired. An
  invalid image is returned as it is (``status: "invalid"`` and a ``reason``).

``handler`` is the deployed shell: it builds the DynamoDB client once per warm runtime
(on the first call, never at import, so moto can start first) and calls :func:`respond`,
which takes the client as an argument and holds all the behaviour.

How HTTP API presents the request, and what this module relies on:

* **Routing uses ``routeKey``** (``"GET /images/{key+}"``), the route API Gateway matched.
  It is independent of the stage and of custom-domain API mappings. ``rawPath`` is not:
  for a named (non-``$default``) stage it starts with ``/{stage}`` (powertools-lambda-python
  issue #621, serverless-wsgi #191; the ``$default`` stage adds nothing, kumo #871), and
  with a custom domain it lacks the API mapping (AWS, "Create AWS Lambda proxy
  integrations for HTTP APIs", payload format differences).
* **The key comes from ``pathParameters["key"]``**, used exactly as given. HTTP API
  percent-decodes path parameters once (powertools-lambda-python #1098: ``Chester%20Mall``
  arrives as ``Chester Mall``), and path decoding is plain percent-decoding, so a ``+``
  stays a plus (serverless-offline #638 shows it for API Gateway path parameters);
  decoding again would corrupt every key that contains ``%`` or ``+``. ``rawPath`` is no
  better source: despite its name HTTP API delivers it decoded too (a request for
  ``/a%2Fb`` arrives as ``rawPath: "/a/b"``, fastify/aws-lambda-fastify #169;
  middleapi/standard-server #93), so it carries the stage problem above and no extra
  information. Clients therefore percent-encode each key once (``quote(key, safe="/")``);
  ``/`` may stay literal because the greedy ``{key+}`` spans segments. Unverified here:
  standard-server #93 reports HTTP API truncating a path at a decoded ``?``; a key with
  ``?`` belongs in an end-to-end test against real AWS.
* **Query parameters come from ``rawQueryString``**, form-decoded here (``+`` is a space,
  as ``urllib.parse.urlencode`` writes it). ``queryStringParameters`` joins repeated
  parameters with commas, which makes ``prefix=a,b`` and ``prefix=a&prefix=b``
  indistinguishable; from the raw string a repeated parameter is a clear 400. Unknown
  parameters are a 400 too (a misspelt ``prefx`` must not silently list everything),
  except ``X-Amz-*`` ones, which a pre-signed request carries.

Listing decisions:

* A Query on the ``status`` GSI (``records.STATUS_INDEX``), ``begins_with`` on the key for
  a prefix, and a filter that drops items whose ``expires_at`` has passed (TTL deletion
  lags by up to days). A filter can make DynamoDB pages short, so the function queries
  until it has ``limit`` items or the index ends. It asks DynamoDB for one item more than
  it needs: seeing that item proves there is a next page without an extra round trip.
  After a short page the next request reads twice as many, so a run of expired items
  costs a few round trips, not hundreds; after ``MAX_QUERIES_PER_REQUEST`` it returns what
  it has, so a pathological table cannot run into the Lambda or API timeout.
* ``next_cursor`` marks what this page has *consumed*: the last item returned, or, when
  the query budget ran out at a page boundary, DynamoDB's ``LastEvaluatedKey`` (everything
  up to it was returned or filtered out). Never a key past an item not returned, so pages
  have no gaps and no duplicates. ``null`` only when the index is exhausted.
* The body stops growing at about ``MAX_BODY_BYTES``: with 1 KB keys and their URLs a page
  of 1000 could otherwise pass the limits of Lambda (6 MB) and of the API.

Links (presigned URLs), so a client can show an image without AWS credentials of its own:

* Every item of both routes carries ``"urls": {"image": URL, "256": URL, "1024": URL}``
  and ``"urls_expire_at"`` (ISO 8601 UTC, ``...Z``). ``image`` is the key's current object
  in ``BUCKET_NAME`` (no ``versionId``: the record may lag a new upload by a moment, and
  the current image is what a viewer wants); ``"256"`` and ``"1024"`` are the record's
  thumbnails (``record.thumbnails``) in ``THUMBNAILS_BUCKET``, present only when the
  record has them (an invalid image, or one whose thumbnails failed, has ``image`` only).
  In the items, not on a route of their own: a gallery page needs a URL for every item it
  lists, and one round trip per item would cost more than signing does.
* Each link signs the response headers it serves (``item_links``' docstring): the image
  type detected from the bytes, inline, for an active image; a download
  (``application/octet-stream``, ``attachment``) for anything else, so an object stored
  as ``text/html`` never opens as a page; thumbnails as ``image/webp``.
* Valid for ``URL_EXPIRES_S`` seconds (default 900, at most 604,800), all URLs of a
  response dated alike. Signed with the function's own credentials (its role's session,
  so each URL carries ``X-Amz-Security-Token`` and also stops working when that session
  ends; Lambda's last longer than the expiry), SigV4 query signing with
  ``UNSIGNED-PAYLOAD``, at the S3 client's endpoint and addressing style (path-style on
  the local cloud's 127.0.0.1, virtual-hosted on AWS). The role may ``s3:GetObject`` on
  the two buckets' objects and nothing more, so a URL opens exactly one image.
* Signed by ``presign`` (a few µs per URL), not by botocore's ``generate_presigned_url``
  (about 200 µs, over 4 s for a page of 3,000 URLs on a 256 MB function's share of a
  vCPU); botocore still decides each bucket's endpoint, once per runtime.
* A function whose environment lacks ``BUCKET_NAME`` or ``THUMBNAILS_BUCKET`` (a stack
  not bootstrapped since) lists items without ``urls`` and logs a warning per request,
  rather than failing: a listing is still what ``imgcli list`` and ``reconcile`` need.
* URLs make an item about 4 KB bigger (three URLs with a session token), so the body
  budget is ``MAX_BODY_BYTES`` = 2.5 MB: a page of 1,000 such items with short keys still
  fits, and even a body of nothing but escaped characters stays under Lambda's 6 MB.

Errors are ``{"error": {"code", "message"}}`` with a 4xx status; nothing a client sends
(and no malformed event) yields a 500. A DynamoDB failure propagates: the API answers 5xx,
which is true. One JSON log line per request records route, status code and item count.
"""

from __future__ import annotations

import functools
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl

from . import cursor, presign, records
from .item_links import ItemLinks, SignedLinks, links_from_environment
from .logs import JsonLogger

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
MAX_BODY_BYTES: Final = 2_500_000
MAX_QUERIES_PER_REQUEST: Final = 10
LISTABLE_STATUSES: Final = ("active", "invalid")

LIST_ROUTE: Final = "/images"
GET_ROUTE: Final = "/images/{key+}"
KEY_PARAMETER: Final = "key"
_QUERY_PARAMETERS: Final = frozenset({"limit", "cursor", "prefix", "status"})
#: Room left in the body budget for the envelope and the longest cursor.
_ENVELOPE_BYTES: Final = 2048
_LIMIT_PATTERN: Final = re.compile(r"[0-9]{1,4}")
_HEADERS: Final = {"content-type": "application/json", "cache-control": "no-store"}

LOGGER: Final = JsonLogger("retrieve")


class RequestError(Exception):
    """The request cannot be served as sent; becomes a 4xx JSON error response."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class Runtime:
    """What a warm runtime builds once: clients, table, cursor secret, URL signing."""

    dynamodb: Any
    table_name: str
    secret: bytes
    #: ``None`` when the environment cannot say which buckets to sign for.
    links: SignedLinks | None
    #: Said in a log line with every request: what is wrong with the configuration.
    warnings: tuple[str, ...]


def handler(event: Any, context: Any) -> dict[str, Any]:
    """The Lambda entry point (``lambdas.retrieve.handler``)."""
    request_id = getattr(context, "aws_request_id", None)
    LOGGER.request_id = request_id if isinstance(request_id, str) else None
    runtime = _runtime()
    for warning in runtime.warnings:
        LOGGER.warning(warning)
    now = int(time.time())
    links = runtime.links.at(now) if runtime.links is not None else None
    return respond(
        event, runtime.dynamodb, runtime.table_name, secret=runtime.secret, now=now, links=links
    )


@functools.cache
def _runtime() -> Runtime:
    """Built on the first invocation of a runtime (never at import, so moto starts first)."""
    import boto3
    from botocore.config import Config

    table_name = os.environ.get("TABLE_NAME")
    if not table_name:
        raise RuntimeError("TABLE_NAME is not set in the function's environment")
    # API Gateway gives up after 30 s; a stuck connection must fail well before that.
    config = Config(retries={"mode": "standard"}, connect_timeout=3, read_timeout=10)
    session = boto3.session.Session()
    dynamodb = session.client("dynamodb", config=config)

    def credentials() -> presign.Credentials:
        frozen = session.get_credentials().get_frozen_credentials()
        return presign.Credentials(frozen.access_key, frozen.secret_key, frozen.token)

    def s3() -> Any:
        return session.client("s3", config=Config(signature_version="s3v4"))

    links, warnings = links_from_environment(os.environ, s3, credentials)
    return Runtime(dynamodb, table_name, cursor.secret_for(table_name, os.environ), links, warnings)


def respond(
    event: Any,
    dynamodb: Any,
    table_name: str,
    *,
    secret: bytes,
    now: int,
    logger: JsonLogger = LOGGER,
    links: ItemLinks | None = None,
) -> dict[str, Any]:
    """The payload 2.0 response to ``event``; ``now`` (epoch seconds) decides expiry;
    ``links`` signs each item's ``urls`` (``None``: items carry none)."""
    log_fields = {
        "route": _printable(_field(event, "routeKey")),
        "method": _printable(_method(event)),
        "api_request_id": _printable(_field(event, "requestContext", "requestId")),
    }
    try:
        body, count = _serve(event, dynamodb, table_name, secret=secret, now=now, links=links)
        response = _response(200, body)
    except RequestError as error:
        count = 0
        log_fields["error_code"] = error.code
        response = _response(
            error.status, {"error": {"code": error.code, "message": error.message}}, error.headers
        )
    except Exception:
        logger.error("request failed", **log_fields)
        raise
    logger.info("request", status_code=response["statusCode"], items=count, **log_fields)
    return response


def _serve(
    event: Any,
    dynamodb: Any,
    table_name: str,
    *,
    secret: bytes,
    now: int,
    links: ItemLinks | None,
) -> tuple[dict[str, Any], int]:
    if not isinstance(event, Mapping) or event.get("version") != "2.0":
        raise RequestError(
            400, "bad_request", "expected an API Gateway HTTP API event (payload format 2.0)"
        )
    route_key = event.get("routeKey")
    template = route_key.partition(" ")[2] if isinstance(route_key, str) else ""
    if template not in (LIST_ROUTE, GET_ROUTE):
        path = event.get("rawPath")
        raise RequestError(404, "not_found", f"no such route: {_method(event)} {path!r}")
    if _method(event) != "GET":
        raise RequestError(
            405,
            "method_not_allowed",
            f"{template} supports only GET",
            {"allow": "GET"},
        )
    if template == LIST_ROUTE:
        return _list_images(event, dynamodb, table_name, secret=secret, now=now, links=links)
    return _get_image(event, dynamodb, table_name, now=now, links=links), 1


def _list_images(
    event: Mapping[str, Any],
    dynamodb: Any,
    table_name: str,
    *,
    secret: bytes,
    now: int,
    links: ItemLinks | None,
) -> tuple[dict[str, Any], int]:
    parameters = _query_parameters(event)
    limit = _limit(parameters.get("limit"))
    status = parameters.get("status", "active")
    if status not in LISTABLE_STATUSES:
        raise RequestError(
            400, "invalid_parameter", f"status must be one of {', '.join(LISTABLE_STATUSES)}"
        )
    prefix = parameters.get("prefix", "")
    _check_key_text(prefix, "prefix")
    after = None
    if "cursor" in parameters:
        try:
            after = cursor.decode(
                parameters["cursor"], table=table_name, status=status, prefix=prefix, secret=secret
            )
        except cursor.InvalidCursor as error:
            raise RequestError(400, "invalid_cursor", str(error)) from None
    items, position = _query_page(
        dynamodb,
        table_name,
        status=status,
        prefix=prefix,
        after=after,
        limit=limit,
        now=now,
        links=links,
    )
    next_cursor = None
    if position is not None:
        next_cursor = cursor.encode(
            position, table=table_name, status=status, prefix=prefix, secret=secret
        )
    return {"items": items, "next_cursor": next_cursor}, len(items)


def _query_page(
    dynamodb: Any,
    table_name: str,
    *,
    status: str,
    prefix: str,
    after: str | None,
    limit: int,
    now: int,
    links: ItemLinks | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Up to ``limit`` live items after ``after``, and the position to resume from."""
    names = {"#status": records.STATUS_ATTRIBUTE, "#expires": records.EXPIRY_ATTRIBUTE}
    values: dict[str, Any] = {":status": {"S": status}, ":now": {"N": str(now)}}
    condition = "#status = :status"
    if prefix:
        # DynamoDB rejects names and values that the expressions leave unused.
        condition += " AND begins_with(#key, :prefix)"
        names["#key"] = records.KEY_ATTRIBUTE
        values[":prefix"] = {"S": prefix}
    query = {
        "TableName": table_name,
        "IndexName": records.STATUS_INDEX,
        "KeyConditionExpression": condition,
        # The same rule as records.is_expired, as a DynamoDB expression.
        "FilterExpression": "attribute_not_exists(#expires) OR #expires > :now",
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }
    start_key = _index_key(after, status) if after is not None else None
    items: list[dict[str, Any]] = []
    budget = MAX_BODY_BYTES - _ENVELOPE_BYTES
    batch = 0
    consumed = after
    for _ in range(MAX_QUERIES_PER_REQUEST):
        batch = max(limit - len(items) + 1, batch * 2)
        page = dynamodb.query(
            **query, Limit=batch, **({"ExclusiveStartKey": start_key} if start_key else {})
        )
        for item in page.get("Items", ()):
            rendered = _public(records.from_item(item), links)
            size = len(_dumps(rendered).encode("utf-8")) + 1
            if len(items) == limit or (items and size > budget):
                return items, items[-1]["key"]
            items.append(rendered)
            budget -= size
        start_key = page.get("LastEvaluatedKey")
        if not start_key:
            return items, None
        consumed = start_key[records.KEY_ATTRIBUTE]["S"]
    # Out of queries at a page boundary: everything up to LastEvaluatedKey was consumed.
    return items, consumed


def _index_key(key: str, status: str) -> dict[str, Any]:
    """An ``ExclusiveStartKey`` on the status index: its keys plus the table's."""
    return {records.KEY_ATTRIBUTE: {"S": key}, records.STATUS_ATTRIBUTE: {"S": status}}


def _get_image(
    event: Mapping[str, Any], dynamodb: Any, table_name: str, *, now: int, links: ItemLinks | None
) -> dict[str, Any]:
    key = _field(event, "pathParameters", KEY_PARAMETER)
    if not isinstance(key, str) or not key:
        raise RequestError(400, "bad_request", "the request has no image key in its path")
    _check_key_text(key, "key")
    found = dynamodb.get_item(
        TableName=table_name, Key={records.KEY_ATTRIBUTE: {"S": key}}, ConsistentRead=True
    ).get("Item")
    record = records.from_item(found) if found else None
    if record is None or record.status == "deleted" or records.is_expired(record, now):
        raise RequestError(404, "not_found", f"no image with key {key!r}")
    return _public(record, links)


def _public(record: records.ImageRecord, links: ItemLinks | None) -> dict[str, Any]:
    item = records.to_public_json(record)
    return links.add_to(item, record) if links is not None else item


def _query_parameters(event: Mapping[str, Any]) -> dict[str, str]:
    raw = event.get("rawQueryString") or ""
    if not isinstance(raw, str):
        raise RequestError(400, "bad_request", "rawQueryString is not a string")
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, errors="strict", max_num_fields=16)
    except ValueError:  # includes UnicodeDecodeError
        raise RequestError(
            400, "invalid_parameter", "the query string is not valid UTF-8 form encoding"
        ) from None
    parameters: dict[str, str] = {}
    for name, value in pairs:
        if name.lower().startswith("x-amz-"):
            continue
        if name not in _QUERY_PARAMETERS:
            raise RequestError(
                400,
                "invalid_parameter",
                f"unknown query parameter {name!r}; use {', '.join(sorted(_QUERY_PARAMETERS))}",
            )
        if name in parameters:
            raise RequestError(400, "invalid_parameter", f"{name} is given more than once")
        parameters[name] = value
    return parameters


def _limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    # A pattern, not int(): int() accepts " 5", "+5", "5_0" and non-ASCII digits.
    if not _LIMIT_PATTERN.fullmatch(text) or not 1 <= int(text) <= MAX_LIMIT:
        raise RequestError(
            400, "invalid_parameter", f"limit must be a whole number from 1 to {MAX_LIMIT}"
        )
    return int(text)


def _check_key_text(text: str, what: str) -> None:
    """Reject what DynamoDB would refuse (a 500) or what no S3 key can be."""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise RequestError(400, "invalid_parameter", f"{what} is not valid Unicode") from None
    if size > cursor.MAX_KEY_BYTES:
        raise RequestError(
            400, "invalid_parameter", f"{what} is longer than {cursor.MAX_KEY_BYTES} bytes"
        )


def _method(event: Any) -> str | None:
    method = _field(event, "requestContext", "http", "method")
    if isinstance(method, str):
        return method.upper()
    route_key = _field(event, "routeKey")
    if isinstance(route_key, str) and " " in route_key:
        return route_key.partition(" ")[0].upper()
    return None


def _field(data: Any, *path: str) -> Any:
    """``data[path[0]][path[1]]...``, or ``None`` where anything along the way is missing."""
    for name in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(name)
    return data


def _printable(value: Any) -> str | None:
    """``value`` fit for a log line: event strings may hold lone surrogates, which stdout
    cannot encode, so a garbage event would otherwise fail in the logger."""
    if not isinstance(value, str):
        return None
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _response(
    status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {**_HEADERS, **(headers or {})},
        "body": _dumps(body),
        "isBase64Encoded": False,
    }
