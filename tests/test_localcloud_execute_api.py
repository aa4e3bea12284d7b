"""The local cloud's HTTP API: routing, SigV4, the payload 2.0 event and the proxy response.

A real werkzeug server on 127.0.0.1 runs moto's WSGI app behind ``ExecuteApi``, as the
local cloud does; the API is created with boto3 through that same server, so these tests
also prove that requests outside ``/_api`` still reach moto. ``invoke`` is a recording
double (``Functions``) that answers per function ARN; one function is the real
``lambdas.retrieve.respond`` against a DynamoDB table in the same moto. Requests are
signed by botocore (``SigV4Auth``, ``SigV4QueryAuth``) and by curl's ``--aws-sigv4``, and
sent byte for byte with ``http.client`` so that nothing re-encodes the path on the way.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import boto3
import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

from imgcli.config import LOCAL_ACCESS_KEY, LOCAL_REGION
from imgcli.lambdas import cursor, records, retrieve
from imgcli.lambdas.logs import JsonLogger
from imgcli.localcloud import API_PATH_PREFIX, api_url, sigv4
from imgcli.localcloud.execute_api import (
    ApiRoute,
    ExecuteApi,
    FunctionFailed,
    http_response,
    match_route,
    moto_api_lookup,
)
from tests.eventdata import load_event
from tests.localstack import create_http_api
from tests.test_retrieve import AWKWARD_KEYS, image

REGION = LOCAL_REGION
KEY = LOCAL_ACCESS_KEY.access_key_id
SECRET = LOCAL_ACCESS_KEY.secret_access_key
RECORDER_ARN = f"arn:aws:lambda:{REGION}:{DEFAULT_ACCOUNT_ID}:function:recorder"
RETRIEVE_ARN = f"arn:aws:lambda:{REGION}:{DEFAULT_ACCOUNT_ID}:function:retrieve"
TABLE = "imgcli-execute-api-images"
CANNED = {
    "statusCode": 200,
    "headers": {"content-type": "application/json", "x-canned": "yes"},
    "body": '{"ok":true}',
    "isBase64Encoded": False,
}


Behaviour = Callable[[dict[str, Any]], Any]


def canned(_event: dict[str, Any]) -> dict[str, Any]:
    return CANNED


class Functions:
    """The ``invoke`` seam: records each call; answers with the behaviour set for the ARN."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.behaviours: dict[str, Behaviour] = {}

    def __call__(self, function_arn: str, event: dict[str, Any]) -> Any:
        self.calls.append((function_arn, event))
        behaviour: Behaviour = self.behaviours.get(function_arn, canned)
        return behaviour(event)

    @property
    def last_event(self) -> dict[str, Any]:
        return self.calls[-1][1]


