"""The storage handlers together, as ``storage_handlers`` makes them: moto round trips on
the stack's real desired resources for every storage kind, tags others added, and what
destroy plans for a bucket someone else owns.

A round trip is the promise the planner relies on: after ``create``, ``read`` returns
exactly the desired settings (so a second bootstrap plans nothing), an ``update`` of one
setting reads back as that setting, and ``delete`` is safe to repeat.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from imgcli.infra.plan import plan_destroy
from imgcli.infra.resources import Kind
from imgcli.infra.storage_handlers import storage_handlers
from tests.storagedata import (
    BUCKET_RULES,
    EXPIRE_NONCURRENT_AND_MARKERS,
    REGION,
    Clients,
    changed,
    clients_in,
    desired,
    never_sleep,
)

OWN_TAGS = {"imgcli:stack": "t1"}
FOREIGN_TAGS = {"team": "photos"}


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

SHORTER_NONCURRENT_DAYS = [
    BUCKET_RULES[0],
    {**BUCKET_RULES[1], "NoncurrentVersionExpiration": {"NoncurrentDays": 14}},
]
KEEPING_DELETE_MARKERS = [
    BUCKET_RULES[0],
    {k: v for k, v in EXPIRE_NONCURRENT_AND_MARKERS.items() if k != "Expiration"},
]
MORE_OWN_TAGS = {**OWN_TAGS, "imgcli:owner": "ops"}


@pytest.mark.parametrize(
    ("kind", "setting", "value"),
    [
        (Kind.TABLE, "ttl_attribute", "gone_at"),
        (Kind.TABLE, "tags", MORE_OWN_TAGS),
        (
            Kind.QUEUE,
            "attributes",
            {"MessageRetentionPeriod": "3600", "SqsManagedSseEnabled": "true"},
        ),
        (Kind.QUEUE, "tags", MORE_OWN_TAGS),
        (Kind.BUCKET, "lifecycle", SHORTER_NONCURRENT_DAYS),
        (Kind.BUCKET, "lifecycle", KEEPING_DELETE_MARKERS),
        (Kind.BUCKET, "lifecycle", [BUCKET_RULES[0], EXPIRE_NONCURRENT_AND_MARKERS]),
        (Kind.BUCKET, "versioning", "Suspended"),
        (Kind.BUCKET, "tags", MORE_OWN_TAGS),
        (Kind.LOG_GROUP, "retention_days", 14),
        (Kind.LOG_GROUP, "tags", MORE_OWN_TAGS),
    ],
)
def test_round_trip_reads_back_exactly_the_desired_settings(
    handlers: Any, kind: Kind, setting: str, value: Any
) -> None:
    resource = desired(kind)
    handler = handlers[kind]
    assert handler.read(resource.name) is None

    handler.create(resource, {})
    observed = handler.read(resource.name)
    assert observed is not None
    assert observed.settings == resource.settings

    new = changed(resource, setting, value)
    handler.update(new, setting, {})
    observed = handler.read(resource.name)
    assert observed is not None
    assert observed.settings == new.settings

    handler.delete(resource.name, delete_images=False)
    assert handler.read(resource.name) is None
    handler.delete(resource.name, delete_images=False)


def add_foreign_tags(kind: Kind, clients: Clients, name: str) -> None:
    if kind is Kind.TABLE:
        arn = clients("dynamodb").describe_table(TableName=name)["Table"]["TableArn"]
        clients("dynamodb").tag_resource(ResourceArn=arn, Tags=[{"Key": "team", "Value": "photos"}])
    elif kind is Kind.QUEUE:
        url = clients("sqs").get_queue_url(QueueName=name)["QueueUrl"]
        clients("sqs").tag_queue(QueueUrl=url, Tags=FOREIGN_TAGS)
    elif kind is Kind.BUCKET:
        tags = {**all_tags(kind, clients, name), **FOREIGN_TAGS}
        clients("s3").put_bucket_tagging(
            Bucket=name, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]}
        )
    else:
        clients("logs").tag_log_group(logGroupName=name, tags=FOREIGN_TAGS)


def all_tags(kind: Kind, clients: Clients, name: str) -> dict[str, str]:
    if kind is Kind.TABLE:
        arn = clients("dynamodb").describe_table(TableName=name)["Table"]["TableArn"]
        tags = clients("dynamodb").list_tags_of_resource(ResourceArn=arn)["Tags"]
        return {t["Key"]: t["Value"] for t in tags}
    if kind is Kind.QUEUE:
        url = clients("sqs").get_queue_url(QueueName=name)["QueueUrl"]
        return dict(clients("sqs").list_queue_tags(QueueUrl=url)["Tags"])
    if kind is Kind.BUCKET:
        tag_set = clients("s3").get_bucket_tagging(Bucket=name)["TagSet"]
        return {t["Key"]: t["Value"] for t in tag_set}
    return dict(clients("logs").list_tags_log_group(logGroupName=name)["tags"])


@pytest.mark.parametrize("kind", [Kind.TABLE, Kind.QUEUE, Kind.BUCKET, Kind.LOG_GROUP])
def test_tags_others_added_are_neither_reported_nor_removed(
    handlers: Any, clients: Clients, kind: Kind
) -> None:
    resource = desired(kind)
    handler = handlers[kind]
    handler.create(resource, {})
    add_foreign_tags(kind, clients, resource.name)

    observed = handler.read(resource.name)
    assert observed is not None
    assert observed.settings == resource.settings  # still up to date: nothing to plan

    handler.update(changed(resource, "tags", MORE_OWN_TAGS), "tags", {})
    handler.update(resource, "tags", {})
    assert all_tags(kind, clients, resource.name) == {**OWN_TAGS, **FOREIGN_TAGS}


# Destroy, across kinds -----------------------------------------------------------------


def test_destroy_plans_nothing_for_a_bucket_owned_by_someone_else() -> None:
    # Destroy reads in reverse creation order: the notification first, then the bucket.
    resources = [desired(Kind.BUCKET), desired(Kind.NOTIFICATION)]
    s3 = boto3.client("s3", region_name=REGION)
    handlers = storage_handlers(lambda _: s3, region=REGION, sleep=never_sleep)
    with Stubber(s3) as stubber:
        stubber.add_client_error(
            "get_bucket_notification_configuration", "AccessDenied", "Access Denied", 403
        )
        stubber.add_client_error("head_bucket", "403", http_status_code=403)
        plan = plan_destroy(resources, handlers, delete_images=False)
        stubber.assert_no_pending_responses()
    assert plan.steps == ()
