"""S3 event delivery in the local cloud, against moto in process with real boto3 calls:
the sequencers, growing across every kind of change to a key, from a clock that never
repeats, and in the order moto applied concurrent writes.

Every test drives S3 the way a client would and reads the events handed to ``deliver``
back through ``lambdas.s3_events``, the parser the save function itself uses
(``tests.s3_event_recorder``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from typing import Any

import pytest

from imgcli.lambdas.sequencer import is_later
from imgcli.localcloud import s3_events
from tests.s3_event_recorder import (
    ACCOUNT,
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
