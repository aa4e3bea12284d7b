"""The retrieve function against moto: listing pages and their cursors.

Pages follow ``next_cursor`` to the end, through prefixes, statuses, tombstones and
expired items, up to a slow 10,000-image listing; cursors are checked for tampering.
Requests are the real HTTP API event fixtures in ``tests/events/``, adjusted per test
(``tests.retrievedata``). Items are written with ``records.to_item``, as the save function
writes them.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from imgcli.lambdas import cursor, records, retrieve
from imgcli.lambdas.records import ImageRecord
from tests.eventdata import load_event
from tests.retrievedata import (
    AWKWARD_KEYS,
    NOW,
    SEQUENCER,
    Api,
    assert_client_error,
    image,
    list_event,
    put,
    signed_links,
    tombstone,
)


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


def test_response_body_stays_under_the_cap_with_long_keys_and_their_urls(api: Api) -> None:
    api.links = signed_links()
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


# --- cursors --------------------------------------------------------------------------


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
