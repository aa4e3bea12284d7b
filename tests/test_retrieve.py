"""The retrieve function against moto: one image, the log line, and the handler shell.

Requests are the real HTTP API event fixtures in ``tests/events/``, adjusted per test
(``tests.retrievedata``). Items are written with ``records.to_item``, as the save function
writes them. Listing is in ``test_retrieve_listing.py``, bad requests in
``test_retrieve_bad_requests.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imgcli.lambdas import records, retrieve
from imgcli.lambdas.records import ImageRecord
from tests.eventdata import load_event
from tests.retrievedata import (
    AWKWARD_KEYS,
    NOW,
    Api,
    assert_client_error,
    get_event,
    image,
    list_event,
    put,
    tombstone,
)


@pytest.fixture
def api(dynamodb_client: Any, table_name: str) -> Api:
    return Api(dynamodb_client, table_name)


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
    client = retrieve._runtime().dynamodb
    retrieve.handler(load_event("apigw_list_images"), None)
    assert retrieve._runtime().dynamodb is client


def test_handler_requires_a_table_name(deployed: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TABLE_NAME")
    retrieve._runtime.cache_clear()
    with pytest.raises(RuntimeError, match="TABLE_NAME"):
        retrieve.handler(load_event("apigw_list_images"), None)


def test_importing_the_function_creates_no_client() -> None:
    code = "import sys, lambdas.retrieve; assert 'boto3' not in sys.modules, 'boto3 imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
