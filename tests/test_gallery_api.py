"""``GalleryApi`` against the local cloud's own pieces, in process: listing, one image,
signing, and the request it builds.

A werkzeug server on 127.0.0.1 runs moto behind ``ExecuteApi`` (the local cloud's
execute-api: routing, SigV4 checking, the payload 2.0 event), and its ``invoke`` runs the
real ``lambdas.retrieve.respond`` against a DynamoDB table in that same moto, filled with
``lambdas.records.to_item`` (``tests.gallery_api_harness``). So every request here is
really signed, routed, decoded and answered as on the local cloud. ``invoke`` records each
call (how streaming is proven). Retries are in ``test_gallery_api_retries.py``, errors in
``test_gallery_api_errors.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.credentials import Credentials, RefreshableCredentials

from imgcli.errors import AuthError
from imgcli.gallery_api import GalleryApi, encode_key, encode_query, region_of_api
from imgcli.lambdas import records
from tests.gallery_api_harness import (
    AWKWARD_KEYS,
    INVALID,
    KEY,
    SECRET,
    STREAMED,
    LocalApi,
    Retrieve,
    Sleeps,
    closed_port,
    fresh_function,
    gallery,
    record,
    serving_local_api,
)


@pytest.fixture(scope="module")
def local_api() -> Iterator[LocalApi]:
    with serving_local_api() as served:
        yield served


@pytest.fixture
def function(local_api: LocalApi) -> Retrieve:
    return fresh_function(local_api)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def api(local_api: LocalApi, function: Retrieve, sleeps: Sleeps) -> GalleryApi:
    return gallery(local_api.url, sleeps)


# --- listing -----------------------------------------------------------------------------


def test_listing_yields_each_page_before_asking_for_the_next(
    api: GalleryApi, function: Retrieve
) -> None:
    listing = api.list_images(prefix="stream/", page_size=2)

    first = next(listing)
    requests_for_first_item = len(function.events)
    rest = list(listing)

    assert requests_for_first_item == 1
    assert [first["key"], *(item["key"] for item in rest)] == STREAMED
    assert len(function.events) == 3
    assert "cursor" not in function.queries()[0]
    assert all("cursor" in query for query in function.queries()[1:])


def test_pages_come_as_the_api_sends_them(api: GalleryApi, function: Retrieve) -> None:
    pages = list(api.list_pages(prefix="stream/", page_size=2))

    assert [[item["key"] for item in page] for page in pages] == [
        STREAMED[:2],
        STREAMED[2:4],
        STREAMED[4:],
    ]
    assert len(function.events) == 3


def test_a_limit_stops_the_listing_and_asks_only_for_what_is_left(
    api: GalleryApi, function: Retrieve
) -> None:
    items = list(api.list_images(prefix="stream/", limit=3, page_size=2))

    assert [item["key"] for item in items] == STREAMED[:3]
    assert [query["limit"] for query in function.queries()] == [["2"], ["1"]]
    assert list(api.list_images(limit=0)) == []
    assert len(function.events) == 2


def test_every_recorded_field_comes_through(api: GalleryApi) -> None:
    (item,) = api.list_images(prefix="stream/0")

    assert item == records.to_public_json(record("stream/0.jpg"))


def test_invalid_lists_only_the_unreadable_objects(api: GalleryApi, function: Retrieve) -> None:
    invalid = [item["key"] for item in api.list_images(invalid=True)]
    active = {item["key"] for item in api.list_images()}

    assert invalid == INVALID
    assert [query["limit"] for query in function.queries()] == [["100"], ["100"]]
    assert not active & set(INVALID)
    assert active == {*AWKWARD_KEYS, *STREAMED}


# --- one image -----------------------------------------------------------------------------


def test_get_image_returns_the_record_or_none(api: GalleryApi) -> None:
    found = api.get_image("stream/1.jpg")

    assert found == records.to_public_json(record("stream/1.jpg"))
    assert api.get_image("stream/none such.jpg") is None
    assert api.get_image(INVALID[0]) == records.to_public_json(
        record(
            INVALID[0],
            status="invalid",
            format=None,
            width=None,
            height=None,
            reason="not an image",
        )
    )


@pytest.mark.parametrize("key", AWKWARD_KEYS)
def test_awkward_keys_round_trip_through_path_and_query(api: GalleryApi, key: str) -> None:
    found = api.get_image(key)
    by_prefix = [item["key"] for item in api.list_images(prefix=key)]

    assert found is not None
    assert found["key"] == key
    assert key in by_prefix


def test_keys_are_encoded_once_and_dot_segments_survive() -> None:
    assert encode_key("a b/c+d%e.jpg") == "a%20b/c%2Bd%25e.jpg"
    assert encode_key("x/./y/../z") == "x/%2E/y/%2E%2E/z"
    assert encode_key("dir//x") == "dir//x"
    assert encode_query({"prefix": "a b+c", "limit": "5"}) == "prefix=a%20b%2Bc&limit=5"


# --- credentials --------------------------------------------------------------------------


def test_wrong_credentials_are_an_auth_error_naming_their_source(
    local_api: LocalApi, function: Retrieve, sleeps: Sleeps
) -> None:
    wrong = Credentials(KEY, "not-the-secret", method="shared-credentials-file")
    api = gallery(local_api.url, sleeps, credentials=wrong)

    with pytest.raises(AuthError) as refused:
        api.get_image("stream/1.jpg")

    assert "not authorised to call the stack's API" in refused.value.message
    assert "'shared-credentials-file'" in refused.value.message
    assert "signature" in refused.value.message
    assert function.events == []
    assert sleeps.delays == []


def test_refreshable_credentials_are_refreshed_per_request(
    local_api: LocalApi, function: Retrieve, sleeps: Sleeps
) -> None:
    refreshes: list[float] = []

    def refresh() -> dict[str, Any]:
        refreshes.append(time.time())
        soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60))
        return {"access_key": KEY, "secret_key": SECRET, "token": None, "expiry_time": soon}

    credentials = RefreshableCredentials.create_from_metadata(
        metadata=refresh(), refresh_using=refresh, method="sso"
    )
    refreshes.clear()
    api = gallery(local_api.url, sleeps, credentials=credentials)

    assert api.get_image("stream/1.jpg") is not None
    assert api.get_image("stream/2.jpg") is not None
    assert len(refreshes) == 2  # expiring within botocore's window: refreshed each time


def test_credentials_may_come_from_a_callable(
    local_api: LocalApi, function: Retrieve, sleeps: Sleeps
) -> None:
    api = gallery(local_api.url, sleeps, credentials=lambda: Credentials(KEY, SECRET))

    assert api.get_image("stream/1.jpg") is not None


# --- pure pieces ---------------------------------------------------------------------------


def test_the_region_comes_from_an_aws_api_url() -> None:
    assert region_of_api("https://a1b2c3.execute-api.eu-west-1.amazonaws.com") == "eu-west-1"
    assert region_of_api("http://127.0.0.1:4599/_api/a1b2c3") is None


def test_the_url_is_used_with_or_without_a_trailing_slash(
    local_api: LocalApi, function: Retrieve, sleeps: Sleeps
) -> None:
    api = gallery(local_api.url + "/", sleeps)

    assert api.get_image("stream/1.jpg") is not None
    assert urlsplit(api.api_url).path.endswith(urlsplit(local_api.url).path)


@pytest.mark.parametrize(
    "call",
    [
        lambda api: list(api.list_images(page_size=0)),
        lambda api: list(api.list_images(page_size=1001)),
        lambda api: list(api.list_images(limit=-1)),
        lambda api: api.get_image(""),
    ],
)
def test_impossible_requests_are_refused_before_sending(
    call: Callable[[GalleryApi], Any], sleeps: Sleeps
) -> None:
    api = gallery(f"http://127.0.0.1:{closed_port()}", sleeps)

    with pytest.raises(ValueError):
        call(api)
