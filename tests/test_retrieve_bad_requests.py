"""The retrieve function against moto: every bad request gets a JSON client error.

Bad queries, malformed and wrongly routed events, random requests, and a DynamoDB failure
that must not pass for the client's fault. Requests are the real HTTP API event fixtures
in ``tests/events/``, adjusted per test (``tests.retrievedata``).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.retrievedata import (
    Api,
    assert_client_error,
    get_event,
    image,
    list_event,
    put,
)


@pytest.fixture
def api(dynamodb_client: Any, table_name: str) -> Api:
    return Api(dynamodb_client, table_name)


# --- bad requests ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "limit=abc",
        "limit=0",
        "limit=-1",
        "limit=1001",
        "limit=99999999999999999999999999999999999999999999",
        "limit=" + "9" * 5000,
        "limit=",
        "limit",
        "limit=1.5",
        "limit=1e3",
        "limit=+5",
        "limit=%205",
        "limit=5_0",
        "limit=%EF%BC%95",  # fullwidth digit five
        "limit=1&limit=2",
        "status=deleted",
        "status=ACTIVE",
        "status=",
        "status=active,invalid",
        "cursor=",
        "cursor=garbage!!",
        "cursor=%FF%FE",
        "cursor=" + "A" * 10_000,
        "prefix=%FF",
        "prefix=%ED%A0%80",  # an encoded lone surrogate
        "prefix=" + "x" * 1025,
        "prefix=a&prefix=b",
        "bogus=1",
        "Limit=5",
        "%%%",
        "&".join(f"p{i}=1" for i in range(100)),
    ],
)
def test_bad_query_is_a_400(api: Api, query: str) -> None:
    put(api.dynamodb, api.table, [image("a.jpg")])
    assert_client_error(api(list_event(query)))


def test_ignores_presigned_request_parameters(api: Api) -> None:
    put(api.dynamodb, api.table, [image("a.jpg")])
    page = api.body(list_event("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=60&limit=5"))
    assert len(page["items"]) == 1


def _with(event: dict[str, Any], *changes: tuple[tuple[str, ...], Any]) -> dict[str, Any]:
    for path, value in changes:
        target = event
        for name in path[:-1]:
            target = target[name]
        if value is _DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
    return event


_DELETE = object()


@pytest.mark.parametrize(
    ("make_event", "status"),
    [
        (lambda: _with(list_event(), (("routeKey",), "GET /videos")), 404),
        (lambda: _with(list_event(), (("routeKey",), "$default")), 404),
        (lambda: _with(list_event(), (("routeKey",), _DELETE)), 404),
        (lambda: _with(list_event(), (("routeKey",), 42)), 404),
        (lambda: _with(list_event(), (("routeKey",), "GET /images/{id}")), 404),
        (lambda: _with(list_event(), (("requestContext", "http", "method"), "POST")), 405),
        (lambda: _with(list_event(), (("requestContext", "http", "method"), "DELETE")), 405),
        (
            lambda: _with(
                get_event("a.jpg"),
                (("routeKey",), "DELETE /images/{key+}"),
                (("requestContext", "http", "method"), "DELETE"),
            ),
            405,
        ),
        (lambda: _with(get_event("a.jpg"), (("pathParameters",), _DELETE)), 400),
        (lambda: _with(get_event("a.jpg"), (("pathParameters",), None)), 400),
        (lambda: _with(get_event("a.jpg"), (("pathParameters",), {})), 400),
        (lambda: _with(get_event("a.jpg"), (("pathParameters",), ["a.jpg"])), 400),
        (lambda: _with(get_event("a.jpg"), (("pathParameters", "key"), "")), 400),
        (lambda: _with(get_event("a.jpg"), (("pathParameters", "key"), 7)), 400),
        (lambda: _with(get_event("a.jpg"), (("pathParameters", "key"), "\ud800.jpg")), 400),
        (lambda: _with(get_event("a.jpg"), (("pathParameters", "key"), "k" * 2049)), 400),
        (lambda: _with(list_event(), (("rawQueryString",), 12)), 400),
        (lambda: _with(list_event(), (("rawQueryString",), ["limit=1"])), 400),
        (lambda: _with(list_event(), (("version",), "1.0")), 400),
        (lambda: _with(list_event(), (("requestContext",), None)), 200),
        (lambda: _with(list_event(), (("rawQueryString",), _DELETE)), 200),
        (lambda: None, 400),
        (lambda: [], 400),
        (lambda: "GET /images", 400),
        (lambda: b"\xff\x00", 400),
        (lambda: {}, 400),
        (lambda: {"version": "2.0"}, 404),
        (lambda: {"version": "2.0", "routeKey": "GET /images/{key+}"}, 400),
        (lambda: {"version": "2.0", "routeKey": "GET /images", "rawQueryString": None}, 200),
    ],
)
def test_malformed_requests_get_a_json_answer_never_a_500(
    api: Api, make_event: Any, status: int
) -> None:
    response = api(make_event())
    if status == 200:
        assert response["statusCode"] == 200
    else:
        assert_client_error(response, status)


def test_wrong_method_says_which_is_allowed(api: Api) -> None:
    response = api(_with(list_event(), (("requestContext", "http", "method"), "PUT")))
    assert_client_error(response, 405)
    assert response["headers"]["allow"] == "GET"


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    query=st.text(max_size=60)
    | st.lists(
        st.tuples(
            st.sampled_from(["limit", "cursor", "prefix", "status", "x"]),
            st.text(max_size=12),
        ),
        max_size=4,
    ).map(lambda pairs: urlencode(pairs)),
    route=st.sampled_from(["GET /images", "GET /images/{key+}", "POST /images", "$default"]),
    key=st.none() | st.text(max_size=20),
)
def test_random_requests_never_produce_a_server_error(
    api: Api, query: str, route: str, key: str | None
) -> None:
    event = list_event(query)
    event["routeKey"] = route
    event["pathParameters"] = {"key": key} if key is not None else None
    response = api(event)
    assert response["statusCode"] < 500
    json.loads(response["body"])


def test_a_dynamodb_failure_is_not_disguised_as_a_client_error(dynamodb_client: Any) -> None:
    api = Api(dynamodb_client, "no-such-table")
    with pytest.raises(dynamodb_client.exceptions.ResourceNotFoundException):
        api(list_event())
    assert api.log_lines()[-1]["level"] == "ERROR"
