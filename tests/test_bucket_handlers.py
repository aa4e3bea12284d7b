"""The bucket handler: region, emptying and lifecycle rules on moto, and on a Stubber what
moto cannot show (the exact CreateBucket request, names owned elsewhere, conflicts
retried with a recorded sleep, failed deletes)."""

from __future__ import annotations

import dataclasses
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from imgcli.infra.bucket_handlers import BucketHandler, canonical_lifecycle_rule, xml_safe
from imgcli.infra.errors import BucketNameTaken, BucketNotEmpty, InfraError
from imgcli.infra.resources import Kind, Resource
from imgcli.infra.storage_handlers import storage_handlers
from tests.storagedata import (
    BUCKET_RULES,
    EXPIRE_NONCURRENT_AND_MARKERS,
    REGION,
    Clients,
    clients_in,
    desired,
    never_sleep,
)


def without_policy(resource: Resource) -> Resource:
    """The bucket minus its TLS-only policy: moto ignores the policy's condition, so with it
    every object request (PutObject, DeleteObjects, ...) would be denied."""
    settings = {k: v for k, v in resource.settings.items() if k != "policy"}
    return dataclasses.replace(resource, settings=settings)


@pytest.fixture
def clients(moto_aws: None) -> Clients:
    return clients_in(REGION)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def handlers(clients: Clients, sleeps: list[float]) -> Any:
    return storage_handlers(clients, region=REGION, sleep=sleeps.append)


# moto round trips ----------------------------------------------------------------------


def test_bucket_outside_us_east_1_is_created_in_its_region(moto_aws: None) -> None:
    region = "eu-west-1"
    clients = clients_in(region)
    handler = storage_handlers(clients, region=region, sleep=never_sleep)[Kind.BUCKET]
    resource = desired(Kind.BUCKET, region)

    handler.create(resource, {})

    location = clients("s3").get_bucket_location(Bucket=resource.name)
    assert location["LocationConstraint"] == region
    observed = handler.read(resource.name)
    assert observed is not None
    assert observed.settings == resource.settings


def test_bucket_with_images_is_kept_without_delete_images(handlers: Any, clients: Clients) -> None:
    resource = without_policy(desired(Kind.BUCKET))
    handler = handlers[Kind.BUCKET]
    handler.create(resource, {})
    assert not handler.holds_objects(resource.name)
    clients("s3").put_object(Bucket=resource.name, Key="a.jpg", Body=b"x")
    assert handler.holds_objects(resource.name)

    with pytest.raises(BucketNotEmpty, match="holds 1 object") as refused:
        handler.delete(resource.name, delete_images=False)
    assert "--delete-images" in str(refused.value.hint)
    assert handler.read(resource.name) is not None


def test_delete_images_removes_every_version_and_delete_marker(clients: Clients) -> None:
    s3 = clients("s3")
    # Two versions a page, so the bucket is emptied across several listings and batches.
    handler = BucketHandler(s3, region=REGION, sleep=never_sleep, page_size=2)
    resource = without_policy(desired(Kind.BUCKET))
    handler.create(resource, {})
    for body in (b"1", b"2", b"3"):
        s3.put_object(Bucket=resource.name, Key="a.jpg", Body=body)
    s3.put_object(Bucket=resource.name, Key="b c.jpg", Body=b"1")
    s3.delete_object(Bucket=resource.name, Key="a.jpg")
    s3.create_multipart_upload(Bucket=resource.name, Key="big.jpg")

    handler.delete(resource.name, delete_images=True)

    assert handler.read(resource.name) is None
    assert not handler.holds_objects(resource.name)
    handler.delete(resource.name, delete_images=True)


def test_delete_images_removes_keys_that_xml_cannot_carry_one_by_one() -> None:
    """DeleteObjects is an XML body, and XML 1.0 cannot hold most control characters (a
    carriage return it turns into a newline): such keys are deleted one by one."""
    s3 = boto3.client("s3", region_name=REGION)
    handler = BucketHandler(s3, region=REGION, sleep=never_sleep)
    versions = [
        {"Key": key, "VersionId": f"v{n}"}
        for n, key in enumerate(("bell\x07.jpg", "cr\r.jpg", "plain.jpg"))
    ]
    with Stubber(s3) as stubber:
        listing = {"Bucket": "b", "MaxKeys": 1000}
        stubber.add_response("list_object_versions", {"Versions": versions}, listing)
        for entry in versions[:2]:
            stubber.add_response("delete_object", {}, {"Bucket": "b", **entry})
        stubber.add_response(
            "delete_objects",
            {},
            {"Bucket": "b", "Delete": {"Objects": versions[2:], "Quiet": True}},
        )
        stubber.add_response("list_object_versions", {}, listing)
        stubber.add_response("list_multipart_uploads", {}, {"Bucket": "b"})
        stubber.add_response("delete_bucket", {}, {"Bucket": "b"})
        handler.delete("b", delete_images=True)
        stubber.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("key", "safe"),
    [
        ("plain/é €.jpg", True),
        ("tab\t.jpg", False),
        ("nul\x00.jpg", False),
        ("nonchar\ufffe.jpg", False),
        ("nonchar\uffff.jpg", False),
        ("lone\udc80.jpg", False),
        ("astral\U0001f600.jpg", True),
    ],
)
def test_keys_xml_cannot_carry_are_told_apart(key: str, safe: bool) -> None:
    assert xml_safe(key) is safe


