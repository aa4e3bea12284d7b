"""S3 event delivery in the local cloud, against moto in process with real boto3 calls:
the shape of each record and its key, for each kind of change, in plain and versioned
buckets.

Every test drives S3 the way a client would and reads the events handed to ``deliver``
back through ``lambdas.s3_events``, the parser the save function itself uses
(``tests.s3_event_recorder``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from imgcli.lambdas.s3_events import decode_key
from imgcli.localcloud import s3_events
from tests.eventdata import load_event
from tests.s3_event_recorder import (
    FUNCTION_ARN,
    Recorder,
    configure,
    lambda_target,
    recording,
    unquoted,
)


@pytest.fixture
def recorder(moto_aws: None) -> Iterator[Recorder]:
    with recording() as recorded:
        yield recorded


@pytest.fixture
def watched_bucket(s3_client: Any, bucket: str, recorder: Recorder) -> str:
    configure(s3_client, bucket, lambda_target())
    return bucket


@pytest.fixture
def watched_versioned(s3_client: Any, versioned_bucket: str, recorder: Recorder) -> str:
    configure(s3_client, versioned_bucket, lambda_target())
    return versioned_bucket


def shape(value: Any) -> Any:
    """The nested key structure of a JSON value, without its leaf values."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    return type(value).__name__


# --- record shape and keys ----------------------------------------------------------------


def test_put_record_has_exactly_the_shape_aws_sends(
    s3_client: Any, watched_bucket: str, recorder: Recorder
) -> None:
    put = s3_client.put_object(Bucket=watched_bucket, Key="photos/a.jpg", Body=b"12345")

    ((function_arn, event),) = recorder.deliveries
    assert function_arn == FUNCTION_ARN
    assert shape(event) == shape(load_event("s3_put"))
    (record,) = event["Records"]
    assert record["eventVersion"] == "2.1"
    assert record["eventSource"] == "aws:s3"
    assert record["awsRegion"] == "us-east-1"
    assert record["eventName"] == "ObjectCreated:Put"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["eventTime"])
    assert record["requestParameters"] == {"sourceIPAddress": "127.0.0.1"}
    assert record["s3"]["s3SchemaVersion"] == "1.0"
    assert record["s3"]["configurationId"] == "imgcli-index"
    assert record["s3"]["bucket"]["name"] == watched_bucket
    assert record["s3"]["bucket"]["arn"] == f"arn:aws:s3:::{watched_bucket}"
    obj = record["s3"]["object"]
    assert obj["key"] == "photos/a.jpg"
    assert obj["size"] == 5
    assert obj["eTag"] == unquoted(put["ETag"])
    assert "versionId" not in obj
    assert re.fullmatch(rf"[0-9A-F]{{{s3_events.SEQUENCER_DIGITS}}}", obj["sequencer"])
    json.dumps(event)  # it must survive the trip to a function as JSON


@pytest.mark.parametrize(
    ("key", "encoded"),
    [
        ("photos/2026/summer holiday/beach day.jpg", "photos/2026/summer+holiday/beach+day.jpg"),
        ("photos/a+b=c&d.jpg", "photos/a%2Bb%3Dc%26d.jpg"),
        ("raw/100% crop.png", "raw/100%25+crop.png"),
        ("copies/日本/猫.gif", "copies/%E6%97%A5%E6%9C%AC/%E7%8C%AB.gif"),
        ("deep/er/still/déjà vu +1 %.jpg", "deep/er/still/d%C3%A9j%C3%A0+vu+%2B1+%25.jpg"),
    ],
)
def test_keys_are_form_encoded_like_s3_and_decode_back(
    s3_client: Any, watched_bucket: str, recorder: Recorder, key: str, encoded: str
) -> None:
    s3_client.put_object(Bucket=watched_bucket, Key=key, Body=b"x")

    (record,) = recorder.records()
    assert record["s3"]["object"]["key"] == encoded
    assert decode_key(encoded) == key
    assert [event.key for event in recorder.events()] == [key]


# --- each kind of change ------------------------------------------------------------------


def test_post_upload_is_object_created_post(
    s3_client: Any, watched_bucket: str, recorder: Recorder
) -> None:
    import requests

    form = s3_client.generate_presigned_post(watched_bucket, "uploads/from browser.jpg")
    response = requests.post(
        form["url"], data=form["fields"], files={"file": ("f", b"posted")}, timeout=10
    )
    assert response.status_code == 204

    (event,) = recorder.events()
    assert (event.event_name, event.key, event.size) == (
        "ObjectCreated:Post",
        "uploads/from browser.jpg",
        6,
    )


def test_copy_is_one_copy_event_for_the_destination(
    s3_client: Any, watched_bucket: str, recorder: Recorder
) -> None:
    source = s3_client.put_object(Bucket=watched_bucket, Key="src/a b.jpg", Body=b"abc")
    recorder.clear()

    s3_client.copy_object(
        Bucket=watched_bucket,
        Key="dst/a b.jpg",
        CopySource={"Bucket": watched_bucket, "Key": "src/a b.jpg"},
    )

    (event,) = recorder.events()
    assert event.event_name == "ObjectCreated:Copy"
    assert (event.bucket, event.key, event.size) == (watched_bucket, "dst/a b.jpg", 3)
    assert event.etag == unquoted(source["ETag"])


