"""``GalleryApi``'s errors, against the local cloud's execute-api in process: what the
function or the API answers that is not retried, and a network that cannot be reached.

The API's function (``tests.gallery_api_harness``) can be scripted to answer with an
error; sleeps are recorded, never slept.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from imgcli.errors import ExitCode, NetworkError, NoStackError, RemoteError
from imgcli.gallery_api import GalleryApi
from tests.gallery_api_harness import (
    LocalApi,
    Retrieve,
    Sleeps,
    answer,
    closed_port,
    fresh_function,
    gallery,
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


# --- answers that are not retried ---------------------------------------------------------


def test_a_function_error_is_not_retried_and_its_message_is_kept(
    api: GalleryApi, function: Retrieve, sleeps: Sleeps
) -> None:
    function.always = answer(
        400, '{"error":{"code":"invalid_parameter","message":"limit must be 1-1000"}}'
    )

    with pytest.raises(RemoteError) as failed:
        api.get_image("x.jpg")

    assert "400" in failed.value.message
    assert "limit must be 1-1000" in failed.value.message
    assert sleeps.delays == []


def test_a_failing_function_is_a_500_without_retries(
    api: GalleryApi, function: Retrieve, sleeps: Sleeps
) -> None:
    function.always = lambda _event: 1 / 0  # the local cloud answers 500, as API Gateway

    with pytest.raises(RemoteError) as failed:
        api.get_image("x.jpg")

    assert "500" in failed.value.message
    assert "Internal Server Error" in failed.value.message
    assert len(function.events) == 1


def test_a_wrong_api_url_is_not_mistaken_for_a_missing_image(
    local_api: LocalApi, function: Retrieve, sleeps: Sleeps
) -> None:
    api = gallery(local_api.url.rsplit("/", 1)[0] + "/nosuchapi", sleeps)

    with pytest.raises(NoStackError) as failed:
        api.get_image("stream/1.jpg")

    assert "is gone" in failed.value.message and "404" in failed.value.message
    assert failed.value.exit_code == ExitCode.NO_STACK
    assert failed.value.hint is not None and "bootstrap" in failed.value.hint


def test_a_listing_that_is_not_json_is_a_remote_error(api: GalleryApi, function: Retrieve) -> None:
    function.always = answer(200, "<html>hello</html>", **{"content-type": "text/html"})

    with pytest.raises(RemoteError, match="does not understand"):
        list(api.list_images())


# --- the network ---------------------------------------------------------------------------


def test_connection_refused_is_a_network_error_naming_the_url(sleeps: Sleeps) -> None:
    url = f"http://127.0.0.1:{closed_port()}/_api/abc"
    api = gallery(url, sleeps, stack="dev")

    with pytest.raises(NetworkError) as failed:
        api.get_image("a.jpg")

    assert url in failed.value.message
    assert "stack 'dev'" in failed.value.message
    assert "refused" in failed.value.message.lower()
    assert failed.value.hint is not None and "imgcli local start" in failed.value.hint
    assert sleeps.delays == []


def test_an_unknown_host_is_a_network_error_without_the_local_hint(sleeps: Sleeps) -> None:
    api = gallery("http://imgcli-no-such-host.invalid/api", sleeps)

    with pytest.raises(NetworkError) as failed:
        api.get_image("a.jpg")

    assert "imgcli-no-such-host.invalid" in failed.value.message
    assert failed.value.hint is not None and "local start" not in failed.value.hint