def test_deletes_that_change_nothing_stop_destroy_instead_of_looping() -> None:
    s3 = boto3.client("s3", region_name=REGION)
    handler = BucketHandler(s3, region=REGION, sleep=never_sleep)
    stuck = [{"Key": "a.jpg", "VersionId": "v1"}]
    with Stubber(s3) as stubber:
        listing = {"Bucket": "b", "MaxKeys": 1000}
        for _ in range(2):
            stubber.add_response("list_object_versions", {"Versions": stuck}, listing)
            stubber.add_response(
                "delete_objects", {}, {"Bucket": "b", "Delete": {"Objects": stuck, "Quiet": True}}
            )
        with pytest.raises(InfraError, match="still lists 1 object versions of bucket b"):
            handler.delete("b", delete_images=True)


@pytest.mark.parametrize(
    "rule",
    [
        {"ID": "r", "Status": "Enabled", "Filter": {"Prefix": ""}},
        {"ID": "r", "Status": "Enabled", "Filter": {}},
        {"ID": "r", "Status": "Enabled"},
        {"ID": "r", "Status": "Enabled", "Prefix": ""},
        {"ID": "r", "Status": "Enabled", "Prefix": "", "Transitions": [], "Expiration": {}},
    ],
)
def test_lifecycle_rules_for_every_object_read_the_same(rule: dict[str, Any]) -> None:
    expected = {"ID": "r", "Status": "Enabled", "Filter": {"Prefix": ""}}
    assert canonical_lifecycle_rule(rule) == expected


def test_legacy_lifecycle_prefix_becomes_a_filter() -> None:
    rule = {"ID": "r", "Status": "Enabled", "Prefix": "raw/"}
    assert canonical_lifecycle_rule(rule)["Filter"] == {"Prefix": "raw/"}


@pytest.mark.parametrize(
    "returned",
    [
        # moto 5.2.5, as its XML comes back: Expiration first, then ID, Filter, Status.
        {
            "Expiration": {"ExpiredObjectDeleteMarker": True},
            "ID": "expire-noncurrent-versions",
            "Filter": {"Prefix": ""},
            "Status": "Enabled",
            "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
        },
        # S3 may give the every-object filter as an empty Filter or a legacy Prefix.
        {
            "Expiration": {"ExpiredObjectDeleteMarker": True},
            "ID": "expire-noncurrent-versions",
            "Filter": {},
            "Status": "Enabled",
            "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
        },
        {
            "Expiration": {"ExpiredObjectDeleteMarker": True},
            "ID": "expire-noncurrent-versions",
            "Prefix": "",
            "Status": "Enabled",
            "NoncurrentVersionExpiration": {"NoncurrentDays": 30, "NewerNoncurrentVersions": None},
        },
    ],
)
def test_expired_object_delete_marker_reads_back_exactly(returned: dict[str, Any]) -> None:
    assert canonical_lifecycle_rule(returned) == EXPIRE_NONCURRENT_AND_MARKERS


def test_the_stack_expires_lone_delete_markers() -> None:
    assert {"ExpiredObjectDeleteMarker": True} in [rule.get("Expiration") for rule in BUCKET_RULES]
    assert [canonical_lifecycle_rule(rule) for rule in BUCKET_RULES] == BUCKET_RULES


