"""The services under ``imgcli delete``: request budgets and S3's per-key answers.

Existence checks run against moto in process (with a botocore event hook counting the
requests), DeleteObjects batches against botocore's ``Stubber``, ``--wait`` against a
recording double of the API and a fake clock. ``imgcli delete`` itself runs end to end in
``tests/test_commands_gallery.py`` and ``tests/test_gallery_output.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from imgcli.config import LOCAL_REGION
from imgcli.deletion import (
    DeleteOutcome,
    DeletionPlan,
    delete_batch,
    delete_planned,
    existing_keys,
    plan_deletion,
    wait_until_unlisted,
)
from imgcli.output import human_size

#: Keys an XML request body cannot carry unchanged: ESC is not XML 1.0, CR reads as LF.
XML_UNSAFE = ["d/\x1b[31mred.jpg", "d/cr\rreturn.jpg"]


@dataclass
class S3Requests:
    """Counts the S3 operations a client sends (a botocore event hook, no patching)."""

    operations: list[str] = field(default_factory=list)

    def __call__(self, model: Any, **_: Any) -> None:
        self.operations.append(model.name)

    def count(self, name: str) -> int:
        return self.operations.count(name)


@pytest.fixture
def counted_s3(s3_client: Any, bucket: str) -> tuple[Any, S3Requests]:
    keys = [f"d/{n:02d}.jpg" for n in range(20)]
    keys += ["d/sub/deeper.jpg", "top.jpg", "d/ü.jpg", "other/a b.jpg", "folder/"]
    for key in keys:
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"x")
    requests = S3Requests()
    s3_client.meta.events.register("before-call.s3", requests)
    return s3_client, requests


def test_existence_of_keys_in_one_directory_costs_one_listing(
    counted_s3: tuple[Any, S3Requests], bucket: str
) -> None:
    s3, requests = counted_s3
    wanted = ["d/03.jpg", "d/07.jpg", "d/07x.jpg", "d/19.jpg", "d/sub", "d/ü.jpg", "d/zz.jpg"]

    found = existing_keys(s3, bucket, wanted)

    assert found == {"d/03.jpg", "d/07.jpg", "d/19.jpg", "d/ü.jpg"}
    assert requests.operations == ["ListObjectsV2"]


def test_existence_checks_stay_bounded_by_falling_back_to_head(
    counted_s3: tuple[Any, S3Requests], bucket: str
) -> None:
    s3, requests = counted_s3
    wanted = ["d/00.jpg", "d/15.jpg", "d/nope.jpg", "top.jpg", "other/a b.jpg", "folder/", "x/y"]

    found = existing_keys(s3, bucket, wanted, page_size=1)

    assert found == {"d/00.jpg", "d/15.jpg", "top.jpg", "other/a b.jpg", "folder/"}
    # Never more than two requests per key, whatever the directory holds.
    assert len(requests.operations) <= 2 * len(wanted)
    assert requests.count("HeadObject") >= 1


def test_a_key_longer_than_s3_allows_is_missing_without_a_request(
    counted_s3: tuple[Any, S3Requests], bucket: str
) -> None:
    s3, requests = counted_s3

    assert existing_keys(s3, bucket, ["k" * 1025, "bad\udcffbyte.jpg"]) == set()
    assert requests.operations == []


def test_keys_xml_cannot_carry_are_checked_with_head_object(
    counted_s3: tuple[Any, S3Requests], bucket: str
) -> None:
    s3, requests = counted_s3
    for key in XML_UNSAFE:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    requests.operations.clear()

    found = existing_keys(s3, bucket, [*XML_UNSAFE, "d/\x1b[2Jgone.jpg", "d/tab\tgone.jpg"])

    assert found == set(XML_UNSAFE)
    # One HeadObject per key XML cannot carry; the tab key is listed with d/'s others.
    assert requests.operations == ["HeadObject"] * 3 + ["ListObjectsV2"]


def test_keys_xml_cannot_carry_are_deleted_one_by_one() -> None:
    s3 = boto3.client("s3", region_name=LOCAL_REGION)
    keys = ["a.jpg", *XML_UNSAFE, "tab\tnewline\n.jpg"]
    with Stubber(s3) as stub:
        stub.add_response(
            "delete_objects",
            {},
            {
                "Bucket": "b",
                "Delete": {
                    "Objects": [{"Key": "a.jpg"}, {"Key": "tab\tnewline\n.jpg"}],
                    "Quiet": True,
                },
            },
        )
        stub.add_response("delete_object", {}, {"Bucket": "b", "Key": XML_UNSAFE[0]})
        stub.add_client_error(
            "delete_object",
            service_error_code="AccessDenied",
            service_message="Access Denied",
            http_status_code=403,
            expected_params={"Bucket": "b", "Key": XML_UNSAFE[1]},
        )
        outcomes = delete_batch(s3, "b", keys)
        stub.assert_no_pending_responses()

    assert outcomes == [
        DeleteOutcome("a.jpg", "deleted"),
        DeleteOutcome(XML_UNSAFE[0], "deleted"),
        DeleteOutcome(XML_UNSAFE[1], "failed", "AccessDenied: Access Denied"),
        DeleteOutcome("tab\tnewline\n.jpg", "deleted"),
    ]


def test_a_plan_puts_given_keys_first_and_counts_the_prefix(
    counted_s3: tuple[Any, S3Requests], bucket: str
) -> None:
    s3, _ = counted_s3

    plan = plan_deletion(s3, bucket, ["top.jpg", "d/01.jpg", "gone.jpg"], "d/0")

    assert plan.missing == ("gone.jpg",)
    assert plan.to_delete[:2] == ("top.jpg", "d/01.jpg")
    assert set(plan.to_delete[2:]) == {f"d/0{n}.jpg" for n in range(10)} - {"d/01.jpg"}
    assert plan.under_prefix == 9


def test_delete_batch_reports_s3s_per_key_errors() -> None:
    s3 = boto3.client("s3", region_name=LOCAL_REGION)
    keys = ["a.jpg", "locked.jpg", "c.jpg"]
    with Stubber(s3) as stub:
        stub.add_response(
            "delete_objects",
            {"Errors": [{"Key": "locked.jpg", "Code": "AccessDenied", "Message": "Access Denied"}]},
            {
                "Bucket": "b",
                "Delete": {"Objects": [{"Key": key} for key in keys], "Quiet": True},
            },
        )
        outcomes = delete_batch(s3, "b", keys)

    assert outcomes == [
        DeleteOutcome("a.jpg", "deleted"),
        DeleteOutcome("locked.jpg", "failed", "AccessDenied: Access Denied"),
        DeleteOutcome("c.jpg", "deleted"),
    ]


def test_deletes_go_1000_keys_per_request_after_the_missing_ones() -> None:
    s3 = boto3.client("s3", region_name=LOCAL_REGION)
    keys = tuple(f"k/{n:04d}" for n in range(2500))
    plan = DeletionPlan(keys, missing=("gone.jpg",))
    with Stubber(s3) as stub:
        for batch in (keys[:1000], keys[1000:2000], keys[2000:]):
            stub.add_response(
                "delete_objects",
                {},
                {"Bucket": "b", "Delete": {"Objects": [{"Key": k} for k in batch], "Quiet": True}},
            )
        outcomes = list(delete_planned(s3, "b", plan))
        stub.assert_no_pending_responses()

    assert outcomes[0] == DeleteOutcome("gone.jpg", "missing", "no such key in the bucket")
    assert [o.key for o in outcomes[1:]] == list(keys)
    assert {o.status for o in outcomes[1:]} == {"deleted"}


@dataclass
class FakeClock:
    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class IndexLagging:
    """The API as a recording double: each key stays listed for ``rounds[key]`` lookups."""

    rounds: dict[str, int]
    lookups: list[str] = field(default_factory=list)
    listings: int = 0

    def get_image(self, key: str) -> dict[str, Any] | None:
        self.lookups.append(key)
        self.rounds[key] -= 1
        return {"key": key} if self.rounds[key] >= 0 else None

    def list_images(
        self, *, prefix: str | None = None, invalid: bool = False
    ) -> Iterator[dict[str, Any]]:
        self.listings += 1
        under = [key for key in self.rounds if key.startswith(prefix or "")]
        if invalid:  # a round lists active then invalid images: the round is over
            for key in under:
                self.rounds[key] -= 1
            return iter([])
        return iter([{"key": key} for key in under if self.rounds[key] > 0])


def test_wait_polls_until_no_key_is_listed() -> None:
    clock = FakeClock()
    api = IndexLagging({"a.jpg": 0, "b.jpg": 2})

    remaining = wait_until_unlisted(api, ["a.jpg", "b.jpg"], sleep=clock.sleep, clock=clock)

    assert remaining == set()
    assert sorted(api.lookups) == ["a.jpg", "b.jpg", "b.jpg", "b.jpg"]  # a gone: asked once
    assert clock.sleeps == [0.2, 0.4]


def test_wait_gives_up_at_the_timeout_and_says_what_is_left() -> None:
    clock = FakeClock()
    api = IndexLagging({"stuck.jpg": 10**6})

    remaining = wait_until_unlisted(api, ["stuck.jpg"], timeout_s=5, sleep=clock.sleep, clock=clock)

    assert remaining == {"stuck.jpg"}
    assert sum(clock.sleeps) == pytest.approx(5)
    assert max(clock.sleeps) <= 2.0


def test_wait_lists_a_large_prefix_instead_of_asking_per_key() -> None:
    clock = FakeClock()
    keys = [f"p/{n:03d}.jpg" for n in range(150)]
    api = IndexLagging(dict.fromkeys(keys, 1) | {"elsewhere.jpg": 0})

    remaining = wait_until_unlisted(
        api, [*keys, "elsewhere.jpg"], prefix="p/", sleep=clock.sleep, clock=clock
    )

    assert remaining == set()
    assert api.lookups == ["elsewhere.jpg"]
    assert api.listings == 4  # active and invalid, two rounds


def test_sizes_read_as_ls_would_print_them() -> None:
    assert human_size(0) == "0 B"
    assert human_size(1023) == "1023 B"
    assert human_size(1536) == "1.5 KiB"
    assert human_size(5 * 1024**3) == "5.0 GiB"
