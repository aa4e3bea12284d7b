"""An HTTP API's routes on the local cloud: read from moto, and matched against a request.

``execute_api`` asks this module which route of which API a request selects.
:func:`moto_api_lookup` is the only code that reads moto's API Gateway v2 models (a test
covers it); :func:`match_route` is pure.

**Route selection.** API Gateway picks the most specific match: literal segments beat
``{name}`` (one segment), which beats a greedy ``{name+}`` (one or more, only last);
compared segment by segment from the left. For the same path template a route for the
request's method beats ``ANY`` ("ANY matches all methods that you haven't defined for
a resource", AWS, "Create routes for HTTP APIs"). ``$default`` takes what nothing else matches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import unquote

from imgcli.localcloud import MotoInternalsChanged

DEFAULT_ROUTE: Final = "$default"
ANY_METHOD: Final = "ANY"
NO_AUTHORIZATION: Final = "NONE"
_LAMBDA_INVOCATION_MARKER: Final = ":lambda:path/2015-03-31/functions/"


@dataclass(frozen=True)
class ApiRoute:
    """One route of an HTTP API, as much as serving it needs."""

    #: ``"GET /images/{key+}"``, ``"ANY /{proxy+}"`` or ``"$default"``.
    route_key: str
    #: ``"NONE"``, ``"AWS_IAM"``, ``"JWT"`` or ``"CUSTOM"``.
    authorization_type: str
    #: The Lambda function a proxy integration calls; ``None`` for anything else.
    function_arn: str | None
    payload_format_version: str | None


@dataclass(frozen=True)
class ApiDescription:
    """An HTTP API's routes, and the account it belongs to (for ``requestContext``)."""

    api_id: str
    account_id: str
    routes: tuple[ApiRoute, ...]


#: ``apis(api_id)``: the API's description, or ``None`` when there is no such API.
ApiLookup = Callable[[str], ApiDescription | None]


def moto_api_lookup(account: str, region: str) -> ApiLookup:
    """Reads HTTP APIs from moto's API Gateway v2 backend for ``account`` and ``region``.

    The only code that touches those moto internals (``apigatewayv2_backends``, ``Api``'s
    ``routes`` and ``integrations``, their attributes); a change of shape raises
    ``MotoInternalsChanged`` naming what moved.
    """

    def lookup(api_id: str) -> ApiDescription | None:
        # Imported on first use: ``api_url`` must stay importable without moto's weight.
        from moto.apigatewayv2.models import apigatewayv2_backends

        try:
            api = apigatewayv2_backends[account][region].apis.get(api_id)
            if api is None:
                return None
            # Copies: another thread may be changing the API through moto meanwhile.
            integrations = dict(api.integrations)
            routes = tuple(_route(route, integrations) for route in list(api.routes.values()))
        except (AttributeError, KeyError, TypeError) as exc:
            raise MotoInternalsChanged(
                "imgcli's execute-api needs moto's API Gateway v2 models, which changed "
                f"shape: {type(exc).__name__}: {exc}"
            ) from exc
        return ApiDescription(api_id=api_id, account_id=account, routes=routes)

    return lookup


def _route(route: Any, integrations: Mapping[str, Any]) -> ApiRoute:
    target = route.target or ""
    integration = integrations.get(target.removeprefix("integrations/"))
    function_arn = None
    payload_format = None
    if integration is not None:
        payload_format = integration.payload_format_version
        if integration.integration_type == "AWS_PROXY":
            function_arn = lambda_function_arn(integration.integration_uri or "")
    return ApiRoute(
        route_key=route.route_key,
        authorization_type=route.authorization_type or NO_AUTHORIZATION,
        function_arn=function_arn,
        payload_format_version=payload_format,
    )


def lambda_function_arn(integration_uri: str) -> str | None:
    """The function an ``AWS_PROXY`` integration URI names, in either form AWS accepts:
    the function ARN itself, or API Gateway's ``.../functions/<arn>/invocations``."""
    if _LAMBDA_INVOCATION_MARKER in integration_uri:
        arn = integration_uri.split(_LAMBDA_INVOCATION_MARKER, 1)[1]
        return arn.removesuffix("/invocations")
    if integration_uri.startswith("arn:") and ":lambda:" in integration_uri:
        return integration_uri
    return None


# --- routing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteMatch:
    """The route a request selected, and its path parameters (decoded once)."""

    route: ApiRoute
    path_parameters: dict[str, str] = field(default_factory=dict)


def match_route(routes: Iterable[ApiRoute], method: str, raw_path: str) -> RouteMatch | None:
    """The route API Gateway would choose for ``method`` and ``raw_path`` (still encoded)."""
    segments = _segments(raw_path)
    best: tuple[tuple[list[int], bool], RouteMatch] | None = None
    fallback: RouteMatch | None = None
    for route in routes:
        if route.route_key == DEFAULT_ROUTE:
            fallback = RouteMatch(route)
            continue
        route_method, _, template = route.route_key.partition(" ")
        if route_method not in (method, ANY_METHOD):
            continue
        matched = _match_template(_segments(template), segments)
        if matched is None:
            continue
        specificity, parameters = matched
        rank = (specificity, route_method == method)
        if best is None or rank > best[0]:
            best = (rank, RouteMatch(route, parameters))
    return best[1] if best is not None else fallback


def _segments(path: str) -> list[str]:
    return [] if path in ("", "/") else path.removeprefix("/").split("/")


def _match_template(
    template: list[str], segments: list[str]
) -> tuple[list[int], dict[str, str]] | None:
    """Per-segment specificity (literal 2, ``{name}`` 1, ``{name+}`` 0) and parameters."""
    specificity: list[int] = []
    parameters: dict[str, str] = {}
    for index, part in enumerate(template):
        if part.startswith("{") and part.endswith("+}"):
            # Greedy: the rest of the path as sent, so doubled slashes survive.
            rest = "/".join(segments[index:])
            if not rest:
                return None
            parameters[part[1:-2]] = decode(rest)
            specificity.append(0)
            return specificity, parameters
        if index >= len(segments):
            return None
        if part.startswith("{") and part.endswith("}"):
            if not segments[index]:
                return None
            parameters[part[1:-1]] = decode(segments[index])
            specificity.append(1)
        elif decode(segments[index]) == part:
            specificity.append(2)
        else:
            return None
    if len(segments) != len(template):
        return None
    return specificity, parameters


def decode(text: str) -> str:
    """Percent-decoding once, as API Gateway decodes paths: ``+`` is not a space."""
    return unquote(text)
