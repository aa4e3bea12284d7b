"""What the retrieve function's test files share: items, request events, and a caller.

Requests are the real HTTP API event fixtures in ``tests/events/``, adjusted per test
(``list_event``, ``get_event``). Items are written with ``records.to_item``, as the save
function writes them (``put``). ``Api`` calls ``retrieve.respond`` as the handler would.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote, urlencode

from imgcli.lambdas import cursor, records, retrieve
from imgcli.lambdas.item_links import ItemLinks, SignedLinks
from imgcli.lambdas.logs import JsonLogger
from imgcli.lambdas.presign import Credentials
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

    def __init__(
        self, dynamodb: Any, table: str, *, now: int = NOW, links: ItemLinks | None = None
    ) -> None:
        self.dynamodb = dynamodb
        self.table = table
        self.now = now
        self.links = links
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
            links=self.links,
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


def signed_links(now: int = NOW) -> ItemLinks:
    """Links signed as a role session would sign them (a token of AWS's typical length)."""
    import boto3
    from botocore.config import Config

    credentials = Credentials("ASIAROLESESSION00001", "role/secret+key", "FwoGZX" + "x" * 900)
    s3 = boto3.client(
        "s3",
        region_name="us-east-1",
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
        aws_session_token=credentials.token,
        config=Config(signature_version="s3v4"),
    )
    links = SignedLinks(
        s3,
        lambda: credentials,
        bucket="imgcli-main-123456789012-us-east-1",
        thumbnails_bucket="imgcli-main-thumbs-123456789012-us-east-1",
    )
    return links.at(now)


def assert_client_error(response: dict[str, Any], status: int = 400) -> dict[str, Any]:
    assert response["statusCode"] == status, response["body"]
    assert response["headers"]["content-type"] == "application/json"
    error: dict[str, Any] = json.loads(response["body"])["error"]
    assert set(error) == {"code", "message"}
    assert error["code"]
    assert error["message"]
    return error
