"""S3 event delivery in the local cloud, against moto in process with real boto3 calls.

Every test drives S3 the way a client would and reads the events handed to ``deliver``
back through ``lambdas.s3_events``, the parser the save function itself uses.
"""

from __future__ import annotations

import io
import json
import random
import re
import threading
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from typing import Any

import pytest

from imgcli.lambdas.s3_events import ObjectEvent, decode_key, object_events
from imgcli.lambdas.sequencer import is_later
from imgcli.localcloud import s3_events
from tests.eventdata import load_event

ACCOUNT = "123456789012"
FUNCTION_ARN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:imgcli-save"
OTHER_FUNCTION_ARN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:imgcli-other"
ALL_OBJECT_EVENTS = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]


class Recorder:
    """The ``deliver`` callback: keeps every (function ARN, event) it is handed."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, function_arn: str, event: dict[str, Any]) -> None:
        self.deliveries.append((function_arn, event))

    def records(self) -> list[dict[str, Any]]:
        return [record for _, event in self.deliveries for record in event["Records"]]

    def events(self) -> list[ObjectEvent]:
        parsed = [item for _, event in self.deliveries for item in object_events(event)]
        assert all(isinstance(item, ObjectEvent) for item in parsed), parsed
        return [item for item in parsed if isinstance(item, ObjectEvent)]

    def names(self) -> list[str]:
        return [event.event_name for event in self.events()]

    def clear(self) -> None:
        self.deliveries.clear()


@pytest.fixture
def recorder(moto_aws: None) -> Iterator[Recorder]:
    recorder = Recorder()
    uninstall = s3_events.install(recorder)
    yield recorder
    uninstall()


def configure(s3: Any, bucket: str, *configurations: dict[str, Any]) -> None:
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={"LambdaFunctionConfigurations": list(configurations)},
    )


def lambda_target(
    events: list[str] | None = None,
    *,
    arn: str = FUNCTION_ARN,
    config_id: str = "imgcli-index",
    prefix: str | None = None,
    suffix: str | None = None,
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "Id": config_id,
        "LambdaFunctionArn": arn,
        "Events": events or ALL_OBJECT_EVENTS,
    }
    # Lower-case rule names: moto answers 500 to "Prefix" (docs/local-cloud.md).
    rules = [
        {"Name": name, "Value": value} for name, value in [("prefix", prefix), ("suffix", suffix)]
    ]
    rules = [rule for rule in rules if rule["Value"] is not None]
    if rules:
        config["Filter"] = {"Key": {"FilterRules": rules}}
    return config


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


def unquoted(etag: str) -> str:
    return etag.strip('"')


# --- moto internals and installation ------------------------------------------------------


def test_moto_internals_are_where_delivery_expects_them() -> None:
    """Fails loudly on a moto upgrade that moves a method, a parameter or the matcher."""
    s3_events.check_moto_internals()


def test_uninstall_restores_moto(moto_aws: None) -> None:
    from moto.s3 import notifications
    from moto.s3.models import S3Backend

    before = {name: getattr(S3Backend, name) for name in s3_events.WRAPPED_METHODS}
    sender = getattr(notifications, s3_events.MOTO_LAMBDA_SENDER)

    uninstall = s3_events.install(Recorder())
    assert all(getattr(S3Backend, name) is not before[name] for name in before)
    assert getattr(notifications, s3_events.MOTO_LAMBDA_SENDER) is not sender
    uninstall()
    uninstall()  # a second call is harmless

    assert {name: getattr(S3Backend, name) for name in before} == before
    assert getattr(notifications, s3_events.MOTO_LAMBDA_SENDER) is sender


def test_a_second_install_is_refused(recorder: Recorder) -> None:
    with pytest.raises(RuntimeError, match="already installed"):
        s3_events.install(Recorder())


def test_nothing_is_delivered_after_uninstall(s3_client: Any, bucket: str) -> None:
    recorder = Recorder()
    s3_events.install(recorder)()
    configure(s3_client, bucket, lambda_target())
    s3_client.put_object(Bucket=bucket, Key="a.jpg", Body=b"x")
    assert recorder.deliveries == []


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


# --- sequencers ---------------------------------------------------------------------------


def assert_strictly_increasing(sequencers: list[str]) -> None:
    assert all(len(value) == s3_events.SEQUENCER_DIGITS for value in sequencers)
    for earlier, later in pairwise(sequencers):
        assert is_later(later, earlier), (earlier, later)


def test_sequencers_grow_across_every_kind_of_change_to_a_key(
    s3_client: Any, watched_bucket: str, recorder: Recorder
) -> None:
    key = "k/one key.jpg"
    s3_client.put_object(Bucket=watched_bucket, Key=key, Body=b"1")
    s3_client.put_object(Bucket=watched_bucket, Key="k/other.jpg", Body=b"2")
    s3_client.copy_object(
        Bucket=watched_bucket, Key=key, CopySource={"Bucket": watched_bucket, "Key": "k/other.jpg"}
    )
    upload = s3_client.create_multipart_upload(Bucket=watched_bucket, Key=key)
    part = s3_client.upload_part(
        Bucket=watched_bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=b"3"
    )
    s3_client.complete_multipart_upload(
        Bucket=watched_bucket,
        Key=key,
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    s3_client.delete_object(Bucket=watched_bucket, Key=key)

    on_key = [event for event in recorder.events() if event.key == key]
    assert [event.event_name for event in on_key] == [
        "ObjectCreated:Put",
        "ObjectCreated:Copy",
        "ObjectCreated:CompleteMultipartUpload",
        "ObjectRemoved:Delete",
    ]
    assert_strictly_increasing([event.sequencer for event in on_key])


def test_sequencer_is_the_clock_but_never_repeats(s3_client: Any, bucket: str) -> None:
    """A clock that stands still (or went back after a restart) still yields growing values."""
    frozen_ns = 1_795_000_000_123_456_789
    recorder = Recorder()
    uninstall = s3_events.install(recorder, clock=lambda: frozen_ns)
    try:
        configure(s3_client, bucket, lambda_target())
        for body in (b"1", b"2", b"3"):
            s3_client.put_object(Bucket=bucket, Key="same.jpg", Body=body)
    finally:
        uninstall()

    events = recorder.events()
    assert [int(event.sequencer, 16) for event in events] == [
        frozen_ns,
        frozen_ns + 1,
        frozen_ns + 2,
    ]
    assert {event.event_time for event in events} == {"2026-11-18T11:06:40.123Z"}


@pytest.fixture
def slow_matching(monkeypatch: pytest.MonkeyPatch) -> None:
    """Widen the gap between moto storing a key and its event being stamped.

    Matching the configuration falls in that gap. In process the gap is microseconds, so
    racing writers almost never land in it and a missing (or misplaced) lock would go
    unnoticed; uneven pauses there make them land in it.
    """
    from moto.s3.models import Notification

    original = Notification.matches
    jitter = random.Random(4)

    def matches_slowly(self: Any, event_name: str, key_name: str) -> bool:
        # Uneven pauses, so a writer that stored later can overtake one that stored earlier.
        time.sleep(jitter.uniform(0.0, 0.003))
        matched: bool = original(self, event_name, key_name)
        return matched

    monkeypatch.setattr(Notification, "matches", matches_slowly)


@pytest.mark.usefixtures("slow_matching")
def test_concurrent_puts_get_sequencers_in_the_order_moto_applied_them(
    s3_client: Any, watched_versioned: str, recorder: Recorder
) -> None:
    from moto.s3.models import s3_backends

    key = "race/one key.jpg"

    def put(index: int) -> None:
        s3_client.put_object(Bucket=watched_versioned, Key=key, Body=f"body {index}".encode())

    with ThreadPoolExecutor(max_workers=50) as pool:
        list(pool.map(put, range(50)))

    events = recorder.events()
    assert len(events) == 50
    by_sequencer = sorted(events, key=lambda event: event.sequencer)
    assert len({event.sequencer for event in events}) == 50
    stored = s3_backends[ACCOUNT]["global"].get_bucket(watched_versioned).keys.getlist(key)
    assert [event.version_id for event in by_sequencer] == [str(v.version_id) for v in stored]
    head = s3_client.head_object(Bucket=watched_versioned, Key=key)
    assert by_sequencer[-1].etag == unquoted(head["ETag"])


@pytest.mark.usefixtures("slow_matching")
def test_concurrent_puts_to_an_unversioned_key_end_with_the_latest_sequencer(
    s3_client: Any, watched_bucket: str, recorder: Recorder
) -> None:
    key = "race/plain.jpg"

    def put(index: int) -> None:
        s3_client.put_object(Bucket=watched_bucket, Key=key, Body=f"body {index}".encode())

    with ThreadPoolExecutor(max_workers=50) as pool:
        list(pool.map(put, range(50)))

    latest = max(recorder.events(), key=lambda event: event.sequencer)
    assert latest.etag == unquoted(s3_client.head_object(Bucket=watched_bucket, Key=key)["ETag"])


# --- matching the notification configuration ----------------------------------------------


def test_prefix_and_suffix_filters_are_honoured(
    s3_client: Any, bucket: str, recorder: Recorder
) -> None:
    configure(s3_client, bucket, lambda_target(prefix="photos/", suffix=".jpg"))
    for key in ["photos/a.jpg", "photos/a.png", "other/a.jpg", "photos/deep/b c.jpg"]:
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"x")

    assert [event.key for event in recorder.events()] == ["photos/a.jpg", "photos/deep/b c.jpg"]


def test_event_type_filters_are_honoured(s3_client: Any, bucket: str, recorder: Recorder) -> None:
    configure(s3_client, bucket, lambda_target(["s3:ObjectRemoved:*"]))
    s3_client.put_object(Bucket=bucket, Key="a.jpg", Body=b"x")
    assert recorder.deliveries == []

    s3_client.delete_object(Bucket=bucket, Key="a.jpg")
    assert recorder.names() == ["ObjectRemoved:Delete"]


def test_an_exact_event_type_excludes_its_siblings(
    s3_client: Any, bucket: str, recorder: Recorder
) -> None:
    configure(s3_client, bucket, lambda_target(["s3:ObjectCreated:Copy"]))
    s3_client.put_object(Bucket=bucket, Key="a.jpg", Body=b"x")
    s3_client.copy_object(Bucket=bucket, Key="b.jpg", CopySource={"Bucket": bucket, "Key": "a.jpg"})
    assert recorder.names() == ["ObjectCreated:Copy"]


def test_each_matching_configuration_gets_its_own_event(
    s3_client: Any, bucket: str, recorder: Recorder
) -> None:
    configure(
        s3_client,
        bucket,
        lambda_target(config_id="index"),
        lambda_target(arn=OTHER_FUNCTION_ARN, config_id="thumbs", suffix=".jpg"),
    )
    s3_client.put_object(Bucket=bucket, Key="a.jpg", Body=b"x")

    assert [
        (arn, event["Records"][0]["s3"]["configurationId"]) for arn, event in recorder.deliveries
    ] == [(FUNCTION_ARN, "index"), (OTHER_FUNCTION_ARN, "thumbs")]
    sequencers = {record["s3"]["object"]["sequencer"] for record in recorder.records()}
    assert len(sequencers) == 1  # one change, one place in the key's order


def test_no_configuration_no_delivery(s3_client: Any, bucket: str, recorder: Recorder) -> None:
    s3_client.put_object(Bucket=bucket, Key="a.jpg", Body=b"x")
    s3_client.delete_object(Bucket=bucket, Key="a.jpg")
    assert recorder.deliveries == []


# --- moto's own notifier and the request path ---------------------------------------------


@pytest.fixture
def moto_lambda_invocations(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every time moto itself invokes a Lambda function (its S3 notifier's only way)."""
    from moto.awslambda.models import LambdaFunction

    calls: list[Any] = []
    original = LambdaFunction.invoke

    def counting_invoke(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LambdaFunction, "invoke", counting_invoke)
    return calls


