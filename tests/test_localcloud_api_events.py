"""The HTTP API's payload 2.0 event and proxy response on the local cloud.

Through a real server (``tests.execute_api_server``): the event a recording ``invoke``
receives, the HTTP response a function's result becomes, and the real
``lambdas.retrieve.respond`` against a DynamoDB table in the same moto.
"""

from __future__ import annotations

import http.client
import io
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest
from moto.core.models import DEFAULT_ACCOUNT_ID

from imgcli.lambdas import cursor, records, retrieve
from imgcli.lambdas.logs import JsonLogger
from imgcli.localcloud.api_events import http_response
from imgcli.localcloud.execute_api import FunctionFailed
from tests.eventdata import load_event
from tests.execute_api_server import (
    KEY,
    RECORDER_ARN,
    RETRIEVE_ARN,
    ROUTES,
    Api,
    Server,
    client,
    create_api,
    image_path,
    serving_execute_api,
    signed,
    signed_send,
)
from tests.retrievedata import AWKWARD_KEYS, image

TABLE = "imgcli-execute-api-images"


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


# --- responses -------------------------------------------------------------------------


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


def test_a_plain_result_is_json_and_a_bare_proxy_response_is_text() -> None:
    assert http_response("hello").body == b'"hello"'
    bare = http_response({"statusCode": 204})
    assert (bare.status, bare.body) == (204, b"")
    assert ("content-type", "text/plain; charset=utf-8") in bare.headers


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
