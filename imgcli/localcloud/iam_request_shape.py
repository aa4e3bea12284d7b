"""Requests that moto could read otherwise than the authoriser: refused before any mapping.

The authoriser decides on the operation and parameters it reads from a request; moto then
runs the operation and parameters *it* reads. Wherever the two readings can differ, a role
session could be authorised for one call and have moto run another (a security review
found nine such ways). This module reproduces how moto 5.2.5 reads an RPC request
(``BaseResponse.setup_class`` and ``_get_action``) and refuses every request on which the
two readings could part, so that what is left has a single meaning:

* moto's parameters ("querystring") are the form body if it parses to anything, else the
  URL query, else the body parsed as a query string *whatever its content type*, else the
  request headers; its operation is that querystring's first ``Action``, and only without
  one the ``X-Amz-Target``. A request with both an ``Action`` parameter (as moto reads it)
  and an ``X-Amz-Target`` is refused, as is an ``Action`` header.
* A repeated parameter name (the authoriser and moto's parsers disagree on which one
  counts), a URL query beside a body (moto's parsers read the query first, the JSON
  services' ``_get_param`` reads it before the body), a multipart body, a JSON-target
  request whose body is not a JSON object, and a query-protocol body that is not
  ``application/x-www-form-urlencoded`` are refused.
* REST services (S3, Lambda, API Gateway) are routed by path: an ``X-Amz-Target`` on them
  is refused, and so is a repeated S3 query parameter. Any other service is read as an
  RPC one, so a role session's call to a REST service moto has but the local cloud does
  not list here (Route 53, EKS...) is refused: stricter than needed, never laxer.

No SDK sends any of these. :func:`missing_internals` checks, by running moto's own code on
probe requests, that moto still reads them this way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final
from urllib.parse import parse_qsl

from imgcli.localcloud.iam_request_model import HttpRequest

#: Services whose operation is the method and path: moto ignores ``X-Amz-Target`` there.
REST_SERVICES: Final = frozenset({"s3", "lambda", "apigateway"})
_FORM: Final = "application/x-www-form-urlencoded"


def ambiguity(request: HttpRequest) -> str | None:
    """Why moto could read ``request`` otherwise than the authoriser; ``None`` if it cannot."""
    target = request.headers.get("x-amz-target")
    if request.service in REST_SERVICES:
        if target is not None:
            return f"X-Amz-Target on {request.service}, which moto routes by path"
        if request.service == "s3":
            return _repeated(parse_qsl(request.query, keep_blank_values=True))
        return None
    if "action" in request.headers:
        return "an Action header (moto reads headers as parameters)"
    content_type = _mimetype(request)
    if content_type.startswith("multipart/"):
        return "a multipart body"
    if request.query and request.body:
        return "parameters in both the URL query and the body"
    pairs = moto_parameters(request)
    repeated = _repeated(pairs)
    if repeated:
        return repeated
    if target is not None:
        if any(name == "Action" for name, _ in pairs):
            return "both an Action parameter and an X-Amz-Target"
        if not _is_json_object(request.body):
            return "an X-Amz-Target request whose body is not a JSON object"
        return None
    if request.body and content_type != _FORM:
        return f"query-protocol parameters in a {content_type or 'untyped'} body"
    return None


def moto_parameters(request: HttpRequest) -> list[tuple[str, str]]:
    """The parameters moto's ``BaseResponse`` reads ("querystring"), in order, repeats kept."""
    body = request.body.decode("utf-8", "replace")
    if _mimetype(request) == _FORM:
        form = parse_qsl(body, keep_blank_values=True)
        if form:
            return form
    query = parse_qsl(request.query, keep_blank_values=True)
    if query:
        return query
    if body:
        from_body = parse_qsl(body, keep_blank_values=True)
        if from_body:
            return from_body
    return [(name.title(), value) for name, value in request.headers.items()]


def missing_internals() -> list[str]:
    """How moto's reading of a request differs from :func:`moto_parameters` and the
    Action-before-target rule on probe requests; empty if it does not."""
    from moto.core.request import Request
    from moto.core.responses import BaseResponse

    problems: list[str] = []
    target = {"X-Amz-Target": "x.FromTarget", "Content-Type": "application/json"}
    probes: Sequence[tuple[str, dict[str, str], bytes, str]] = (
        ("?Action=FromQuery", {"Content-Type": _FORM}, b"Action=FromForm", "FromForm"),
        ("?Action=FromQuery", target, b"{}", "FromQuery"),
        ("", target, b'{"a":"&Action=FromJson&"}', "FromJson"),
        ("", {"Action": "FromHeader"}, b"", "FromHeader"),
        ("", target, b"{}", "FromTarget"),
    )
    for query, headers, body, expected in probes:
        try:
            request = Request.from_primitives("POST", "http://127.0.0.1/" + query, headers, body)
            response = BaseResponse()
            response.setup_class(request)
            action = response._get_action()
        except Exception as exc:  # noqa: BLE001 - any failure means moto changed
            problems.append(f"BaseResponse.setup_class/_get_action on a probe: {exc!r}")
            continue
        if action != expected:
            problems.append(f"moto reads the operation {action!r}, imgcli expects {expected!r}")
    return problems


def _repeated(pairs: Sequence[tuple[str, str]]) -> str | None:
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            return f"the parameter {name} more than once"
        seen.add(name)
    return None


def _mimetype(request: HttpRequest) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _is_json_object(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body or b"null"), dict)
    except ValueError:
        return False
