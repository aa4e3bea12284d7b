"""``GalleryApi``'s retries, against the local cloud's execute-api in process: throttling
and unavailability with backoff, ``Retry-After``, a listing resumed mid-way, connections
reset, and the backoff itself.

The API's function (``tests.gallery_api_harness``) can be scripted to answer first with
an error. What an HTTP server cannot be made to do through a function (reset a
connection) is done by a raw socket server; sleeps are recorded, never slept.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Iterator

import pytest

from imgcli.errors import NetworkError, RemoteError
from imgcli.gallery_api import BACKOFF_CAP_S, GalleryApi, backoff_delay
from tests.gallery_api_harness import (
    STREAMED,
    Answer,
    LocalApi,
    Retrieve,
    Sleeps,
    answer,
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


# --- throttling and unavailability --------------------------------------------------------


@pytest.mark.parametrize(
    "throttled",
    [
        answer(429, '{"message":"Too Many Requests"}'),
        answer(400, '{"error":{"code":"TooManyRequestsException","message":"slow down"}}'),
        answer(503, '{"message":"Service Unavailable"}'),
    ],
    ids=["429", "throttling-code", "503"],
)
def test_throttling_is_retried_with_backoff_then_succeeds(
    api: GalleryApi, function: Retrieve, sleeps: Sleeps, throttled: Answer
) -> None:
    function.script.extend([throttled, throttled])

    found = api.get_image("stream/3.jpg")

    assert found is not None
    assert found["key"] == "stream/3.jpg"
    assert len(function.events) == 3
    assert len(sleeps.delays) == 2
    assert 0 <= sleeps.delays[0] <= 0.5
    assert 0 <= sleeps.delays[1] <= 1.0


def test_retry_after_sets_the_least_delay(
    api: GalleryApi, function: Retrieve, sleeps: Sleeps
) -> None:
    function.script.append(answer(429, "{}", **{"retry-after": "3"}))

    assert api.get_image("stream/3.jpg") is not None
    assert sleeps.delays[0] >= 3


def test_a_listing_resumes_after_throttling_mid_way(
    api: GalleryApi, function: Retrieve, sleeps: Sleeps
) -> None:
    listing = api.list_images(prefix="stream/", page_size=2)
    first_page = [next(listing), next(listing)]
    function.script.append(answer(429))

    rest = list(listing)

    assert [item["key"] for item in first_page + rest] == STREAMED
    assert len(sleeps.delays) == 1


def test_an_api_that_stays_unavailable_is_a_remote_error_after_max_attempts(
    api: GalleryApi, function: Retrieve, sleeps: Sleeps
) -> None:
    function.always = answer(503, '{"message":"Service Unavailable"}')

    with pytest.raises(RemoteError) as failed:
        list(api.list_images())

    assert len(function.events) == 5
    assert len(sleeps.delays) == 4
    assert "503 (Service Unavailable)" in failed.value.message
    assert "5 attempts" in failed.value.message
    assert failed.value.hint is not None and "try again" in failed.value.hint


# --- reset connections -------------------------------------------------------------------


class ResettingServer:
    """Accepts connections on 127.0.0.1; resets the first ``resets`` of them after reading
    the request, and answers the others with a fixed JSON image."""

    BODY = b'{"key": "a.jpg", "status": "active"}'

    def __init__(self, resets: int) -> None:
        self.resets = resets
        self.requests: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            with connection:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = connection.recv(65536)
                    if not chunk:
                        break
                    request += chunk
                self.requests.append(request)
                if len(self.requests) <= self.resets:
                    # SO_LINGER 0: close with a TCP RST, as a crashed proxy would.
                    connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    continue
                connection.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    + f"content-length: {len(self.BODY)}\r\nconnection: close\r\n\r\n".encode()
                    + self.BODY
                )

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._listener.close()
        self._thread.join(timeout=5)


@pytest.fixture
def resetting() -> Iterator[Callable[[int], ResettingServer]]:
    servers: list[ResettingServer] = []

    def start(resets: int) -> ResettingServer:
        servers.append(ResettingServer(resets))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_a_reset_connection_is_retried(
    resetting: Callable[[int], ResettingServer], sleeps: Sleeps
) -> None:
    server = resetting(1)
    api = gallery(server.url, sleeps)

    assert api.get_image("a.jpg") == {"key": "a.jpg", "status": "active"}
    assert len(server.requests) == 2
    assert len(sleeps.delays) == 1
    assert all(b"authorization: aws4-hmac-sha256" in r.lower() for r in server.requests)


def test_connections_reset_every_time_end_in_a_network_error(
    resetting: Callable[[int], ResettingServer], sleeps: Sleeps
) -> None:
    server = resetting(100)
    api = gallery(server.url, sleeps, max_attempts=3)

    with pytest.raises(NetworkError) as failed:
        api.get_image("a.jpg")

    assert len(server.requests) == 3
    assert len(sleeps.delays) == 2
    assert "3 attempts" in failed.value.message
    assert server.url in failed.value.message


# --- pure pieces ---------------------------------------------------------------------------


def test_backoff_grows_is_capped_and_honours_retry_after() -> None:
    for attempt in range(1, 12):
        ceiling = min(BACKOFF_CAP_S, 0.5 * 2 ** (attempt - 1))
        assert all(0 <= backoff_delay(attempt) <= ceiling for _ in range(50))
    assert backoff_delay(1, retry_after=5) >= 5
    assert backoff_delay(1, retry_after=3600) == BACKOFF_CAP_S
