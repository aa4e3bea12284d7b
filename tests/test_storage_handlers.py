"""The storage handlers: moto round trips on the stack's real desired resources, and the
Stubber for what moto cannot show (exact requests, conflicts, waits with a recorded sleep).

A round trip is the promise the planner relies on: after ``create``, ``read`` returns
exactly the desired settings (so a second bootstrap plans nothing), an ``update`` of one
setting reads back as that setting, and ``delete`` is safe to repeat.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from imgcli.infra.aws_support import Patience
from imgcli.infra.handlers import BucketNameTaken, BucketNotEmpty, InfraError
from imgcli.infra.names import StackNames
from imgcli.infra.plan import plan_destroy
from imgcli.infra.resources import FunctionCode, Kind, Resource, StackOptions, desired_stack
from imgcli.infra.storage_handlers import (
    NOTIFICATION_VALIDATION_PATIENCE,
    OWN_NOTIFICATION_ID,
    QUEUE_ATTRIBUTES,
    BucketHandler,
    NotificationHandler,
    QueueHandler,
    TableHandler,
    canonical_lifecycle_rule,
    storage_handlers,
)

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
OWN_TAGS = {"imgcli:stack": "t1"}
FOREIGN_TAGS = {"team": "photos"}

Clients = Callable[[str], Any]


def desired(kind: Kind, region: str = REGION) -> Resource:
    stack = desired_stack(
        StackNames("t1", ACCOUNT, region),
        StackOptions(),
        FunctionCode(b"zip", "sha", "python3.13"),
    )
    return next(r for r in stack if r.kind is kind)


def never_sleep(seconds: float) -> None:
    raise AssertionError(f"nothing here should wait, yet it slept {seconds} s")


def without_policy(resource: Resource) -> Resource:
    """The bucket minus its TLS-only policy: moto ignores the policy's condition, so with it
    every object request (PutObject, DeleteObjects, ...) would be denied."""
    settings = {k: v for k, v in resource.settings.items() if k != "policy"}
    return dataclasses.replace(resource, settings=settings)


def changed(resource: Resource, setting: str, value: Any) -> Resource:
    return dataclasses.replace(resource, settings={**resource.settings, setting: value})


def clients_in(region: str) -> Clients:
    made: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in made:
            made[service] = boto3.client(service, region_name=region)
        return made[service]

    return client


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

BUCKET_RULES = desired(Kind.BUCKET).settings["lifecycle"]
SHORTER_NONCURRENT_DAYS = [
    BUCKET_RULES[0],
    {**BUCKET_RULES[1], "NoncurrentVersionExpiration": {"NoncurrentDays": 14}},
]
#: The rule that also removes delete markers left alone once their versions expired.
EXPIRE_NONCURRENT_AND_MARKERS = {
    "ID": "expire-noncurrent-versions",
    "Status": "Enabled",
    "Filter": {"Prefix": ""},
    "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
    "Expiration": {"ExpiredObjectDeleteMarker": True},
}
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


def test_table_schema_change_is_refused_not_recreated(handlers: Any) -> None:
    resource = desired(Kind.TABLE)
    handlers[Kind.TABLE].create(resource, {})
    other = changed(resource, "schema", {**resource.settings["schema"], "BillingMode": "X"})

    with pytest.raises(InfraError, match="cannot change that in place") as refused:
        handlers[Kind.TABLE].update(other, "schema", {})
    assert "recreate the table" in str(refused.value.hint)
    assert handlers[Kind.TABLE].read(resource.name) is not None


def test_queue_reads_exactly_the_attributes_the_stack_sets() -> None:
    # read() only knows the name, so this list must follow infra.resources.
    assert set(QUEUE_ATTRIBUTES) == set(desired(Kind.QUEUE).settings["attributes"])


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


# Notification --------------------------------------------------------------------------


def foreign_configuration(clients: Clients) -> dict[str, Any]:
    sqs = clients("sqs")
    url = sqs.create_queue(QueueName="someone-elses-queue")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return {
        "QueueConfigurations": [
            {
                "Id": "thumbnails",
                "QueueArn": queue_arn,
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "raw/"}]}},
            }
        ],
        "LambdaFunctionConfigurations": [
            {
                "Id": "audit",
                "LambdaFunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:audit",
                "Events": ["s3:ObjectRemoved:*"],
            }
        ],
    }


def foreign_part(clients: Clients, bucket: str) -> dict[str, Any]:
    configuration = clients("s3").get_bucket_notification_configuration(Bucket=bucket)
    configuration.pop("ResponseMetadata")
    lambdas = configuration.get("LambdaFunctionConfigurations", [])
    configuration["LambdaFunctionConfigurations"] = [
        entry for entry in lambdas if not OWN_NOTIFICATION_ID.fullmatch(entry["Id"])
    ]
    return dict(configuration)


def test_notification_round_trip_keeps_other_configurations(
    handlers: Any, clients: Clients
) -> None:
    resource = desired(Kind.NOTIFICATION)
    handler = handlers[Kind.NOTIFICATION]
    clients("s3").create_bucket(Bucket=resource.name)
    foreign = foreign_configuration(clients)
    clients("s3").put_bucket_notification_configuration(
        Bucket=resource.name, NotificationConfiguration=foreign
    )
    assert handler.read(resource.name) is None

    handler.create(resource, {})
    observed = handler.read(resource.name)
    assert observed is not None
    assert observed.settings == resource.settings
    assert foreign_part(clients, resource.name) == foreign

    created_only = changed(resource, "events", ["s3:ObjectCreated:*"])
    handler.update(created_only, "events", {})
    observed = handler.read(resource.name)
    assert observed is not None
    assert observed.settings == created_only.settings
    assert foreign_part(clients, resource.name) == foreign

    handler.delete(resource.name, delete_images=False)
    assert handler.read(resource.name) is None
    assert foreign_part(clients, resource.name) == foreign
    handler.delete(resource.name, delete_images=False)


def test_notification_of_a_missing_bucket(handlers: Any) -> None:
    resource = desired(Kind.NOTIFICATION)
    handler = handlers[Kind.NOTIFICATION]
    assert handler.read(resource.name) is None
    handler.delete(resource.name, delete_images=False)
    with pytest.raises(InfraError, match="does not exist"):
        handler.create(resource, {})


@pytest.mark.parametrize("stack", ["t1", "my-gallery-2"])
def test_own_notification_id_shape_follows_stack_names(stack: str) -> None:
    assert OWN_NOTIFICATION_ID.fullmatch(StackNames(stack, ACCOUNT, REGION).notification_id)


def test_notification_merge_keeps_eventbridge_and_lowercases_filter_rules() -> None:
    # moto drops EventBridgeConfiguration and never returns "Prefix": only a stub shows this.
    resource = desired(Kind.NOTIFICATION)
    s3 = boto3.client("s3", region_name=REGION)
    queue = {
        "Id": "thumbnails",
        "QueueArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:q",
        "Events": ["s3:ObjectCreated:*"],
    }
    with Stubber(s3) as stubber:
        stubber.add_response(
            "get_bucket_notification_configuration",
            {
                "QueueConfigurations": [
                    {
                        **queue,
                        "Filter": {"Key": {"FilterRules": [{"Name": "Prefix", "Value": "r/"}]}},
                    }
                ],
                "EventBridgeConfiguration": {},
            },
            {"Bucket": resource.name},
        )
        stubber.add_response(
            "put_bucket_notification_configuration",
            {},
            {
                "Bucket": resource.name,
                "NotificationConfiguration": {
                    "QueueConfigurations": [
                        {
                            **queue,
                            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "r/"}]}},
                        }
                    ],
                    "EventBridgeConfiguration": {},
                    "LambdaFunctionConfigurations": [
                        {
                            "Id": resource.settings["id"],
                            "LambdaFunctionArn": resource.settings["function_arn"],
                            "Events": resource.settings["events"],
                        }
                    ],
                },
                "SkipDestinationValidation": False,
            },
        )
        storage_handlers(lambda _: s3, region=REGION)[Kind.NOTIFICATION].create(resource, {})
        stubber.assert_no_pending_responses()


def test_notification_of_a_bucket_we_may_not_read_is_none_of_ours() -> None:
    resource = desired(Kind.NOTIFICATION)
    s3 = boto3.client("s3", region_name=REGION)
    handler = NotificationHandler(s3, sleep=never_sleep)
    with Stubber(s3) as stubber:
        for _ in range(2):
            stubber.add_client_error(
                "get_bucket_notification_configuration",
                "AccessDenied",
                "Access Denied",
                403,
                expected_params={"Bucket": resource.name},
            )
        assert handler.read(resource.name) is None
        handler.delete(resource.name, delete_images=False)  # and nothing is written
        stubber.assert_no_pending_responses()


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


UNVALIDATED = "Unable to validate the following destination configurations"


def expect_notification_put(
    stubber: Stubber, resource: Resource, *, refusals: int, message: str = UNVALIDATED
) -> None:
    stubber.add_response("get_bucket_notification_configuration", {}, {"Bucket": resource.name})
    put = {
        "Bucket": resource.name,
        "NotificationConfiguration": {
            "LambdaFunctionConfigurations": [
                {
                    "Id": resource.settings["id"],
                    "LambdaFunctionArn": resource.settings["function_arn"],
                    "Events": resource.settings["events"],
                }
            ]
        },
        "SkipDestinationValidation": False,
    }
    for _ in range(refusals):
        stubber.add_client_error(
            "put_bucket_notification_configuration",
            "InvalidArgument",
            message,
            400,
            expected_params=put,
        )


def test_notification_write_retries_while_the_lambda_permission_propagates(
    sleeps: list[float],
) -> None:
    resource = desired(Kind.NOTIFICATION)
    s3 = boto3.client("s3", region_name=REGION)
    with Stubber(s3) as stubber:
        expect_notification_put(stubber, resource, refusals=2)
        stubber.add_response("put_bucket_notification_configuration", {})
        NotificationHandler(s3, sleep=sleeps.append).create(resource, {})
        stubber.assert_no_pending_responses()
    assert sleeps == [1.0, 2.0]


def test_notification_write_gives_up_after_about_half_a_minute(sleeps: list[float]) -> None:
    resource = desired(Kind.NOTIFICATION)
    s3 = boto3.client("s3", region_name=REGION)
    retries = list(NOTIFICATION_VALIDATION_PATIENCE.delays())
    with Stubber(s3) as stubber:
        expect_notification_put(stubber, resource, refusals=len(retries) + 1)
        with pytest.raises(
            InfraError,
            match=r"notification of bucket .*still refuses after 27 s.*Unable to validate",
        ) as gave_up:
            NotificationHandler(s3, sleep=sleeps.append).create(resource, {})
        stubber.assert_no_pending_responses()
    assert sleeps == retries == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0]
    assert "lets S3 invoke it" in str(gave_up.value.hint)


def test_notification_write_does_not_retry_other_invalid_arguments(sleeps: list[float]) -> None:
    resource = desired(Kind.NOTIFICATION)
    s3 = boto3.client("s3", region_name=REGION)
    with Stubber(s3) as stubber:
        expect_notification_put(stubber, resource, refusals=1, message="Invalid event name")
        with pytest.raises(ClientError, match="Invalid event name"):
            NotificationHandler(s3, sleep=sleeps.append).create(resource, {})
    assert sleeps == []


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


def table_status(status: str) -> dict[str, Any]:
    return {"Table": {"TableStatus": status}}


def test_table_creation_waits_for_active_before_setting_ttl(sleeps: list[float]) -> None:
    resource = desired(Kind.TABLE)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    with Stubber(dynamodb) as stubber:
        stubber.add_response("create_table", {})
        for status in ("CREATING", "CREATING", "ACTIVE"):
            stubber.add_response(
                "describe_table", table_status(status), {"TableName": resource.name}
            )
        stubber.add_response(
            "describe_time_to_live", {"TimeToLiveDescription": {"TimeToLiveStatus": "DISABLED"}}
        )
        stubber.add_response(
            "update_time_to_live",
            {},
            {
                "TableName": resource.name,
                "TimeToLiveSpecification": {"Enabled": True, "AttributeName": "expires_at"},
            },
        )
        TableHandler(dynamodb, sleep=sleeps.append).create(resource, {})
        stubber.assert_no_pending_responses()
    assert sleeps == [2.0, 2.0]


def test_table_creation_gives_up_after_its_bound(sleeps: list[float]) -> None:
    resource = desired(Kind.TABLE)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    handler = TableHandler(dynamodb, sleep=sleeps.append, patience=Patience(1.0, total_s=2.0))
    with Stubber(dynamodb) as stubber:
        stubber.add_response("create_table", {})
        for _ in range(3):
            stubber.add_response("describe_table", table_status("CREATING"))
        with pytest.raises(
            InfraError, match=r"gave up after 2 s waiting for table .* to become ACTIVE"
        ):
            handler.create(resource, {})
        stubber.assert_no_pending_responses()
    assert sleeps == [1.0, 1.0]


def test_queue_creation_waits_out_a_recently_deleted_name(sleeps: list[float]) -> None:
    resource = desired(Kind.QUEUE)
    sqs = boto3.client("sqs", region_name=REGION)
    url = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{resource.name}"
    with Stubber(sqs) as stubber:
        for _ in range(2):
            stubber.add_client_error("create_queue", "AWS.SimpleQueueService.QueueDeletedRecently")
        stubber.add_response("create_queue", {"QueueUrl": url})
        assert QueueHandler(sqs, sleep=sleeps.append).create(resource, {}) == {}
        stubber.assert_no_pending_responses()
    assert sleeps == [10.0, 10.0]


def test_queue_creation_gives_up_once_the_name_stays_blocked(sleeps: list[float]) -> None:
    resource = desired(Kind.QUEUE)
    sqs = boto3.client("sqs", region_name=REGION)
    with Stubber(sqs) as stubber:
        for _ in range(8):
            stubber.add_client_error("create_queue", "AWS.SimpleQueueService.QueueDeletedRecently")
        with pytest.raises(
            InfraError, match=r"creating queue .*: AWS still refuses after 70 s .*DeletedRecently"
        ) as gave_up:
            QueueHandler(sqs, sleep=sleeps.append).create(resource, {})
        stubber.assert_no_pending_responses()
    assert sleeps == [10.0] * 7  # longer than the 60 s SQS blocks the name for
    assert "wait a minute" in str(gave_up.value.hint)


def test_table_deletion_waits_until_the_table_is_gone(sleeps: list[float]) -> None:
    name = desired(Kind.TABLE).name
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    with Stubber(dynamodb) as stubber:
        stubber.add_response("delete_table", {}, {"TableName": name})
        for _ in range(2):
            stubber.add_response("describe_table", table_status("DELETING"), {"TableName": name})
        stubber.add_client_error(
            "describe_table", "ResourceNotFoundException", http_status_code=400
        )
        TableHandler(dynamodb, sleep=sleeps.append).delete(name, delete_images=False)
        stubber.assert_no_pending_responses()
    assert sleeps == [2.0, 2.0]


def test_table_deletion_wait_is_bounded(sleeps: list[float]) -> None:
    name = desired(Kind.TABLE).name
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    handler = TableHandler(dynamodb, sleep=sleeps.append, patience=Patience(1.0, total_s=2.0))
    with Stubber(dynamodb) as stubber:
        stubber.add_response("delete_table", {}, {"TableName": name})
        for _ in range(3):
            stubber.add_response("describe_table", table_status("DELETING"))
        with pytest.raises(InfraError, match=r"gave up after 2 s waiting for table .* deleted"):
            handler.delete(name, delete_images=False)
        stubber.assert_no_pending_responses()
    assert sleeps == [1.0, 1.0]