@pytest.mark.parametrize(
    ("expiration", "canonical"),
    [
        ({"ExpiredObjectDeleteMarker": False}, None),
        ({"Days": 3, "ExpiredObjectDeleteMarker": False}, {"Days": 3}),
        ({"Days": 3}, {"Days": 3}),
    ],
)
def test_expired_object_delete_marker_false_reads_as_left_out(
    expiration: dict[str, Any], canonical: dict[str, Any] | None
) -> None:
    rule = {"ID": "r", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": expiration}
    assert canonical_lifecycle_rule(rule).get("Expiration") == canonical


# Stubbed requests, conflicts and waits -------------------------------------------------


def expect_bucket_settings(stubber: Stubber, bucket: str) -> None:
    for operation in (
        "put_public_access_block",
        "put_bucket_ownership_controls",
        "put_bucket_encryption",
        "put_bucket_policy",
        "put_bucket_versioning",
        "put_bucket_lifecycle_configuration",
    ):
        stubber.add_response(operation, {})
    stubber.add_client_error("get_bucket_tagging", "NoSuchTagSet", http_status_code=404)
    stubber.add_response(
        "put_bucket_tagging",
        {},
        {"Bucket": bucket, "Tagging": {"TagSet": [{"Key": "imgcli:stack", "Value": "t1"}]}},
    )


@pytest.mark.parametrize(
    ("region", "configuration"),
    [
        ("us-east-1", {}),
        ("eu-west-1", {"CreateBucketConfiguration": {"LocationConstraint": "eu-west-1"}}),
    ],
)
def test_create_bucket_names_a_location_only_outside_us_east_1(
    region: str, configuration: dict[str, Any]
) -> None:
    resource = desired(Kind.BUCKET, region)
    s3 = boto3.client("s3", region_name=region)
    with Stubber(s3) as stubber:
        stubber.add_response("create_bucket", {}, {"Bucket": resource.name, **configuration})
        expect_bucket_settings(stubber, resource.name)
        BucketHandler(s3, region=region, sleep=never_sleep).create(resource, {})
        stubber.assert_no_pending_responses()


def test_bucket_already_owned_by_you_carries_on() -> None:
    resource = desired(Kind.BUCKET)
    s3 = boto3.client("s3", region_name=REGION)
    with Stubber(s3) as stubber:
        stubber.add_client_error("create_bucket", "BucketAlreadyOwnedByYou", http_status_code=409)
        expect_bucket_settings(stubber, resource.name)
        BucketHandler(s3, region=REGION, sleep=never_sleep).create(resource, {})
        stubber.assert_no_pending_responses()


def test_bucket_name_of_another_account_is_reported_on_create() -> None:
    resource = desired(Kind.BUCKET)
    s3 = boto3.client("s3", region_name=REGION)
    with Stubber(s3) as stubber:
        stubber.add_client_error("create_bucket", "BucketAlreadyExists", http_status_code=409)
        with pytest.raises(BucketNameTaken, match="another AWS account") as taken:
            BucketHandler(s3, region=REGION, sleep=never_sleep).create(resource, {})
    assert "--stack" in str(taken.value.hint)


def test_bucket_name_of_another_account_is_reported_on_read() -> None:
    s3 = boto3.client("s3", region_name=REGION)
    with Stubber(s3) as stubber:
        stubber.add_client_error("head_bucket", "403", http_status_code=403)
        with pytest.raises(BucketNameTaken, match="another AWS account"):
            BucketHandler(s3, region=REGION, sleep=never_sleep).read("taken")


def test_create_bucket_retries_while_a_deleted_namesake_settles() -> None:
    resource = desired(Kind.BUCKET)
    s3 = boto3.client("s3", region_name=REGION)
    sleeps: list[float] = []
    with Stubber(s3) as stubber:
        stubber.add_client_error("create_bucket", "OperationAborted", http_status_code=409)
        stubber.add_response("create_bucket", {})
        expect_bucket_settings(stubber, resource.name)
        BucketHandler(s3, region=REGION, sleep=sleeps.append).create(resource, {})
    assert sleeps == [5.0]


def test_create_bucket_gives_up_once_the_conflict_outlasts_its_bound(sleeps: list[float]) -> None:
    resource = desired(Kind.BUCKET)
    s3 = boto3.client("s3", region_name=REGION)
    with Stubber(s3) as stubber:
        for _ in range(25):
            stubber.add_client_error("create_bucket", "OperationAborted", http_status_code=409)
        with pytest.raises(
            InfraError,
            match=r"creating bucket .*: AWS still refuses after 120 s .*OperationAborted",
        ) as gave_up:
            BucketHandler(s3, region=REGION, sleep=sleeps.append).create(resource, {})
        stubber.assert_no_pending_responses()
    assert sleeps == [5.0] * 24
    assert "wait a few minutes" in str(gave_up.value.hint)


def test_failed_deletes_of_versions_are_raised_and_the_bucket_kept() -> None:
    s3 = boto3.client("s3", region_name=REGION)
    with Stubber(s3) as stubber:
        stubber.add_response("list_object_versions", {"Versions": [{"Key": "a", "VersionId": "1"}]})
        stubber.add_response(
            "delete_objects",
            {"Errors": [{"Key": "a", "VersionId": "1", "Code": "AccessDenied", "Message": "no"}]},
            {"Bucket": "b", "Delete": {"Objects": [{"Key": "a", "VersionId": "1"}], "Quiet": True}},
        )
        with pytest.raises(InfraError, match=r"refused to delete 1 .*AccessDenied"):
            BucketHandler(s3, region=REGION, sleep=never_sleep).delete("b", delete_images=True)
        stubber.assert_no_pending_responses()