def test_multipart_upload_is_one_complete_event_and_no_put(
    s3_client: Any, watched_bucket: str, recorder: Recorder
) -> None:
    key = "big/100% crop.png"
    part_size = 5 * 1024 * 1024
    upload = s3_client.create_multipart_upload(Bucket=watched_bucket, Key=key)
    parts = []
    for number, body in enumerate([b"a" * part_size, b"b" * 10], start=1):
        part = s3_client.upload_part(
            Bucket=watched_bucket,
            Key=key,
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=body,
        )
        parts.append({"PartNumber": number, "ETag": part["ETag"]})
    completed = s3_client.complete_multipart_upload(
        Bucket=watched_bucket,
        Key=key,
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": parts},
    )

    (event,) = recorder.events()
    assert event.event_name == "ObjectCreated:CompleteMultipartUpload"
    assert (event.key, event.size) == (key, part_size + 10)
    assert event.etag == unquoted(completed["ETag"])
    assert event.etag is not None and event.etag.endswith("-2")


def test_delete_is_object_removed_without_size_or_etag(
    s3_client: Any, watched_bucket: str, recorder: Recorder
) -> None:
    s3_client.put_object(Bucket=watched_bucket, Key="gone/a b.gif", Body=b"x")
    recorder.clear()

    s3_client.delete_object(Bucket=watched_bucket, Key="gone/a b.gif")

    (record,) = recorder.records()
    assert set(record["s3"]["object"]) == {"key", "sequencer"}
    (event,) = recorder.events()
    assert (event.event_name, event.key, event.is_removed) == (
        "ObjectRemoved:Delete",
        "gone/a b.gif",
        True,
    )


def test_deleting_a_missing_key_changes_nothing_and_sends_nothing(
    s3_client: Any, watched_bucket: str, recorder: Recorder
) -> None:
    s3_client.delete_object(Bucket=watched_bucket, Key="never/was.jpg")
    assert recorder.deliveries == []


def test_delete_objects_sends_one_event_per_key(
    s3_client: Any, watched_bucket: str, recorder: Recorder
) -> None:
    keys = ["batch/one.jpg", "batch/two words.png", "batch/three+.gif"]
    for key in keys:
        s3_client.put_object(Bucket=watched_bucket, Key=key, Body=b"x")
    recorder.clear()

    s3_client.delete_objects(
        Bucket=watched_bucket, Delete={"Objects": [{"Key": key} for key in keys]}
    )

    assert [(event.event_name, event.key) for event in recorder.events()] == [
        ("ObjectRemoved:Delete", key) for key in keys
    ]
    assert all(len(event["Records"]) == 1 for _, event in recorder.deliveries)


# --- versioned buckets --------------------------------------------------------------------


def test_versioned_put_carries_its_version_id(
    s3_client: Any, watched_versioned: str, recorder: Recorder
) -> None:
    put = s3_client.put_object(Bucket=watched_versioned, Key="v/a.jpg", Body=b"x")

    (event,) = recorder.events()
    assert event.version_id == put["VersionId"]


def test_versioned_delete_creates_a_marker_and_reports_its_version(
    s3_client: Any, watched_versioned: str, recorder: Recorder
) -> None:
    key = "photos/a+b=c&d.jpg"
    put = s3_client.put_object(Bucket=watched_versioned, Key=key, Body=b"x")
    recorder.clear()

    deleted = s3_client.delete_object(Bucket=watched_versioned, Key=key)

    assert deleted["DeleteMarker"] is True
    (event,) = recorder.events()
    assert event.event_name == "ObjectRemoved:DeleteMarkerCreated"
    assert event.is_delete_marker
    assert event.key == key
    assert event.version_id == deleted["VersionId"] != put["VersionId"]


def test_deleting_one_version_reports_that_version(
    s3_client: Any, watched_versioned: str, recorder: Recorder
) -> None:
    first = s3_client.put_object(Bucket=watched_versioned, Key="v/a.jpg", Body=b"1")
    s3_client.put_object(Bucket=watched_versioned, Key="v/a.jpg", Body=b"2")
    recorder.clear()

    s3_client.delete_object(Bucket=watched_versioned, Key="v/a.jpg", VersionId=first["VersionId"])

    (event,) = recorder.events()
    assert (event.event_name, event.version_id) == ("ObjectRemoved:Delete", first["VersionId"])


def test_deleting_a_version_the_key_never_had_sends_nothing(
    s3_client: Any, watched_versioned: str, recorder: Recorder
) -> None:
    s3_client.put_object(Bucket=watched_versioned, Key="v/a.jpg", Body=b"1")
    recorder.clear()

    s3_client.delete_object(
        Bucket=watched_versioned, Key="v/a.jpg", VersionId="not-a-version-of-this-key"
    )

    assert recorder.deliveries == []


def test_delete_objects_in_a_versioned_bucket_reports_markers_and_versions(
    s3_client: Any, watched_versioned: str, recorder: Recorder
) -> None:
    kept = s3_client.put_object(Bucket=watched_versioned, Key="v/kept.jpg", Body=b"1")
    s3_client.put_object(Bucket=watched_versioned, Key="v/marked.jpg", Body=b"2")
    recorder.clear()

    result = s3_client.delete_objects(
        Bucket=watched_versioned,
        Delete={
            "Objects": [
                {"Key": "v/kept.jpg", "VersionId": kept["VersionId"]},
                {"Key": "v/marked.jpg"},
            ]
        },
    )

    marker = next(d for d in result["Deleted"] if d["Key"] == "v/marked.jpg")
    assert [(e.event_name, e.key, e.version_id) for e in recorder.events()] == [
        ("ObjectRemoved:Delete", "v/kept.jpg", kept["VersionId"]),
        ("ObjectRemoved:DeleteMarkerCreated", "v/marked.jpg", marker["DeleteMarkerVersionId"]),
    ]
