"""Loading the event fixtures in ``tests/events/`` (real event shapes, stored as JSON), and
making events of them for objects a test put into moto's S3."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from imgcli.lambdas.records import ImageRecord, from_item

EVENTS_DIR = Path(__file__).parent / "events"


def load_event(name: str) -> dict[str, Any]:
    """The fixture ``tests/events/<name>.json``, a fresh copy each call."""
    data: dict[str, Any] = json.loads((EVENTS_DIR / f"{name}.json").read_text("utf-8"))
    return copy.deepcopy(data)


def s3_event(
    template: str,
    *,
    bucket: str,
    key: str,
    sequencer: str,
    put: dict[str, Any] | None = None,
    version_id: str | None = None,
    size: int | None = None,
) -> dict[str, Any]:
    """A one-record event shaped like the fixture ``template``, for an object of this test."""
    event = load_event(template)
    record = event["Records"][0]
    record["s3"]["bucket"]["name"] = bucket
    record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
    obj = record["s3"]["object"]
    obj["key"] = quote_plus(key, safe="/")
    obj["sequencer"] = sequencer
    if put is not None:
        obj["eTag"] = put["ETag"].strip('"')
        version_id = version_id or put.get("VersionId")
    if size is not None:
        obj["size"] = size
    if version_id:
        obj["versionId"] = version_id
    else:
        obj.pop("versionId", None)
    return event


def stored(dynamodb_client: Any, table_name: str, key: str) -> ImageRecord | None:
    item = dynamodb_client.get_item(TableName=table_name, Key={"key": {"S": key}}).get("Item")
    return from_item(item) if item else None


def upload(s3_client: Any, bucket: str, key: str, data: bytes) -> dict[str, Any]:
    return dict(s3_client.put_object(Bucket=bucket, Key=key, Body=data))


def created(s3_client: Any, bucket: str, key: str, data: bytes, sequencer: str) -> dict[str, Any]:
    put = upload(s3_client, bucket, key, data)
    return s3_event("s3_put", bucket=bucket, key=key, sequencer=sequencer, put=put, size=len(data))


def repair_event(bucket: str, *keys: str) -> dict[str, Any]:
    """A repair request (the fixture ``repair``) of ``keys`` in ``bucket``."""
    event = load_event("repair")
    event["bucket"] = bucket
    event["keys"] = list(keys)
    return event


def in_sqs(*events: Any, template: str = "s3_sqs_put") -> dict[str, Any]:
    """An SQS batch (shaped like the fixture ``template``) whose messages carry ``events``."""
    batch = load_event(template)
    model = batch["Records"][0]
    batch["Records"] = [
        {**model, "messageId": f"message-{index}", "body": json.dumps(event)}
        for index, event in enumerate(events)
    ]
    return batch
