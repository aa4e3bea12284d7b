"""The HTTP API's routes on the local cloud: which route a request selects, read from moto.

Through a real server (``tests.execute_api_server``) for the 404s and for reading moto's
API Gateway v2 models; the matching rules themselves are pure.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto.core.models import DEFAULT_ACCOUNT_ID

from imgcli.localcloud.api_routes import ApiRoute, match_route, moto_api_lookup
from tests.execute_api_server import (
    RECORDER_ARN,
    REGION,
    RETRIEVE_ARN,
    ROUTES,
    Api,
    Server,
    client,
    create_api,
    send,
    serving_execute_api,
)


@pytest.fixture(scope="module")
def running_server() -> Iterator[Server]:
    with serving_execute_api() as server:
        yield server


@pytest.fixture
def server(running_server: Server) -> Server:
    return running_server.reset()


@pytest.fixture
def api(server: Server) -> Api:
    return create_api(server, RECORDER_ARN, ROUTES)


# --- routing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/nothing"), ("POST", "/images"), ("GET", "/images/"), ("GET", "/")],
)
def test_an_unknown_route_is_not_found_even_unsigned(
    server: Server, api: Api, method: str, path: str
) -> None:
    reply = send(server, method, api.path + path)

    assert reply.status == 404
    assert reply.json() == {"message": "Not Found"}


def test_an_unknown_api_is_not_found(server: Server) -> None:
    reply = send(server, "GET", "/_api/nosuchapi/images")

    assert reply.status == 404
    assert reply.json() == {"message": "Not Found"}


# --- moto internals ------------------------------------------------------------------------


def test_moto_api_lookup_reads_routes_and_integrations(server: Server) -> None:
    apis = client(server, "apigatewayv2")
    api_id = apis.create_api(Name="imgcli-lookup", ProtocolType="HTTP")["ApiId"]
    invocation_uri = (
        f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{RETRIEVE_ARN}/invocations"
    )
    direct = apis.create_integration(
        ApiId=api_id,
        IntegrationType="AWS_PROXY",
        IntegrationUri=RECORDER_ARN,
        PayloadFormatVersion="2.0",
    )["IntegrationId"]
    wrapped = apis.create_integration(
        ApiId=api_id,
        IntegrationType="AWS_PROXY",
        IntegrationUri=invocation_uri,
        PayloadFormatVersion="1.0",
    )["IntegrationId"]
    apis.create_route(
        ApiId=api_id,
        RouteKey="GET /images/{key+}",
        AuthorizationType="AWS_IAM",
        Target=f"integrations/{direct}",
    )
    apis.create_route(ApiId=api_id, RouteKey="ANY /{proxy+}", Target=f"integrations/{wrapped}")
    apis.create_route(ApiId=api_id, RouteKey="$default")

    described = moto_api_lookup(DEFAULT_ACCOUNT_ID, REGION)(api_id)

    assert described is not None
    assert (described.api_id, described.account_id) == (api_id, DEFAULT_ACCOUNT_ID)
    assert sorted(described.routes, key=lambda route: route.route_key) == [
        ApiRoute("$default", "NONE", None, None),
        ApiRoute("ANY /{proxy+}", "NONE", RETRIEVE_ARN, "1.0"),
        ApiRoute("GET /images/{key+}", "AWS_IAM", RECORDER_ARN, "2.0"),
    ]
    assert moto_api_lookup(DEFAULT_ACCOUNT_ID, REGION)("nosuchapi") is None


# --- pure pieces -----------------------------------------------------------------------------


def routes(*route_keys: str) -> list[ApiRoute]:
    return [ApiRoute(key, "NONE", RECORDER_ARN, "2.0") for key in route_keys]


# AWS's own example (Create routes for HTTP APIs, "Routing API requests"), plus ANY.
DOCS_ROUTES = routes(
    "GET /pets/dog/1",
    "GET /pets/dog/{id}",
    "GET /pets/{proxy+}",
    "ANY /{proxy+}",
    "ANY /pets/dog/1",
    "$default",
)


@pytest.mark.parametrize(
    ("method", "path", "route_key", "parameters"),
    [
        ("GET", "/pets/dog/1", "GET /pets/dog/1", {}),
        ("GET", "/pets/dog/2", "GET /pets/dog/{id}", {"id": "2"}),
        ("GET", "/pets/cat/1", "GET /pets/{proxy+}", {"proxy": "cat/1"}),
        ("POST", "/pets/cat/1", "ANY /{proxy+}", {"proxy": "pets/cat/1"}),
        ("POST", "/pets/dog/1", "ANY /pets/dog/1", {}),
        ("GET", "/pets/dog/a%2Fb%20c+d", "GET /pets/dog/{id}", {"id": "a/b c+d"}),
        ("GET", "/", "$default", {}),
    ],
)
def test_routes_match_most_specific_first(
    method: str, path: str, route_key: str, parameters: dict[str, str]
) -> None:
    match = match_route(DOCS_ROUTES, method, path)

    assert match is not None
    assert (match.route.route_key, match.path_parameters) == (route_key, parameters)


@pytest.mark.parametrize("path", ["/images/", "/images", "/other/x"])
def test_a_greedy_parameter_needs_at_least_one_character(path: str) -> None:
    match = match_route(routes("GET /images/{key+}"), "GET", path)

    assert match is None