def create_real_function(moto_aws: None) -> str:
    import boto3

    iam = boto3.client("iam", region_name="us-east-1")
    role = iam.create_role(
        RoleName="imgcli-save-role",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return None\n")
    function = boto3.client("lambda", region_name="us-east-1").create_function(
        FunctionName="imgcli-save",
        Runtime="python3.11",
        Role=role["Role"]["Arn"],
        Handler="handler.handler",
        Code={"ZipFile": code.getvalue()},
    )
    arn: str = function["FunctionArn"]
    return arn


def test_moto_own_notifier_does_not_invoke_the_function_again(
    s3_client: Any, bucket: str, moto_aws: None, moto_lambda_invocations: list[Any]
) -> None:
    arn = create_real_function(moto_aws)
    configure(s3_client, bucket, lambda_target(arn=arn))

    s3_client.put_object(Bucket=bucket, Key="before-install.jpg", Body=b"x")
    assert len(moto_lambda_invocations) >= 1, "the spy must see moto's notifier when it runs"
    moto_lambda_invocations.clear()

    recorder = Recorder()
    uninstall = s3_events.install(recorder)
    try:
        s3_client.put_object(Bucket=bucket, Key="a.jpg", Body=b"x")
        s3_client.delete_object(Bucket=bucket, Key="a.jpg")
    finally:
        uninstall()

    assert moto_lambda_invocations == []
    assert [(a, e["Records"][0]["eventName"]) for a, e in recorder.deliveries] == [
        (arn, "ObjectCreated:Put"),
        (arn, "ObjectRemoved:Delete"),
    ]


def test_a_failing_deliver_never_fails_the_s3_request(s3_client: Any, bucket: str) -> None:
    def broken(function_arn: str, event: dict[str, Any]) -> None:
        raise RuntimeError("queue is gone")

    uninstall = s3_events.install(broken)
    try:
        configure(s3_client, bucket, lambda_target())
        s3_client.put_object(Bucket=bucket, Key="a.jpg", Body=b"x")
        assert s3_client.head_object(Bucket=bucket, Key="a.jpg")["ContentLength"] == 1
    finally:
        uninstall()


def test_deliver_runs_after_the_change_and_outside_the_key_lock(
    s3_client: Any, bucket: str
) -> None:
    """``deliver`` sees the object already written, and another writer of the key can proceed."""
    seen: list[tuple[str, bool]] = []
    first_delivery = threading.Event()

    def deliver(function_arn: str, event: dict[str, Any]) -> None:
        if first_delivery.is_set():
            return  # the second writer's own event
        first_delivery.set()
        etag = s3_client.head_object(Bucket=bucket, Key="a.jpg")["ETag"]
        writer = threading.Thread(
            target=lambda: s3_client.put_object(Bucket=bucket, Key="a.jpg", Body=b"second")
        )
        writer.start()
        writer.join(timeout=10)
        seen.append((unquoted(etag), not writer.is_alive()))

    uninstall = s3_events.install(deliver)
    try:
        configure(s3_client, bucket, lambda_target())
        first = s3_client.put_object(Bucket=bucket, Key="a.jpg", Body=b"first")
    finally:
        uninstall()

    assert seen == [(unquoted(first["ETag"]), True)]
