"""The reconcile service: the bucket's listing, the index's, batched repairs, the invocation.

The bucket side runs against moto in process (a versioned bucket with overwrites, a delete
marker and an object from before versioning); the repair runner against a recording
double of the repair call; the invocation against a real Lambda client on a Stubber, so
the exact request is asserted.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from imgcli.errors import RemoteError
from imgcli.reconcile import (
    WOULD_REPAIR,
    KeyReport,
    ReconcileSummary,
    bucket_objects,
    index_records,
    read_ahead,
    reconcile,
)
from imgcli.reconcile_drift import BucketObject, Drift, IndexRecord, KeyDrift
from imgcli.reconcile_repair import MAX_REPAIR_KEYS, SaveFunctionRepairs, outcomes_of

BUCKET = "reconcile-tests"


def test_the_bucket_listing_gives_each_keys_current_version(s3_client: Any) -> None:
    s3 = s3_client
    s3.create_bucket(Bucket=BUCKET)
    before = s3.put_object(Bucket=BUCKET, Key="old.jpg", Body=b"from before versioning")
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    for body in (b"one", b"two", b"three"):
        latest = s3.put_object(Bucket=BUCKET, Key="a/overwritten.jpg", Body=body)
    s3.put_object(Bucket=BUCKET, Key="a/deleted.jpg", Body=b"gone")
    s3.delete_object(Bucket=BUCKET, Key="a/deleted.jpg")  # a delete marker is latest
    kept = s3.put_object(Bucket=BUCKET, Key="b.jpg", Body=b"kept")

    found = list(bucket_objects(s3, BUCKET))

    assert found == [
        BucketObject("a/overwritten.jpg", latest["VersionId"], latest["ETag"].strip('"')),
        BucketObject("b.jpg", kept["VersionId"], kept["ETag"].strip('"')),
        # S3's "null" version: compared by ETag.
        BucketObject("old.jpg", None, before["ETag"].strip('"')),
    ]
    assert [each.key for each in bucket_objects(s3, BUCKET, "a/")] == ["a/overwritten.jpg"]


class PagedVersions:
    """A client whose ListObjectVersions answers the given pages, and records the request."""

    def __init__(self, pages: list[dict[str, Any]]) -> None:
        self.pages = pages
        self.arguments: dict[str, Any] = {}

    def get_paginator(self, name: str) -> PagedVersions:
        assert name == "list_object_versions"
        return self

    def paginate(self, **arguments: Any) -> Iterator[dict[str, Any]]:
        self.arguments = arguments
        return iter(self.pages)


def test_a_keys_versions_split_across_pages_give_one_object() -> None:
    def version(key: str, version_id: str, latest: bool) -> dict[str, Any]:
        return {"Key": key, "VersionId": version_id, "IsLatest": latest, "ETag": '"e"'}

    client = PagedVersions(
        [
            {"Versions": [version("a", "3", True), version("a", "2", False)]},
            {"Versions": [version("a", "1", False), version("b", "9", True)]},
            {"DeleteMarkers": [{"Key": "c", "VersionId": "m", "IsLatest": True}]},
        ]
    )
    assert list(bucket_objects(client, BUCKET, "")) == [
        BucketObject("a", "3", "e"),
        BucketObject("b", "9", "e"),
    ]
    assert client.arguments == {"Bucket": BUCKET}  # no empty Prefix sent


class Listing:
    """The API's listings: active and invalid records, as pages."""

    def __init__(
        self, active: list[str], invalid: list[str], current: frozenset[str] = frozenset()
    ) -> None:
        self.listed = {False: active, True: invalid}
        #: Keys whose records the current schema wrote; the rest have no schema_version.
        self.current = current
        self.asked: list[tuple[str | None, bool]] = []

    def list_pages(
        self, *, prefix: str | None = None, invalid: bool = False, page_size: int = 1000
    ) -> Iterator[list[dict[str, Any]]]:
        self.asked.append((prefix, invalid))
        status = "invalid" if invalid else "active"
        items = [
            {"key": key, "status": status, "version_id": "v", "etag": "e", "size": 1}
            | ({"schema_version": 2} if key in self.current else {})
            for key in self.listed[invalid]
        ]
        for start in range(0, len(items), 2):
            yield items[start : start + 2]


def test_the_index_is_the_active_and_invalid_listings_merged() -> None:
    api = Listing(["a", "c", "d", "f"], ["b", "e"])
    records = list(index_records(api, "p"))
    assert [(record.key, record.status) for record in records] == [
        ("a", "active"),
        ("b", "invalid"),
        ("c", "active"),
        ("d", "active"),
        ("e", "invalid"),
        ("f", "active"),
    ]
    assert records[0] == IndexRecord("a", "v", "e", "active", schema=1)
    assert sorted(api.asked) == [("p", False), ("p", True)]
    list(index_records(api, ""))
    assert api.asked[-1][0] is None  # an empty prefix asks for everything