class Clock:
    """The server's clock, movable so a signature can be made to expire."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Server:
    endpoint: str
    functions: Functions
    clock: Clock

    @property
    def netloc(self) -> str:
        return urlsplit(self.endpoint).netloc


@pytest.fixture(scope="module")
def running_server() -> Iterator[Server]:
    functions = Functions()
    clock = Clock()
    app = ExecuteApi(
        DomainDispatcherApplication(create_backend_app),
        invoke=functions,
        apis=moto_api_lookup(DEFAULT_ACCOUNT_ID, REGION),
        credentials=(KEY, SECRET),
        region=REGION,
        clock=clock,
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{server.server_port}", functions, clock)
    finally:
        server.shutdown()
        thread.join(timeout=5)


@pytest.fixture
def server(running_server: Server) -> Server:
    running_server.functions.calls.clear()
    running_server.functions.behaviours.clear()
    running_server.clock.offset = 0.0
    return running_server


def client(server: Server, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=server.endpoint,
        region_name=REGION,
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
    )


@dataclass
class Api:
    api_id: str
    base: str
    path: str


#: The stack's two routes, and two more for what they cannot show.
ROUTES = {
    "GET /images": "AWS_IAM",
    "GET /images/{key+}": "AWS_IAM",
    "POST /uploads": "AWS_IAM",
    "GET /public": "NONE",
}


def create_api(server: Server, function_arn: str, routes: Mapping[str, str]) -> Api:
    """An HTTP API with a ``$default`` stage whose ``routes`` (route key: authorization)
    all call ``function_arn``, created through the server (that is, in moto)."""
    api_id = create_http_api(
        client(server, "apigatewayv2"), "imgcli-test", function_arn, dict(routes)
    )
    base = api_url(server.endpoint, api_id)
    return Api(api_id, base, urlsplit(base).path)


@pytest.fixture
def api(server: Server) -> Api:
    return create_api(server, RECORDER_ARN, ROUTES)


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def send(
    server: Server,
    method: str,
    target: str,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
) -> Reply:
    """One request with exactly this target (path and query) and these headers."""
    connection = http.client.HTTPConnection(server.netloc, timeout=10)
    try:
        connection.request(method, target, body=body or None, headers=dict(headers or {}))
        response = connection.getresponse()
        return Reply(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        connection.close()


def signed(
    server: Server,
    method: str,
    target: str,
    *,
    key: str = KEY,
    secret: str = SECRET,
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
) -> dict[str, str]:
    """The headers botocore's SigV4 adds for this request, as imgcli's API client signs."""
    request = AWSRequest(
        method=method, url=server.endpoint + target, data=body, headers=dict(headers or {})
    )
    SigV4Auth(Credentials(key, secret, token), "execute-api", REGION).add_auth(request)
    return dict(request.headers.items())


def signed_send(server: Server, method: str, target: str, **options: Any) -> Reply:
    headers = signed(server, method, target, **options)
    return send(server, method, target, headers, options.get("body", b""))


def image_path(api: Api, key: str) -> str:
    return f"{api.path}/images/{quote(key, safe='/')}"


# --- signed requests reach the function with API Gateway's event --------------------------


@pytest.mark.parametrize("key", AWKWARD_KEYS)
def test_signed_request_carries_the_key_decoded_once(server: Server, api: Api, key: str) -> None:
    reply = signed_send(server, "GET", image_path(api, key))

    assert reply.status == 200, reply.body
    assert reply.json() == {"ok": True}
    assert reply.headers["x-canned"] == "yes"
    function_arn, event = server.functions.calls[-1]
    assert function_arn == RECORDER_ARN
    assert event["routeKey"] == "GET /images/{key+}"
    assert event["pathParameters"] == {"key": key}
    assert event["rawPath"] == f"/images/{key}"


def test_event_has_the_shape_of_a_real_http_api_event(server: Server, api: Api) -> None:
    target = f"{api.path}/images?prefix=holiday%202024%2F&limit=2&limit=3"
    reply = signed_send(server, "GET", target, headers={"cookie": "a=1; b=2", "x-custom": "v"})

    assert reply.status == 200
    event = server.functions.last_event
    real = load_event("apigw_list_images")
    assert set(event) == set(real) | {"cookies"}
    assert set(event["requestContext"]) == set(real["requestContext"])
    assert set(event["requestContext"]["http"]) == set(real["requestContext"]["http"])
    assert set(event["requestContext"]["authorizer"]["iam"]) == set(
        real["requestContext"]["authorizer"]["iam"]
    )
    assert event["version"] == "2.0"
    assert event["rawQueryString"] == "prefix=holiday%202024%2F&limit=2&limit=3"
    assert event["queryStringParameters"] == {"prefix": "holiday 2024/", "limit": "2,3"}
    assert event["cookies"] == ["a=1", "b=2"]
    assert "cookie" not in event["headers"]
    assert event["headers"]["x-custom"] == "v"
    assert event["headers"]["host"] == server.netloc
    assert event["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert event["headers"]["authorization"].startswith("AWS4-HMAC-SHA256 ")
    assert event["isBase64Encoded"] is False
    assert "body" not in event
    context = event["requestContext"]
    assert context["apiId"] == api.api_id
    assert context["accountId"] == DEFAULT_ACCOUNT_ID
    assert context["stage"] == "$default"
    assert context["routeKey"] == "GET /images"
    assert context["domainName"] == server.netloc
    assert context["http"]["method"] == "GET"
    assert context["http"]["path"] == "/images"
    assert context["http"]["sourceIp"] == "127.0.0.1"
    assert context["requestId"] == reply.headers["apigw-requestid"]
    assert len(context["requestId"]) == 16
    assert abs(context["timeEpoch"] / 1000 - time.time()) < 60
    assert context["authorizer"]["iam"]["accessKey"] == KEY


def test_a_route_without_authorization_needs_no_signature(server: Server, api: Api) -> None:
    reply = send(server, "GET", f"{api.path}/public")

    assert reply.status == 200
    assert "authorizer" not in server.functions.last_event["requestContext"]


def test_bodies_are_text_or_base64_by_content_type(server: Server, api: Api) -> None:
    target = f"{api.path}/uploads"
    text = '{"name": "café"}'.encode()
    binary = b"\xff\xd8\xff\xe0 not text"

    json_reply = signed_send(
        server, "POST", target, body=text, headers={"content-type": "application/json"}
    )
    json_event = server.functions.last_event
    binary_reply = signed_send(
        server, "POST", target, body=binary, headers={"content-type": "image/jpeg"}
    )
    binary_event = server.functions.last_event

    assert (json_reply.status, binary_reply.status) == (200, 200)
    assert (json_event["body"], json_event["isBase64Encoded"]) == ('{"name": "café"}', False)
    assert binary_event["isBase64Encoded"] is True
    assert binary_event["body"] == "/9j/4CBub3QgdGV4dA=="


def test_a_presigned_url_is_accepted_until_it_expires(server: Server, api: Api) -> None:
    request = AWSRequest(method="GET", url=f"{server.endpoint}{api.path}/images?limit=2")
    SigV4QueryAuth(Credentials(KEY, SECRET), "execute-api", REGION, expires=60).add_auth(request)
    target = request.url.removeprefix(server.endpoint)

    assert send(server, "GET", target).status == 200
    server.clock.offset = 120
    expired = send(server, "GET", target)
    assert expired.status == 403
    assert expired.json()["message"].startswith("Signature expired")


# --- curl signs differently, and is accepted too -------------------------------------------


def test_a_request_signed_by_curl_is_accepted(server: Server, api: Api) -> None:
    key = "holiday 2024/naïve+café #1.jpg"
    # Query deliberately unsorted: curl signs it in the order sent, botocore sorted.
    url = f"{server.endpoint}{image_path(api, key)}?z=1&a=b%20c"
    result = subprocess.run(
        [
            "curl",
            "--silent",
            "--show-error",
            "--aws-sigv4",
            f"aws:amz:{REGION}:execute-api",
            "--user",
            f"{KEY}:{SECRET}",
            "--write-out",
            "\n%{http_code}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    body, _, status = result.stdout.rpartition("\n")

    assert status == "200", body
    assert json.loads(body) == {"ok": True}
    event = server.functions.last_event
    assert event["pathParameters"] == {"key": key}
    assert event["rawQueryString"] == "z=1&a=b%20c"


@pytest.mark.parametrize(
    ("secret", "path"),
    [
        ("not-the-secret", "/images"),
        # curl 7.88 encodes the path once; with a literal % that is ambiguous (see sigv4).
        (SECRET, f"/images/{quote('100%.png')}"),
    ],
)
def test_curl_requests_that_cannot_be_verified_are_refused(
    server: Server, api: Api, secret: str, path: str
) -> None:
    result = subprocess.run(
        [
            "curl",
            "--silent",
            "--aws-sigv4",
            f"aws:amz:{REGION}:execute-api",
            "--user",
            f"{KEY}:{secret}",
            "--write-out",
            "\n%{http_code}",
            f"{server.endpoint}{api.path}{path}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )

    assert result.stdout.rpartition("\n")[2] == "403"
    assert server.functions.calls == []


# --- refusals --------------------------------------------------------------------------


def test_an_unsigned_request_is_forbidden(server: Server, api: Api) -> None:
    reply = send(server, "GET", f"{api.path}/images")

    assert reply.status == 403
    assert reply.json() == {"message": "Forbidden"}
    assert reply.headers["content-type"] == "application/json"
    assert server.functions.calls == []


@pytest.mark.parametrize(
    ("signed_target", "sent_target"),
    [
        ("/images/a.jpg", "/images/b.jpg"),
        # curl's form of the second is botocore's of the first: a collision, refused.
        ("/images/a%20b.jpg", "/images/a%2520b.jpg"),
        ("/images?prefix=a%2Bb", "/images?prefix=a+b"),
        ("/images?limit=2", "/images?limit=3"),
        ("/images?limit=2", "/images?limit=2&prefix=x"),
        ("/images?limit=2", "/images"),
    ],
)
def test_a_request_changed_after_signing_is_refused(
    server: Server, api: Api, signed_target: str, sent_target: str
) -> None:
    headers = signed(server, "GET", api.path + signed_target)

    reply = send(server, "GET", api.path + sent_target, headers)

    assert reply.status == 403
    assert reply.json()["message"].startswith(sigv4.SIGNATURE_MISMATCH)
    assert server.functions.calls == []


def test_a_signed_header_changed_after_signing_is_refused(server: Server, api: Api) -> None:
    target = f"{api.path}/images"
    headers = signed(server, "GET", target, headers={"x-imgcli-purpose": "list"})

    reply = send(server, "GET", target, {**headers, "x-imgcli-purpose": "delete"})

    assert reply.status == 403
    assert reply.json()["message"].startswith(sigv4.SIGNATURE_MISMATCH)


def test_a_body_changed_after_signing_is_refused(server: Server, api: Api) -> None:
    target = f"{api.path}/uploads"
    headers = signed(server, "POST", target, body=b"original")
    claimed = {**headers, "x-amz-content-sha256": hashlib.sha256(b"original").hexdigest()}

    plain = send(server, "POST", target, headers, body=b"tampered")
    with_hash = send(server, "POST", target, claimed, body=b"tampered")

    assert plain.status == 403
    assert plain.json()["message"].startswith(sigv4.SIGNATURE_MISMATCH)
    assert with_hash.status == 403
    assert with_hash.json() == {"message": sigv4.CONTENT_HASH_MISMATCH}


@pytest.mark.parametrize(
    ("credentials", "message"),
    [
        ({"secret": "wrong-secret"}, sigv4.SIGNATURE_MISMATCH),
        ({"key": "AKIAIOSFODNN7EXAMPLE", "secret": "x"}, sigv4.UNKNOWN_ACCESS_KEY),
        ({"token": "a-session-token"}, sigv4.UNKNOWN_ACCESS_KEY),
    ],
)
def test_foreign_credentials_are_refused(
    server: Server, api: Api, credentials: dict[str, str], message: str
) -> None:
    reply = signed_send(server, "GET", f"{api.path}/images", **credentials)

    assert reply.status == 403
    assert reply.json()["message"].startswith(message)


@pytest.mark.parametrize(
    ("offset", "message"), [(360, "Signature expired"), (-360, "Signature not yet current")]
)
def test_a_timestamp_over_five_minutes_off_is_refused(
    server: Server, api: Api, offset: float, message: str
) -> None:
    target = f"{api.path}/images"
    headers = signed(server, "GET", target)
    server.clock.offset = offset

    reply = send(server, "GET", target, headers)

    assert reply.status == 403
    assert reply.json()["message"].startswith(message)


def test_a_timestamp_within_five_minutes_is_accepted(server: Server, api: Api) -> None:
    target = f"{api.path}/images"
    headers = signed(server, "GET", target)
    server.clock.offset = 240

    assert send(server, "GET", target, headers).status == 200


def test_an_incomplete_authorization_header_is_refused(server: Server, api: Api) -> None:
    headers = {"authorization": "AWS4-HMAC-SHA256 Credential=x", "x-amz-date": "20250314T101501Z"}

    reply = send(server, "GET", f"{api.path}/images", headers)

    assert reply.status == 403
    assert "requires 'SignedHeaders'" in reply.json()["message"]


# --- routing and responses ---------------------------------------------------------------


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


@pytest.mark.parametrize(
    "behaviour",
    [
        lambda _event: FunctionFailed('{"errorMessage": "boom", "errorType": "Exception"}'),
        lambda _event: 1 / 0,
        lambda _event: {"statusCode": "200", "body": "x"},
        lambda _event: {"statusCode": 200, "body": {"not": "a string"}},
        lambda _event: {"statusCode": 200, "body": "%%%", "isBase64Encoded": True},
        lambda _event: {"statusCode": 200, "headers": {"x": "a\r\nset-cookie: evil"}},
    ],
    ids=["function-error", "invoke-raises", "status-text", "body-object", "bad-base64", "crlf"],
)
def test_a_failed_function_or_malformed_response_is_a_500(
    server: Server, api: Api, behaviour: Callable[[dict[str, Any]], Any]
) -> None:
    server.functions.behaviours[RECORDER_ARN] = behaviour

    reply = signed_send(server, "GET", f"{api.path}/images")

    assert reply.status == 500
    assert reply.json() == {"message": "Internal Server Error"}
    assert "apigw-requestid" in reply.headers


def test_the_proxy_response_becomes_the_http_response(server: Server, api: Api) -> None:
    server.functions.behaviours[RECORDER_ARN] = lambda _event: {
        "statusCode": 201,
        "headers": {"x-count": 3, "content-type": "image/png"},
        "cookies": ["a=1; Path=/", "b=2"],
        "body": "iVBORw0KGgo=",
        "isBase64Encoded": True,
    }
    connection = http.client.HTTPConnection(server.netloc, timeout=10)
    target = f"{api.path}/images"
    connection.request("GET", target, headers=signed(server, "GET", target))
    response = connection.getresponse()

    assert response.status == 201
    assert response.read() == b"\x89PNG\r\n\x1a\n"
    assert response.getheader("x-count") == "3"
    assert response.getheader("content-type") == "image/png"
    assert response.headers.get_all("set-cookie") == ["a=1; Path=/", "b=2"]
    connection.close()


def test_a_result_without_status_code_is_a_200_json_body(server: Server, api: Api) -> None:
    server.functions.behaviours[RECORDER_ARN] = lambda _event: {"items": ["ü"]}

    reply = signed_send(server, "GET", f"{api.path}/images")

    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == {"items": ["ü"]}


def test_requests_outside_the_prefix_still_reach_moto(server: Server, api: Api) -> None:
    apis = client(server, "apigatewayv2")
    s3 = client(server, "s3")
    s3.create_bucket(Bucket="imgcli-execute-api-test")

    assert api.api_id in [item["ApiId"] for item in apis.get_apis()["Items"]]
    assert "imgcli-execute-api-test" in [b["Name"] for b in s3.list_buckets()["Buckets"]]


# --- the real retrieve function behind the API ------------------------------------------


def test_the_retrieve_function_serves_awkward_keys_through_the_api(server: Server) -> None:
    api = create_api(
        server, RETRIEVE_ARN, {"GET /images": "AWS_IAM", "GET /images/{key+}": "AWS_IAM"}
    )
    dynamodb = client(server, "dynamodb")
    if TABLE not in dynamodb.list_tables()["TableNames"]:
        dynamodb.create_table(TableName=TABLE, **records.TABLE_DEFINITION)
    for key in AWKWARD_KEYS:
        dynamodb.put_item(TableName=TABLE, Item=records.to_item(image(key)))
    server.functions.behaviours[RETRIEVE_ARN] = lambda event: retrieve.respond(
        event,
        dynamodb,  # calls back into the same server, from inside a request to it
        TABLE,
        secret=cursor.secret_for(TABLE, {}),
        now=int(time.time()),
        logger=JsonLogger("retrieve", stream=io.StringIO()),
    )

    for key in AWKWARD_KEYS:
        reply = signed_send(server, "GET", f"{api.path}/images/{quote(key, safe='/')}")
        assert reply.status == 200, (key, reply.body)
        assert reply.json()["key"] == key
    listing = signed_send(server, "GET", f"{api.path}/images?limit=1000&prefix=a%2Bb")
    missing = signed_send(server, "GET", f"{api.path}/images/no%20such.jpg")

    assert listing.status == 200
    assert [item["key"] for item in listing.json()["items"]] == ["a+b.jpg"]
    assert missing.status == 404
    assert missing.json()["error"]["code"] == "not_found"


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


def test_api_url_puts_the_api_under_the_prefix() -> None:
    assert api_url("http://127.0.0.1:4599/", "abc123") == "http://127.0.0.1:4599/_api/abc123"
    assert API_PATH_PREFIX == "/_api"


def test_a_plain_result_is_json_and_a_bare_proxy_response_is_text() -> None:
    assert http_response("hello").body == b'"hello"'
    bare = http_response({"statusCode": 204})
    assert (bare.status, bare.body) == (204, b"")
    assert ("content-type", "text/plain; charset=utf-8") in bare.headers
