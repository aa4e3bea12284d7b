"""bootstrap and destroy on moto, in process: every resource's configuration, no-op
re-runs, a failure injected at each step then resumed, and a clean destroy."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from imgcli.aws import AwsClients
from imgcli.config import Flags, resolve_stack
from imgcli.infra import deploy
from imgcli.infra.errors import StackNotBootstrapped, StackUsageError
from imgcli.infra.plan import Plan
from imgcli.infra.state import StackState, state_path
from imgcli.localcloud import api_url

ACCOUNT = "123456789012"
READ_ONLY = ("Get", "List", "Describe", "Head")


class RecordingClients:
    """The stack's real clients, with every operation they send recorded by name.

    ``fail_at_mutation = n`` makes the n-th mutating call from then on raise, as a dropped
    connection would, to prove that a bootstrap can resume from any point, mid-step too.
    """

    def __init__(self, aws: AwsClients) -> None:
        self.aws = aws
        self.operations: list[str] = []
        self.fail_at_mutation: int | None = None
        self._mutations_since_armed = 0

    def client(self, service: str) -> Any:
        client = self.aws.client(service)
        client.meta.events.register("before-call", self._record, unique_id="recorder")
        return client

    @property
    def mutations(self) -> list[str]:
        return [op for op in self.operations if not op.startswith(READ_ONLY)]

    def arm(self, failing_mutation: int) -> None:
        self.fail_at_mutation = failing_mutation
        self._mutations_since_armed = 0

    def _record(self, model: Any, **_: Any) -> None:
        self.operations.append(model.name)
        if self.fail_at_mutation is None or model.name.startswith(READ_ONLY):
            return
        self._mutations_since_armed += 1
        if self._mutations_since_armed == self.fail_at_mutation:
            self.fail_at_mutation = None
            raise ConnectionError(f"injected failure in {model.name}")


@pytest.fixture
def stack(moto_aws: None) -> Iterator[tuple[deploy.StackEnvironment, RecordingClients]]:
    settings = resolve_stack(Flags(stack="t1", target="aws"), os.environ)
    settings = replace(settings, region="us-east-1")
    clients = RecordingClients(AwsClients(settings))
    yield deploy.StackEnvironment("t1", "aws", clients.client, "us-east-1"), clients


def bootstrap(environment: deploy.StackEnvironment, **changes: Any) -> deploy.Outcome:
    return deploy.bootstrap(environment, changes, dry_run=False)


def destroy(environment: deploy.StackEnvironment, delete_images: bool = True) -> deploy.Outcome:
    return deploy.destroy(
        environment, delete_images=delete_images, dry_run=False, confirm=lambda plan: True
    )


def test_bootstrap_creates_every_resource_as_specified(stack: Any) -> None:
    environment, clients = stack
    names = environment.names
    outcome = bootstrap(environment)
    assert outcome.executed and outcome.description is not None
    client = clients.aws.client

    s3 = client("s3")
    block = s3.get_public_access_block(Bucket=names.bucket)["PublicAccessBlockConfiguration"]
    assert block == dict.fromkeys(
        ["BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"], True
    )
    ownership = s3.get_bucket_ownership_controls(Bucket=names.bucket)["OwnershipControls"]
    assert ownership["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    encryption = s3.get_bucket_encryption(Bucket=names.bucket)
    rule = encryption["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    policy = json.loads(s3.get_bucket_policy(Bucket=names.bucket)["Policy"])
    (deny,) = policy["Statement"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert set(deny["Resource"]) == {names.bucket_arn, f"{names.bucket_arn}/*"}
    assert s3.get_bucket_versioning(Bucket=names.bucket)["Status"] == "Enabled"
    rules = s3.get_bucket_lifecycle_configuration(Bucket=names.bucket)["Rules"]
    by_id = {r["ID"]: r for r in rules}
    assert by_id["abort-incomplete-multipart-uploads"]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 7
    }
    noncurrent = by_id["expire-noncurrent-versions"]["NoncurrentVersionExpiration"]
    assert noncurrent["NoncurrentDays"] == 30
    tags = s3.get_bucket_tagging(Bucket=names.bucket)["TagSet"]
    assert {"Key": "imgcli:stack", "Value": "t1"} in tags
    assert by_id["expire-noncurrent-versions"]["Expiration"] == {"ExpiredObjectDeleteMarker": True}

    dynamodb = client("dynamodb")
    table = dynamodb.describe_table(TableName=names.table)["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [{"AttributeName": "key", "KeyType": "HASH"}]
    assert [i["IndexName"] for i in table["GlobalSecondaryIndexes"]] == ["status-key-index"]
    ttl = dynamodb.describe_time_to_live(TableName=names.table)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires_at" and ttl["TimeToLiveStatus"] == "ENABLED"
    table_tags = dynamodb.list_tags_of_resource(ResourceArn=table["TableArn"])["Tags"]
    assert {"Key": "imgcli:stack", "Value": "t1"} in table_tags

    sqs = client("sqs")
    queue_url = sqs.get_queue_url(QueueName=names.failure_queue)["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    assert attributes["MessageRetentionPeriod"] == str(14 * 24 * 3600)
    assert attributes["QueueArn"] == names.failure_queue_arn
    assert sqs.list_queue_tags(QueueUrl=queue_url)["Tags"] == {"imgcli:stack": "t1"}

    logs = client("logs")
    for function in (names.save_function, names.retrieve_function):
        (group,) = logs.describe_log_groups(logGroupNamePrefix=names.log_group(function))[
            "logGroups"
        ]
        assert group["retentionInDays"] == 30

    iam = client("iam")
    save_policy = _inline_policy(iam, names.save_role)
    save_actions = _actions(save_policy)
    assert save_actions == {
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:ListBucket",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "s3:PutObject",
        "s3:DeleteObject",
        "sqs:SendMessage",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }
    # It writes only where no event comes from: the thumbnails bucket.
    for write in ("s3:PutObject", "s3:DeleteObject"):
        assert _resources(save_policy, write) == {f"{names.thumbnails_bucket_arn}/*"}
    retrieve_actions = _actions(_inline_policy(iam, names.retrieve_role))
    assert retrieve_actions == {
        "dynamodb:GetItem",
        "dynamodb:Query",
        "s3:GetObject",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }
    for document in (save_policy, _inline_policy(iam, names.retrieve_role)):
        for statement in document["Statement"]:
            assert "*" not in _as_list(statement["Action"])
            assert "*" not in _as_list(statement["Resource"])
    assert _resources(save_policy, "s3:GetObject") == {f"{names.bucket_arn}/*"}
    assert _resources(save_policy, "s3:ListBucket") == {names.bucket_arn}
    assert _resources(save_policy, "dynamodb:PutItem") == {names.table_arn}
    assert _resources(save_policy, "sqs:SendMessage") == {names.failure_queue_arn}
    assert _resources(save_policy, "logs:PutLogEvents") == {
        f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws/lambda/{names.save_function}:*"
    }
    retrieve_policy = _inline_policy(iam, names.retrieve_role)
    assert _resources(retrieve_policy, "dynamodb:Query") == {
        f"{names.table_arn}/index/status-key-index"
    }
    assert _resources(retrieve_policy, "dynamodb:GetItem") == {names.table_arn}
    assert _resources(retrieve_policy, "s3:GetObject") == {
        f"{names.bucket_arn}/*",
        f"{names.thumbnails_bucket_arn}/*",
    }
    trust = iam.get_role(RoleName=names.save_role)["Role"]["AssumeRolePolicyDocument"]
    (assume,) = trust["Statement"]
    assert assume["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert assume["Action"] == "sts:AssumeRole"

    lam = client("lambda")
    save = lam.get_function_configuration(FunctionName=names.save_function)
    assert save["Runtime"] == "python3.13" and save["Architectures"] == ["arm64"]
    assert save["Handler"] == "lambdas.save_delete.handler"
    # The bucket too: the save function acts only on events of its own bucket.
    assert save["Environment"]["Variables"] == {
        "TABLE_NAME": names.table,
        "BUCKET_NAME": names.bucket,
        "THUMBNAILS_BUCKET": names.thumbnails_bucket,
    }
    assert save["MemorySize"] == 1024 and save["Timeout"] == 60
    assert save["Role"] == names.role_arn(names.save_role)
    invoke_config = lam.get_function_event_invoke_config(FunctionName=names.save_function)
    assert invoke_config["MaximumRetryAttempts"] == 2
    assert invoke_config["MaximumEventAgeInSeconds"] == 6 * 3600
    destination = invoke_config["DestinationConfig"]["OnFailure"]["Destination"]
    assert destination == names.failure_queue_arn
    retrieve = lam.get_function_configuration(FunctionName=names.retrieve_function)
    assert retrieve["Handler"] == "lambdas.retrieve.handler"
    assert retrieve["Role"] == names.role_arn(names.retrieve_role)
    assert retrieve["MemorySize"] == 256 and retrieve["Timeout"] == 10
    function_tags = lam.list_tags(Resource=save["FunctionArn"])["Tags"]
    assert function_tags.get("imgcli:stack") == "t1"

    (s3_permission,) = _statements(lam, names.save_function)
    assert s3_permission["Principal"] == {"Service": "s3.amazonaws.com"}
    assert s3_permission["Condition"]["ArnLike"]["AWS:SourceArn"] == names.bucket_arn
    assert s3_permission["Condition"]["StringEquals"]["AWS:SourceAccount"] == ACCOUNT
    notification = s3.get_bucket_notification_configuration(Bucket=names.bucket)
    (config,) = notification["LambdaFunctionConfigurations"]
    assert config["LambdaFunctionArn"] == names.function_arn(names.save_function)
    assert sorted(config["Events"]) == ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]

    api_id = outcome.description.api_id
    api = client("apigatewayv2")
    routes = {r["RouteKey"]: r for r in api.get_routes(ApiId=api_id)["Items"]}
    assert set(routes) == {"GET /images", "GET /images/{key+}"}
    assert {r["AuthorizationType"] for r in routes.values()} == {"AWS_IAM"}
    (integration,) = api.get_integrations(ApiId=api_id)["Items"]
    assert integration["IntegrationType"] == "AWS_PROXY"
    assert integration["PayloadFormatVersion"] == "2.0"
    assert integration["IntegrationUri"] == names.function_arn(names.retrieve_function)
    (stage,) = api.get_stages(ApiId=api_id)["Items"]
    assert stage["StageName"] == "$default" and stage["AutoDeploy"] is True
    assert stage["DefaultRouteSettings"]["ThrottlingBurstLimit"] == 100
    assert stage["DefaultRouteSettings"]["ThrottlingRateLimit"] == 50.0
    assert api.get_api(ApiId=api_id)["Tags"] == {"imgcli:stack": "t1"}
    api_permissions = _statements(lam, names.retrieve_function)
    assert {p["Condition"]["ArnLike"]["AWS:SourceArn"] for p in api_permissions} == {
        f"arn:aws:execute-api:us-east-1:{ACCOUNT}:{api_id}/*/GET/images",
        f"arn:aws:execute-api:us-east-1:{ACCOUNT}:{api_id}/*/GET/images/*",
    }

    state = StackState.load(state_path("t1"))
    assert state is not None and state.complete
    assert state.outputs["bucket"] == names.bucket
    assert state.outputs["thumbnails_bucket"] == names.thumbnails_bucket


def test_a_second_bootstrap_makes_no_mutating_call(stack: Any) -> None:
    environment, clients = stack
    bootstrap(environment)
    clients.operations.clear()
    outcome = bootstrap(environment)
    assert outcome.plan.up_to_date and not outcome.executed
    assert clients.operations and clients.mutations == []


def test_a_changed_setting_updates_only_that(stack: Any) -> None:
    environment, clients = stack
    bootstrap(environment)
    clients.operations.clear()
    outcome = bootstrap(environment, noncurrent_version_days=90)
    assert [step.description for step in outcome.plan.steps] == [
        f"update bucket {environment.names.bucket}: lifecycle"
    ]
    assert clients.mutations == ["PutBucketLifecycleConfiguration"]


def test_a_failure_at_any_mutating_call_then_a_rerun_completes(stack: Any) -> None:
    environment, clients = stack
    bootstrap(environment)
    calls = list(clients.mutations)
    destroy(environment)
    assert len(calls) > 14  # several calls per step: failures land mid-step too
    for failing in range(1, len(calls) + 1):
        clients.arm(failing)
        with pytest.raises(ConnectionError, match="injected"):
            bootstrap(environment)
        state = StackState.load(state_path("t1"))
        assert state is not None and not state.complete, calls[failing - 1]
        resumed = bootstrap(environment)
        assert resumed.description is not None and resumed.description.complete
        assert deploy.bootstrap(environment, {}, dry_run=True).plan.up_to_date, calls[failing - 1]
        destroy(environment)
        assert _what_remains(clients.aws) == {}, calls[failing - 1]


def test_options_are_remembered_between_runs(stack: Any) -> None:
    environment, clients = stack
    bootstrap(environment, noncurrent_version_days=90)
    outcome = bootstrap(environment)
    assert outcome.plan.up_to_date
    lifecycle = clients.aws.client("s3").get_bucket_lifecycle_configuration(
        Bucket=environment.names.bucket
    )
    days = {r["ID"]: r for r in lifecycle["Rules"]}["expire-noncurrent-versions"]
    assert days["NoncurrentVersionExpiration"]["NoncurrentDays"] == 90


def test_the_same_stack_in_another_region_is_refused(stack: Any) -> None:
    environment, clients = stack
    bootstrap(environment)
    elsewhere = deploy.StackEnvironment("t1", "aws", clients.client, "eu-west-1")
    with pytest.raises(StackUsageError, match="region us-east-1"):
        deploy.bootstrap(elsewhere, {}, dry_run=True)


def test_destroy_removes_everything_and_can_run_again(stack: Any) -> None:
    environment, clients = stack
    names = environment.names
    # moto applies the TLS-only bucket policy without its condition, denying every object
    # request; these objects need a bucket without it (the policy is checked above).
    bootstrap(environment, require_tls=False)
    s3 = clients.aws.client("s3")
    s3.put_object(Bucket=names.bucket, Key="photo.jpg", Body=b"1")
    s3.put_object(Bucket=names.bucket, Key="photo.jpg", Body=b"2")
    s3.delete_object(Bucket=names.bucket, Key="photo.jpg")

    with pytest.raises(Exception, match="still holds images"):
        destroy(environment, delete_images=False)
    assert names.bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]

    outcome = destroy(environment)
    assert outcome.executed
    assert _what_remains(clients.aws) == {}
    record = StackState.load(state_path("t1"))
    assert record is not None and record.destroyed and record.target == "aws"
    with pytest.raises(StackNotBootstrapped):
        deploy.describe(environment.stack)
    again = destroy(environment)
    assert again.plan.up_to_date


def test_dry_run_changes_nothing(stack: Any) -> None:
    environment, clients = stack
    outcome = deploy.bootstrap(environment, {}, dry_run=True)
    assert isinstance(outcome.plan, Plan) and len(outcome.plan.steps) == 15
    assert clients.mutations == []
    assert StackState.load(state_path("t1")) is None


def _what_remains(aws: AwsClients) -> dict[str, Any]:
    found = {
        "buckets": [b["Name"] for b in aws.client("s3").list_buckets()["Buckets"]],
        "tables": aws.client("dynamodb").list_tables()["TableNames"],
        "functions": aws.client("lambda").list_functions()["Functions"],
        "roles": [r for r in aws.client("iam").list_roles()["Roles"] if "imgcli" in r["RoleName"]],
        "queues": aws.client("sqs").list_queues().get("QueueUrls", []),
        "apis": aws.client("apigatewayv2").get_apis()["Items"],
        "log groups": aws.client("logs").describe_log_groups()["logGroups"],
    }
    return {kind: items for kind, items in found.items() if items}


def _inline_policy(iam: Any, role: str) -> dict[str, Any]:
    (name,) = iam.list_role_policies(RoleName=role)["PolicyNames"]
    document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
    return document if isinstance(document, dict) else json.loads(document)


def _actions(document: dict[str, Any]) -> set[str]:
    return {a for s in document["Statement"] for a in _as_list(s["Action"])}


def _resources(document: dict[str, Any], action: str) -> set[str]:
    return {
        resource
        for statement in document["Statement"]
        if action in _as_list(statement["Action"])
        for resource in _as_list(statement["Resource"])
    }


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(lam: Any, function: str) -> list[dict[str, Any]]:
    return list(json.loads(lam.get_policy(FunctionName=function)["Policy"])["Statement"])


def test_a_dry_run_destroy_shows_the_plan_and_what_a_real_run_would_refuse(stack: Any) -> None:
    environment, clients = stack
    bootstrap(environment, require_tls=False)
    clients.aws.client("s3").put_object(Bucket=environment.names.bucket, Key="a.jpg", Body=b"1")
    outcome = deploy.destroy(
        environment, delete_images=False, dry_run=True, confirm=lambda plan: True
    )
    assert not outcome.executed and len(outcome.plan.steps) == 15
    (note,) = outcome.notes
    assert "still holds images" in note and "--delete-images" in note
    assert _what_remains(clients.aws)  # nothing was deleted


def test_a_destroyed_stack_can_start_again_on_another_target(stack: Any) -> None:
    environment, clients = stack
    bootstrap(environment)
    destroy(environment)
    elsewhere = deploy.StackEnvironment(
        "t1", "local", clients.client, "us-east-1", local_api_url=api_url
    )
    outcome = deploy.bootstrap(elsewhere, {}, dry_run=True)
    assert len(outcome.plan.steps) == 15
