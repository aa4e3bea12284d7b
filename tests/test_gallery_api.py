"""``GalleryApi`` against the local cloud's own pieces, in process.

A werkzeug server on 127.0.0.1 runs moto behind ``ExecuteApi`` (the local cloud's
execute-api: routing, SigV4 checking, the payload 2.0 event), and its ``invoke`` runs the
real ``lambdas.retrieve.respond`` against a DynamoDB table in that same moto, filled with
``lambdas.records.to_item``. So every request here is really signed, routed, decoded and
answered as on the local cloud. ``invoke`` records each call (how streaming is proven) and
can be scripted to answer first with an error (throttling, unavailability). What an HTTP
server cannot be made to do through a function (reset a connection) is done by a raw
socket server; sleeps are recorded, never slept.
"""

from __future__ import annotations

import contextlib
import io
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.credentials import Credentials, RefreshableCredentials
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

from imgcli.config import LOCAL_ACCESS_KEY, LOCAL_REGION
from imgcli.errors import AuthError, NetworkError, RemoteError
from imgcli.gallery_api import (
    BACKOFF_CAP_S,
    GalleryApi,
    backoff_delay,
    encode_key,
    encode_query,
    region_of_api,
)
from imgcli.lambdas import cursor, records, retrieve
from imgcli.lambdas.logs import JsonLogger
from imgcli.localcloud import api_url
from imgcli.localcloud.api_routes import moto_api_lookup
from imgcli.localcloud.execute_api import ExecuteApi
from tests.localstack import create_http_api

REGION = LOCAL_REGION
KEY, SECRET = LOCAL_ACCESS_KEY.access_key_id, LOCAL_ACCESS_KEY.secret_access_key
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{DEFAULT_ACCOUNT_ID}:function:gallery-retrieve"
TABLE = "imgcli-gallery-api-test"

AWKWARD_KEYS = [
    "with space.jpg",
    "a+b.jpg",
    "100%.png",
    "%2F%20literally.jpg",
    "dir/sub dir//x.jpg",
    "/leading-slash.jpg",
    "unicodé/日本/猫 #1.gif",
    "emoji 🙂.webp",
    "question?mark&amp=1.jpg",
    "dots/./here.jpg",
    "dots/../up.jpg",
    "..",
    "trailing/",
]
STREAMED = [f"stream/{n}.jpg" for n in range(5)]
INVALID = ["broken/empty.jpg", "broken/text.png"]


def record(key: str, **fields: Any) -> records.ImageRecord:
    values: dict[str, Any] = {
        "status": "active",
        "sequencer": "0055AED6DCD90281E5",
        "size": 2048,
        "etag": "d41d8cd98f00b204e9800998ecf8427e",
        "content_type": "image/jpeg",
        "format": "JPEG",
        "width": 640,
        "height": 480,
        "uploaded_at": "2025-03-14T10:00:00Z",
        "indexed_at": "2025-03-14T10:00:01Z",
        **fields,
    }
    return records.ImageRecord(key=key, **values)


def invalid_record(key: str) -> records.ImageRecord:
    unreadable = {"format": None, "width": None, "height": None, "reason": "not an image"}
    return record(key, status="invalid", **unreadable)


Answer = Callable[[dict[str, Any]], Any]


@dataclass
class Retrieve:
    """The API's function: the real retrieve code, optionally preceded by scripted answers."""

    dynamodb: Any
    events: list[dict[str, Any]] = field(default_factory=list)
    script: list[Answer] = field(default_factory=list)
    always: Answer | None = None

    def __call__(self, function_arn: str, event: dict[str, Any]) -> Any:
        self.events.append(event)
        if self.always is not None:
            return self.always(event)
        if self.script:
            return self.script.pop(0)(event)
        return retrieve.respond(
            event,
            self.dynamodb,  # calls back into the same server, from inside a request to it
            TABLE,
            secret=cursor.secret_for(TABLE, {}),
            now=int(time.time()),
            logger=JsonLogger("retrieve", stream=io.StringIO()),
        )

    def queries(self) -> list[dict[str, list[str]]]:
        return [parse_qs(event["rawQueryString"]) for event in self.events]


@dataclass
class LocalApi:
    url: str
    function: Retrieve


def boto3_client(endpoint: str, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
    )


@pytest.fixture(scope="module")
def local_api() -> Iterator[LocalApi]:
    holder: dict[str, Retrieve] = {}
    app = ExecuteApi(
        DomainDispatcherApplication(create_backend_app),
        invoke=lambda arn, event: holder["function"](arn, event),
        apis=moto_api_lookup(DEFAULT_ACCOUNT_ID, REGION),
        credentials=(KEY, SECRET),
        region=REGION,
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_port}"
    try:
        dynamodb = boto3_client(endpoint, "dynamodb")
        dynamodb.create_table(TableName=TABLE, **records.TABLE_DEFINITION)
        items = [record(key) for key in [*AWKWARD_KEYS, *STREAMED]]
        items += [
            record(
                key, status="invalid", format=None, width=None, height=None, reason="not an image"
            )
            for key in INVALID
        ]
        for item in items:
            dynamodb.put_item(TableName=TABLE, Item=records.to_item(item))
        holder["function"] = Retrieve(dynamodb)
        yield LocalApi(stack_api_url(endpoint), holder["function"])
    finally:
        server.shutdown()
        thread.join(timeout=5)


def stack_api_url(endpoint: str) -> str:
    """The stack's two IAM-authorised routes, in moto, behind the test's function."""
    routes = {"GET /images": "AWS_IAM", "GET /images/{key+}": "AWS_IAM"}
    apis = boto3_client(endpoint, "apigatewayv2")
    return api_url(endpoint, create_http_api(apis, "imgcli-gallery-api", FUNCTION_ARN, routes))


@pytest.fixture
def function(local_api: LocalApi) -> Retrieve:
    local_api.function.events.clear()
    local_api.function.script.clear()
    local_api.function.always = None
    return local_api.function


@dataclass
class Sleeps:
    delays: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def gallery(url: str, sleeps: Sleeps, credentials: Any = None, **options: Any) -> GalleryApi:
    signing = credentials or Credentials(KEY, SECRET, method="explicit")
    return GalleryApi(url, signing, REGION, sleep=sleeps, **options)


@pytest.fixture
def api(local_api: LocalApi, function: Retrieve, sleeps: Sleeps) -> GalleryApi:
    return gallery(local_api.url, sleeps)


def answer(status: int, body: str = '{"message":"x"}', **headers: str) -> Answer:
    return lambda _event: {"statusCode": status, "headers": headers, "body": body}


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


# --- credentials and errors ---------------------------------------------------------------


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

    with pytest.raises(RemoteError) as failed:
        api.get_image("stream/1.jpg")

    assert "no such route" in failed.value.message
    assert failed.value.hint is not None and "bootstrap" in failed.value.hint


def test_a_listing_that_is_not_json_is_a_remote_error(api: GalleryApi, function: Retrieve) -> None:
    function.always = answer(200, "<html>hello</html>", **{"content-type": "text/html"})

    with pytest.raises(RemoteError, match="does not understand"):
        list(api.list_images())


# --- the network ---------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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
