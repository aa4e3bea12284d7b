"""The retrieve function against moto: listing pages, one image, and every bad request.

Requests are the real HTTP API event fixtures in ``tests/events/``, adjusted per test.
Items are written with ``records.to_item``, as the save function writes them.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imgcli.lambdas import cursor, records, retrieve
from imgcli.lambdas.logs import JsonLogger
from imgcli.lambdas.records import ImageRecord
from tests.eventdata import load_event

NOW = 1_750_000_000
SEQUENCER = "0" * 64
AWKWARD_KEYS = [
    "holiday 2024/naïve+café 100%/日本 #1.jpg",
    "a+b.jpg",
    "a b.jpg",
    "100%.png",
    "%2F%20literally.jpg",
    "dir/sub dir//x.jpg",
    "/leading-slash.jpg",
    "emoji 🙂 ☃.gif",
    "question?mark&amp=1.jpg",
    "Ünïcödé/ñ/ß.png",
    "k" * 1024,
]


def image(key: str, **fields: Any) -> ImageRecord:
    defaults: dict[str, Any] = {
        "status": "active",
        "sequencer": SEQUENCER,
        "size": 1234,
        "etag": "d41d8cd98f00b204e9800998ecf8427e",
        "content_type": "image/jpeg",
        "format": "JPEG",
        "width": 640,
        "height": 480,
        "uploaded_at": "2025-03-14T10:00:00Z",
        "indexed_at": "2025-03-14T10:00:01Z",
    }
    return ImageRecord(key=key, **(defaults | fields))


def tombstone(key: str, expires_at: int = NOW + 86400) -> ImageRecord:
    return ImageRecord(
        key=key,
        status="deleted",
        sequencer=SEQUENCER,
        deleted_at="2025-03-14T11:00:00Z",
        expires_at=expires_at,
    )


def put(dynamodb: Any, table: str, items: Iterable[ImageRecord]) -> None:
    """Write through BatchWriteItem, 25 at a time, retrying what comes back unprocessed."""
    requests = [{"PutRequest": {"Item": records.to_item(r)}} for r in items]
    for start in range(0, len(requests), 25):
        pending = {table: requests[start : start + 25]}
        while pending:
            pending = dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems")


def list_event(query: str | dict[str, str] = "") -> dict[str, Any]:
    event = load_event("apigw_list_images")
    raw = query if isinstance(query, str) else urlencode(query, quote_via=quote)
    event["rawQueryString"] = raw
    event.pop("queryStringParameters", None)
    if isinstance(query, dict) and query:
        event["queryStringParameters"] = dict(query)
    return event


def get_event(key: str) -> dict[str, Any]:
    event = load_event("apigw_get_image")
    event["pathParameters"] = {"key": key}
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/images/{key}"
    return event


class Api:
    """Calls ``respond`` as the handler would, and keeps the log lines it wrote."""

    def __init__(self, dynamodb: Any, table: str, *, now: int = NOW) -> None:
        self.dynamodb = dynamodb
        self.table = table
        self.now = now
        self.secret = cursor.secret_for(table, {})
        self.log = io.StringIO()

    def __call__(self, event: Any) -> dict[str, Any]:
        response = retrieve.respond(
            event,
            self.dynamodb,
            self.table,
            secret=self.secret,
            now=self.now,
            logger=JsonLogger("retrieve", stream=self.log),
        )
        assert response["isBase64Encoded"] is False
        assert response["headers"]["content-type"] == "application/json"
        assert isinstance(response["body"], str)
        return response

    def body(self, event: Any, status: int = 200) -> Any:
        response = self(event)
        assert response["statusCode"] == status, response["body"]
        return json.loads(response["body"])

    def pages(self, **query: str) -> Iterator[dict[str, Any]]:
        """Every page of one listing, following ``next_cursor`` to the end."""
        while True:
            page = self.body(list_event(query))
            yield page
            if page["next_cursor"] is None:
                return
            query["cursor"] = page["next_cursor"]

    def list_keys(self, **query: str) -> list[str]:
        limit = int(query.get("limit", retrieve.DEFAULT_LIMIT))
        keys: list[str] = []
        for page in self.pages(**query):
            assert len(page["items"]) <= limit
            keys.extend(item["key"] for item in page["items"])
        return keys

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.getvalue().splitlines()]


def assert_client_error(response: dict[str, Any], status: int = 400) -> dict[str, Any]:
    assert response["statusCode"] == status, response["body"]
    assert response["headers"]["content-type"] == "application/json"
    error: dict[str, Any] = json.loads(response["body"])["error"]
    assert set(error) == {"code", "message"}
    assert error["code"]
    assert error["message"]
    return error


@pytest.fixture
def api(dynamodb_client: Any, table_name: str) -> Api:
    return Api(dynamodb_client, table_name)


# --- listing ---------------------------------------------------------------------------


def test_ten_thousand_images_page_by_page_without_gaps_or_duplicates(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    live = [f"photos/{i:05d}-{'ab'[i % 2]}.jpg" for i in range(10_000)]
    # Expired, invalid and deleted items sit between the live ones, so filters make
    # DynamoDB pages short and page boundaries land next to skipped items.
    expired = [f"photos/{i:05d}-c.jpg" for i in range(0, 10_000, 17)]
    invalid = [f"photos/{i:05d}-d.jpg" for i in range(0, 10_000, 23)]
    deleted = [f"photos/{i:05d}-e.jpg" for i in range(0, 10_000, 29)]
    started = time.perf_counter()
    # Bare records: moto's response serialiser costs time per attribute returned.
    put(
        api.dynamodb,
        api.table,
        [ImageRecord(k, "active", SEQUENCER) for k in live]
        + [ImageRecord(k, "active", SEQUENCER, expires_at=NOW - 60) for k in expired]
        + [ImageRecord(k, "invalid", SEQUENCER, reason="not an image") for k in invalid]
        + [tombstone(k) for k in deleted],
    )
    timings = {"load": time.perf_counter() - started}
    # moto's Query sorts and walks the whole index partition on every call (~0.15 s here),
    # so the odd limit pages through one tenth of the images, still inside the big table.
    listings: dict[str, tuple[dict[str, str], list[str]]] = {
        "default limit": ({}, live),
        "limit=1000": ({"limit": "1000"}, live),
        "limit=37, prefix photos/03": (
            {"limit": "37", "prefix": "photos/03"},
            [k for k in live if k.startswith("photos/03")],
        ),
    }
    for name, (query, expected) in listings.items():
        begin = time.perf_counter()
        assert api.list_keys(**query) == sorted(expected), name
        timings[name] = time.perf_counter() - begin
    with capsys.disabled():
        print(
            "\n10,000-image listing: "
            + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in timings.items())
        )


def test_list_event_fixture(api: Api) -> None:
    put(
        api.dynamodb,
        api.table,
        [image(k) for k in ("holiday 2024/a.jpg", "holiday 2024/b.jpg", "holiday 2024/c.jpg")]
        + [image("holiday 2024.jpg"), image("holiday 2023/a.jpg")],
    )
    page = api.body(load_event("apigw_list_images"))  # limit=2, prefix "holiday 2024/"
    assert [item["key"] for item in page["items"]] == ["holiday 2024/a.jpg", "holiday 2024/b.jpg"]
    rest = api.body(list_event({"prefix": "holiday 2024/", "cursor": page["next_cursor"]}))
    assert [item["key"] for item in rest["items"]] == ["holiday 2024/c.jpg"]
    assert rest["next_cursor"] is None


def test_items_are_the_public_json_of_each_record(api: Api) -> None:
    record = image("a.jpg", camera_make="Canon", taken_at="2024:01:02 03:04:05", orientation=6)
    put(api.dynamodb, api.table, [record])
    page = api.body(list_event())
    assert page == {"items": [records.to_public_json(record)], "next_cursor": None}
    assert "sequencer" not in page["items"][0]


def test_empty_table_gives_an_empty_last_page(api: Api) -> None:
    assert api.body(list_event()) == {"items": [], "next_cursor": None}


def test_prefix_listing(api: Api) -> None:
    inside = ["a/", "a/1.jpg", "a/b/2.jpg", "a/b c/3.jpg", "a/é.jpg"]
    outside = ["a", "a.jpg", "ab/1.jpg", "A/1.jpg", "b/a/1.jpg", "/a/1.jpg"]
    put(api.dynamodb, api.table, [image(k) for k in inside + outside])
    assert api.list_keys(prefix="a/") == sorted(inside)
    assert api.list_keys(prefix="a/", limit="2") == sorted(inside)
    assert api.list_keys(prefix="a/b") == ["a/b c/3.jpg", "a/b/2.jpg"]
    assert api.list_keys(prefix="zzz") == []
    assert api.list_keys(prefix="") == sorted(inside + outside)


def test_prefix_with_awkward_characters(api: Api) -> None:
    put(api.dynamodb, api.table, [image(k) for k in AWKWARD_KEYS])
    for key in AWKWARD_KEYS:
        assert api.list_keys(prefix=key) == [key]
    # The form-encoded spelling: "+" is a space in a query string.
    page = api.body(list_event("prefix=a+b.jpg"))
    assert [item["key"] for item in page["items"]] == ["a b.jpg"]


def test_status_invalid_lists_only_invalid_images(api: Api) -> None:
    put(
        api.dynamodb,
        api.table,
        [image("good.jpg"), tombstone("gone.jpg")]
        + [
            image(f"bad/{i}.jpg", status="invalid", reason="cannot identify image")
            for i in range(5)
        ],
    )
    pages = list(api.pages(status="invalid", limit="2"))
    assert len(pages) == 3
    items = [item for page in pages for item in page["items"]]
    assert [item["key"] for item in items] == [f"bad/{i}.jpg" for i in range(5)]
    assert {(item["status"], item["reason"]) for item in items} == {
        ("invalid", "cannot identify image")
    }
    assert api.list_keys(status="active") == ["good.jpg"]


def test_tombstones_and_expired_items_are_never_listed(api: Api) -> None:
    put(
        api.dynamodb,
        api.table,
        [
            image("live.jpg"),
            image("expires-later.jpg", expires_at=NOW + 1),
            image("expired.jpg", expires_at=NOW - 1),
            image("expires-now.jpg", expires_at=NOW),
            image("expired-invalid.jpg", status="invalid", reason="x", expires_at=NOW - 1),
            tombstone("deleted.jpg"),
            tombstone("deleted-long-ago.jpg", expires_at=NOW - 86400),
        ],
    )
    for limit in ("1", "2", "100"):
        assert api.list_keys(limit=limit) == ["expires-later.jpg", "live.jpg"]
    assert api.list_keys(status="invalid") == []


def test_a_run_of_expired_items_costs_few_queries_and_loses_nothing(api: Api) -> None:
    put(
        api.dynamodb,
        api.table,
        [image(f"old/{i:04d}.jpg", expires_at=NOW - 1) for i in range(3000)]
        + [image("zz-live.jpg")],
    )
    pages = list(api.pages(limit="1"))
    # The query budget ends the first request before the live item: an empty page whose
    # cursor resumes after what it skipped, then the item.
    assert pages[0]["items"] == []
    assert pages[0]["next_cursor"] is not None
    assert [item["key"] for page in pages for item in page["items"]] == ["zz-live.jpg"]
    assert len(pages) <= 3


def test_next_cursor_is_null_exactly_when_nothing_follows(api: Api) -> None:
    put(api.dynamodb, api.table, [image(f"{i}.jpg") for i in range(4)])
    assert api.body(list_event({"limit": "4"}))["next_cursor"] is None
    assert api.body(list_event({"limit": "3"}))["next_cursor"] is not None
    put(api.dynamodb, api.table, [image("9.jpg", expires_at=NOW - 1)])
    # The fifth item is expired: the page of four is still the last one.
    assert api.body(list_event({"limit": "4"}))["next_cursor"] is None


def test_cursor_survives_changes_between_pages(api: Api) -> None:
    put(api.dynamodb, api.table, [image(f"{i}.jpg") for i in range(6)])
    first = api.body(list_event({"limit": "3"}))
    assert [item["key"] for item in first["items"]] == ["0.jpg", "1.jpg", "2.jpg"]
    # The last returned key is deleted and a new key lands before and after the position.
    put(api.dynamodb, api.table, [tombstone("2.jpg"), image("1a.jpg"), image("2a.jpg")])
    rest = api.body(list_event({"limit": "10", "cursor": first["next_cursor"]}))
    assert [item["key"] for item in rest["items"]] == ["2a.jpg", "3.jpg", "4.jpg", "5.jpg"]


def test_response_body_stays_under_one_megabyte_with_long_keys(api: Api) -> None:
    keys = [f"{i:04d}/" + "é" * 500 + "x" * 19 for i in range(1500)]
    assert {len(k.encode()) for k in keys} == {cursor.MAX_KEY_BYTES}
    put(api.dynamodb, api.table, [image(k) for k in keys])
    query = {"limit": "1000"}
    seen: list[str] = []
    sizes: list[int] = []
    while True:
        response = api(list_event(query))
        sizes.append(len(response["body"].encode("utf-8")))
        page = json.loads(response["body"])
        seen.extend(item["key"] for item in page["items"])
        if page["next_cursor"] is None:
            break
        query["cursor"] = page["next_cursor"]
    assert seen == keys
    assert max(sizes) <= retrieve.MAX_BODY_BYTES
    assert max(sizes) > retrieve.MAX_BODY_BYTES * 0.9  # the cap, not the limit, ended pages
    assert len(sizes) >= 2


# --- one image -------------------------------------------------------------------------


def test_get_image_event_fixture(api: Api) -> None:
    event = load_event("apigw_get_image")
    key = event["pathParameters"]["key"]
    assert key == "holiday 2024/naïve+café 100%/日本 #1.jpg"
    put(api.dynamodb, api.table, [image(key)])
    assert api.body(event) == records.to_public_json(image(key))


def test_named_stage_does_not_change_the_key(api: Api) -> None:
    event = load_event("apigw_get_image_named_stage")
    assert event["rawPath"].startswith("/prod/images/")
    put(api.dynamodb, api.table, [image(event["pathParameters"]["key"])])
    assert api.body(event)["key"] == event["pathParameters"]["key"]


@pytest.mark.parametrize("key", AWKWARD_KEYS)
def test_awkward_keys_round_trip(api: Api, key: str) -> None:
    others = [k for k in AWKWARD_KEYS if k != key]
    put(api.dynamodb, api.table, [image(k, size=i) for i, k in enumerate([key, *others])])
    found = api.body(get_event(key))
    assert found["key"] == key
    assert found["size"] == 0


def test_percent_sequences_in_a_key_are_not_decoded_again(api: Api) -> None:
    put(api.dynamodb, api.table, [image("a b.jpg")])
    assert_client_error(api(get_event("a%20b.jpg")), 404)
    assert_client_error(api(get_event("a+b.jpg")), 404)


def test_invalid_image_is_returned_with_its_reason(api: Api) -> None:
    put(api.dynamodb, api.table, [image("bad.jpg", status="invalid", reason="truncated file")])
    found = api.body(get_event("bad.jpg"))
    assert (found["status"], found["reason"]) == ("invalid", "truncated file")


@pytest.mark.parametrize(
    "stored",
    [
        None,
        tombstone("x.jpg"),
        tombstone("x.jpg", expires_at=NOW - 5),
        image("x.jpg", expires_at=NOW - 5),
    ],
)
def test_absent_deleted_or_expired_image_is_404(api: Api, stored: ImageRecord | None) -> None:
    if stored:
        put(api.dynamodb, api.table, [stored])
    error = assert_client_error(api(get_event("x.jpg")), 404)
    assert error["code"] == "not_found"


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


@pytest.fixture
def first_cursor(api: Api) -> str:
    put(api.dynamodb, api.table, [image(f"a/{i}.jpg") for i in range(5)])
    token = api.body(list_event({"limit": "2", "prefix": "a/"}))["next_cursor"]
    assert isinstance(token, str)
    return token


def test_tampered_truncated_or_foreign_cursors_are_400(api: Api, first_cursor: str) -> None:
    swapped = "B" if first_cursor[5] != "B" else "C"
    cases = {
        "tampered": {"prefix": "a/", "cursor": first_cursor[:5] + swapped + first_cursor[6:]},
        "truncated": {"prefix": "a/", "cursor": first_cursor[:-3]},
        "other prefix": {"prefix": "a", "cursor": first_cursor},
        "no prefix": {"cursor": first_cursor},
        "other status": {"prefix": "a/", "status": "invalid", "cursor": first_cursor},
        "other table": {
            "prefix": "a/",
            "cursor": cursor.encode(
                "a/1.jpg",
                table="another-table",
                status="active",
                prefix="a/",
                secret=cursor.secret_for("another-table", {}),
            ),
        },
    }
    for name, query in cases.items():
        error = assert_client_error(api(list_event(query)))
        assert error["code"] == "invalid_cursor", name
    # The genuine cursor still works.
    assert api.body(list_event({"prefix": "a/", "cursor": first_cursor}))["items"]


def test_cursor_signed_with_another_secret_is_400(api: Api, first_cursor: str) -> None:
    api.secret = b"rotated"
    assert_client_error(api(list_event({"prefix": "a/", "cursor": first_cursor})))


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


# --- logging and the handler shell -----------------------------------------------------


def test_one_log_line_per_request(api: Api) -> None:
    put(api.dynamodb, api.table, [image("a.jpg"), image("b.jpg")])
    api(list_event())
    api(get_event("missing.jpg"))
    first, second = api.log_lines()
    assert first["route"] == "GET /images"
    assert (first["status_code"], first["items"]) == (200, 2)
    assert first["api_request_id"] == "Hx2KqgjxIAMEbXw="
    assert second["route"] == "GET /images/{key+}"
    assert (second["status_code"], second["items"], second["error_code"]) == (404, 0, "not_found")


def test_garbage_event_strings_cannot_break_the_log_line(api: Api) -> None:
    event = list_event()
    event["routeKey"] = "GET /\ud800"
    assert_client_error(api(event), 404)
    assert api.log_lines()[0]["route"] == "GET /\\ud800"


class LambdaContext:
    aws_request_id = "6f1c1a0e-8d3b-4c4f-9a56-2b1f0f7c9d10"


@pytest.fixture
def deployed(
    table_name: str, monkeypatch: pytest.MonkeyPatch, dynamodb_client: Any
) -> Iterator[str]:
    monkeypatch.setenv("TABLE_NAME", table_name)
    retrieve._runtime.cache_clear()
    yield table_name
    retrieve._runtime.cache_clear()


def test_handler_serves_the_fixture_events(
    deployed: str, dynamodb_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    event = load_event("apigw_get_image")
    put(dynamodb_client, deployed, [image(event["pathParameters"]["key"])])
    response = retrieve.handler(event, LambdaContext())
    assert response["statusCode"] == 200
    listing = retrieve.handler(load_event("apigw_list_images"), LambdaContext())
    assert len(json.loads(listing["body"])["items"]) == 1
    line = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert line["request_id"] == LambdaContext.aws_request_id
    assert line["function"] == "retrieve"


def test_handler_builds_one_client_per_runtime(deployed: str) -> None:
    retrieve.handler(load_event("apigw_list_images"), LambdaContext())
    client = retrieve._runtime()[0]
    retrieve.handler(load_event("apigw_list_images"), None)
    assert retrieve._runtime()[0] is client


def test_handler_requires_a_table_name(deployed: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TABLE_NAME")
    retrieve._runtime.cache_clear()
    with pytest.raises(RuntimeError, match="TABLE_NAME"):
        retrieve.handler(load_event("apigw_list_images"), None)


def test_importing_the_function_creates_no_client() -> None:
    code = "import sys, lambdas.retrieve; assert 'boto3' not in sys.modules, 'boto3 imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
