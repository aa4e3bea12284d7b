"""What the ``GalleryApi`` test files share: the local cloud's execute-api, in process.

``serving_local_api`` starts a werkzeug server on 127.0.0.1 that runs the local cloud's
gate with ``ExecuteApi`` (the local cloud's execute-api: routing, SigV4 checking, the
payload 2.0 event) and moto behind it, and its ``invoke`` runs the real
``lambdas.retrieve.respond`` against a DynamoDB table in that same moto, filled with
``lambdas.records.to_item``. ``Retrieve`` records each call and can be scripted to answer
first with an error (``answer``); ``Sleeps`` records sleeps instead of sleeping;
``gallery`` makes a client signed with the local keys.
"""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import boto3
from botocore.credentials import Credentials
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    create_backend_app,
)

from imgcli.config import LOCAL_REGION
from imgcli.gallery_api import GalleryApi
from imgcli.lambdas import cursor, records, retrieve
from imgcli.lambdas.logs import JsonLogger
from imgcli.localcloud import api_url
from imgcli.localcloud.api_routes import moto_api_lookup
from imgcli.localcloud.execute_api import ExecuteApi
from imgcli.localcloud.gate import FixedIdentities
from imgcli.localcloud.identity import Principal
from tests.gate_harness import gate_on_loopback
from tests.localstack import create_http_api

REGION = LOCAL_REGION
KEY, SECRET = "LKIATESTGALLERYAPI00", "gallery-api-test-secret"
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


@contextmanager
def serving_local_api() -> Iterator[LocalApi]:
    """The execute-api serving the stack's routes, its table filled, until the block ends."""
    holder: dict[str, Retrieve] = {}
    identities = FixedIdentities([Principal(KEY, SECRET)])
    api = ExecuteApi(
        invoke=lambda arn, event: holder["function"](arn, event),
        apis=moto_api_lookup(DEFAULT_ACCOUNT_ID, REGION),
        identities=identities,
        region=REGION,
    )
    aws = DomainDispatcherApplication(create_backend_app)
    with gate_on_loopback(aws, api, identities) as port:
        endpoint = f"http://127.0.0.1:{port}"
        dynamodb = boto3_client(endpoint, "dynamodb")
        dynamodb.create_table(TableName=TABLE, **records.TABLE_DEFINITION)
        try:
            items = [record(key) for key in [*AWKWARD_KEYS, *STREAMED]]
            items += [
                record(
                    key,
                    status="invalid",
                    format=None,
                    width=None,
                    height=None,
                    reason="not an image",
                )
                for key in INVALID
            ]
            for item in items:
                dynamodb.put_item(TableName=TABLE, Item=records.to_item(item))
            holder["function"] = Retrieve(dynamodb)
            yield LocalApi(stack_api_url(endpoint), holder["function"])
        finally:
            # moto's backends outlive the server: the next test module's server starts
            # without this table.
            dynamodb.delete_table(TableName=TABLE)


def stack_api_url(endpoint: str) -> str:
    """The stack's two IAM-authorised routes, in moto, behind the test's function."""
    routes = {"GET /images": "AWS_IAM", "GET /images/{key+}": "AWS_IAM"}
    apis = boto3_client(endpoint, "apigatewayv2")
    return api_url(endpoint, create_http_api(apis, "imgcli-gallery-api", FUNCTION_ARN, routes))


def fresh_function(local_api: LocalApi) -> Retrieve:
    """The API's function with no recorded calls and no scripted answers."""
    local_api.function.events.clear()
    local_api.function.script.clear()
    local_api.function.always = None
    return local_api.function


@dataclass
class Sleeps:
    delays: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def gallery(url: str, sleeps: Sleeps, credentials: Any = None, **options: Any) -> GalleryApi:
    signing = credentials or Credentials(KEY, SECRET, method="explicit")
    return GalleryApi(url, signing, REGION, sleep=sleeps, **options)


def answer(status: int, body: str = '{"message":"x"}', **headers: str) -> Answer:
    return lambda _event: {"statusCode": status, "headers": headers, "body": body}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