def test_the_index_says_which_schema_wrote_each_record() -> None:
    api = Listing(["a", "c"], ["b"], current=frozenset({"a", "b"}))
    assert [(r.key, r.schema) for r in index_records(api)] == [("a", 2), ("b", 2), ("c", 1)]


@pytest.mark.parametrize("schema", [0, -1, "2", 1.5, True])
def test_a_record_with_a_schema_version_that_is_no_version_stops_the_run(schema: object) -> None:
    class Odd(Listing):
        def list_pages(self, **_: Any) -> Iterator[list[dict[str, Any]]]:
            yield [{"key": "a", "version_id": "v", "etag": "e", "schema_version": schema}]

    with pytest.raises(RemoteError, match="schema_version"):
        list(index_records(Odd([], [])))


def test_older_schema_stale_keys_are_counted_apart() -> None:
    found = [
        KeyDrift("a", Drift.STALE, older_schema=True),
        KeyDrift("b", Drift.STALE),
        KeyDrift("c", Drift.UNCHANGED),
    ]
    summary = ReconcileSummary(dry_run=True)
    reports = list(reconcile(found, None, summary))
    assert [report.key for report in reports] == ["a", "b"]
    assert (summary.stale, summary.older_schema, summary.unchanged) == (2, 1, 1)
    assert summary.as_json()["older_schema"] == 1


class RecordingRepair:
    """A repair call that answers from ``outcomes`` (default ``indexed``) and records each
    batch and how many batches ran at once."""

    def __init__(self, outcomes: dict[str, str] | None = None, *, hold: int = 0) -> None:
        self.outcomes = outcomes or {}
        self.batches: list[list[str]] = []
        self.running = 0
        self.most_running = 0
        self._lock = threading.Lock()
        # Each call waits until `hold` calls run at once, so the window is proven full.
        self._together = threading.Barrier(hold) if hold else None

    def __call__(self, keys: Sequence[str]) -> dict[str, str]:
        with self._lock:
            self.batches.append(list(keys))
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            if self._together is not None:
                self._together.wait(timeout=10)
            return {key: self.outcomes.get(key, "indexed") for key in keys}
        finally:
            with self._lock:
                self.running -= 1


def drifts(count: int, drift: Drift = Drift.MISSING) -> list[KeyDrift]:
    return [KeyDrift(f"k{n:06d}", drift) for n in range(count)]


def test_drifted_keys_are_repaired_in_batches_of_at_most_100_a_few_at_once() -> None:
    # 12 batches: three rounds of 4 running together (RecordingRepair waits for 4).
    found = [*drifts(1200), KeyDrift("z", Drift.UNCHANGED)]
    repair = RecordingRepair(hold=4)
    summary = ReconcileSummary()

    reports = list(reconcile(found, repair, summary, concurrency=4))

    assert [report.key for report in reports] == [item.key for item in found[:1200]]
    assert all(report.outcome == "indexed" for report in reports)
    assert sorted(key for batch in repair.batches for key in batch) == [
        item.key for item in found[:1200]
    ]
    assert max(len(batch) for batch in repair.batches) == MAX_REPAIR_KEYS
    assert repair.most_running == 4
    assert summary.as_json() == {
        "missing": 1200,
        "stale": 0,
        "orphaned": 0,
        "unchanged": 1,
        "repaired": 1200,
        "failed": 0,
        "older_schema": 0,
        "dry_run": False,
    }


def test_failed_repairs_are_counted_and_reported_with_their_reason() -> None:
    found = [
        KeyDrift("a", Drift.MISSING),
        KeyDrift("b", Drift.STALE),
        KeyDrift("c", Drift.ORPHANED),
        KeyDrift("d", Drift.UNCHANGED),
    ]
    repair = RecordingRepair({"b": "failed: S3 GetObject timed out", "c": "removed"})
    summary = ReconcileSummary()
    reports = list(reconcile(found, repair, summary, batch_size=2))
    assert reports == [
        KeyReport("a", Drift.MISSING, "indexed"),
        KeyReport("b", Drift.STALE, "failed: S3 GetObject timed out"),
        KeyReport("c", Drift.ORPHANED, "removed"),
    ]
    assert repair.batches == [["a", "b"], ["c"]]
    assert (summary.repaired, summary.failed, summary.drifted) == (2, 1, 3)


def test_a_dry_run_sends_no_repair() -> None:
    summary = ReconcileSummary(dry_run=True)
    reports = list(reconcile(drifts(3, Drift.ORPHANED), None, summary))
    assert {report.outcome for report in reports} == {WOULD_REPAIR}
    assert (summary.orphaned, summary.repaired, summary.failed) == (3, 0, 0)


def test_an_error_of_the_repair_call_stops_the_run_after_the_running_batches() -> None:
    class Refused(Exception):
        pass

    sent: list[list[str]] = []

    def repair(keys: Sequence[str]) -> dict[str, str]:
        sent.append(list(keys))
        raise Refused("AccessDenied")

    taken = 0

    def listing() -> Iterator[KeyDrift]:
        nonlocal taken
        for item in drifts(10_000):
            taken += 1
            yield item

    with pytest.raises(Refused):
        list(reconcile(listing(), repair, ReconcileSummary(), concurrency=2))
    # The first failure stops the listing: a few batches at most, not 100.
    assert len(sent) <= 4
    assert taken <= 5 * MAX_REPAIR_KEYS


def test_read_ahead_keeps_order_and_passes_errors_on() -> None:
    assert list(read_ahead(iter(range(5)))) == [0, 1, 2, 3, 4]

    def failing() -> Iterator[int]:
        yield 1
        raise RuntimeError("page 2 failed")

    reader = read_ahead(failing())
    assert next(reader) == 1
    with pytest.raises(RuntimeError, match="page 2 failed"):
        next(reader)


# The repair invocation


def lambda_client() -> Any:
    return boto3.client("lambda", region_name="us-east-1")


def answer(payload: Any, function_error: str | None = None) -> dict[str, Any]:
    body = json.dumps(payload).encode()
    response: dict[str, Any] = {
        "StatusCode": 200,
        "Payload": StreamingBody(io.BytesIO(body), len(body)),
    }
    if function_error:
        response["FunctionError"] = function_error
    return response


def test_a_repair_invokes_the_save_function_synchronously_with_the_repair_shape() -> None:
    client = lambda_client()
    keys = ["a.jpg", "b/c d.png"]
    expected = {
        "FunctionName": "imgcli-x-save",
        "InvocationType": "RequestResponse",
        "Payload": json.dumps(
            {"imgcli": "repair", "version": 1, "bucket": BUCKET, "keys": keys}
        ).encode(),
    }
    with Stubber(client) as stubber:
        stubber.add_response(
            "invoke", answer({"repaired": {"a.jpg": "indexed", "b/c d.png": "newer"}}), expected
        )
        outcomes = SaveFunctionRepairs(client, "imgcli-x-save", BUCKET)(keys)
    assert outcomes == {"a.jpg": "indexed", "b/c d.png": "newer"}


def test_a_function_error_fails_the_whole_batch_with_its_message() -> None:
    client = lambda_client()
    error = {"errorType": "ClientError", "errorMessage": "Throttling on GetItem"}
    with Stubber(client) as stubber:
        stubber.add_response("invoke", answer(error, "Unhandled"))
        outcomes = SaveFunctionRepairs(client, "f", BUCKET)(["a", "b"])
    assert outcomes == dict.fromkeys(
        ["a", "b"], "failed: the save function failed: ClientError: Throttling on GetItem"
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        # A function deployed before repairs acknowledges the shape without repairing.
        (b'{"unhandled": 1}', "run 'imgcli bootstrap'"),
        (b"not json", "run 'imgcli bootstrap'"),
        (b'{"repaired": {"a": "indexed"}}', "no outcome for this key"),
        (b'{"refused": "bucket x is not mine", "repaired": {}}', "refused the repair: bucket x"),
        (b'{"repaired": {"a": "indexed", "b": "fixed?"}}', "unknown outcome 'fixed?'"),
    ],
)
def test_an_answer_without_an_outcome_for_a_key_fails_that_key(body: bytes, reason: str) -> None:
    outcomes = outcomes_of(["a", "b"], body)
    assert outcomes["b"].startswith("failed: ") and reason in outcomes["b"]


def test_a_key_failure_from_the_function_is_kept_as_it_is() -> None:
    body = json.dumps({"repaired": {"a": "failed: S3 HeadObject 503", "b": "removed"}})
    assert outcomes_of(["a", "b"], body.encode()) == {
        "a": "failed: S3 HeadObject 503",
        "b": "removed",
    }


def test_the_summary_line_says_how_many_stale_records_are_of_an_older_schema() -> None:
    from imgcli.commands.integrity import summary_line

    summary = ReconcileSummary(dry_run=True, stale=3, older_schema=1, unchanged=2)
    assert summary_line(summary) == (
        "dry run: 5 keys compared: 0 missing, 3 stale (1 record of an older schema), "
        "0 orphaned, 2 unchanged; nothing changed"
    )
    assert "older" not in summary_line(ReconcileSummary(dry_run=True, stale=3))
