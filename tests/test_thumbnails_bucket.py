"""The thumbnails bucket and the roles' new statements, against moto as AWS: hardened like
the gallery but not versioned and silent, exactly the new IAM statements, the functions'
environment, destroy emptying it without asking but never alone, and an older stack
brought up to date by its next bootstrap."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from typing import Any

import pytest

from imgcli.aws import AwsClients
from imgcli.config import Flags, resolve_stack
from imgcli.infra import deploy
from imgcli.infra.errors import BucketNotEmpty, InvalidStackName, ResourceOfAnotherStack
from imgcli.infra.names import StackNames, check_new_stack_name, check_stack_name
from imgcli.infra.state import StackState, state_path

ACCOUNT = "123456789012"
REGION = "us-east-1"
NAMES = StackNames("t1", ACCOUNT, REGION)
THUMBS = "imgcli-t1-thumbs-123456789012-us-east-1"
THUMBS_ARN = f"arn:aws:s3:::{THUMBS}"
GALLERY_ARN = f"arn:aws:s3:::{NAMES.bucket}"
TABLE_ARN = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/imgcli-t1-images"
LOGS = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/imgcli-t1"

#: The roles' documents before thumbnails, written out, then what this change adds.
OLD_SAVE_STATEMENTS: list[dict[str, Any]] = [
    {
        "Sid": "ReadImages",
        "Effect": "Allow",
        "Action": ["s3:GetObject", "s3:GetObjectVersion"],
        "Resource": f"{GALLERY_ARN}/*",
    },
    {
        "Sid": "MissingKeysAre404",
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": GALLERY_ARN,
    },
    {
        "Sid": "WriteIndex",
        "Effect": "Allow",
        "Action": ["dynamodb:GetItem", "dynamodb:PutItem"],
        "Resource": TABLE_ARN,
    },
    {
        "Sid": "ReportFailedEvents",
        "Effect": "Allow",
        "Action": "sqs:SendMessage",
        "Resource": f"arn:aws:sqs:{REGION}:{ACCOUNT}:imgcli-t1-failed-events",
    },
    {
        "Sid": "WriteOwnLogs",
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": f"{LOGS}-save-delete:*",
    },
]
OLD_RETRIEVE_STATEMENTS: list[dict[str, Any]] = [
    {"Sid": "ReadOneImage", "Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": TABLE_ARN},
    {
        "Sid": "ListImages",
        "Effect": "Allow",
        "Action": "dynamodb:Query",
        "Resource": f"{TABLE_ARN}/index/status-key-index",
    },
    {
        "Sid": "WriteOwnLogs",
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": f"{LOGS}-retrieve:*",
    },
]
WRITE_THUMBNAILS = {
    "Sid": "WriteThumbnails",
    "Effect": "Allow",
    "Action": ["s3:PutObject", "s3:DeleteObject"],
    "Resource": f"{THUMBS_ARN}/*",
}
READ_FOR_LINKS = {
    "Sid": "ReadForLinks",
    "Effect": "Allow",
    "Action": "s3:GetObject",
    "Resource": [f"{GALLERY_ARN}/*", f"{THUMBS_ARN}/*"],
}
OLD_SAVE_ENV = {"TABLE_NAME": "imgcli-t1-images", "BUCKET_NAME": NAMES.bucket}
OLD_RETRIEVE_ENV = {"TABLE_NAME": "imgcli-t1-images"}


@pytest.fixture
def environment(moto_aws: None) -> deploy.StackEnvironment:
    settings = replace(resolve_stack(Flags(stack="t1", target="aws"), os.environ), region=REGION)
    return deploy.StackEnvironment("t1", "aws", AwsClients(settings).client, REGION)


def bootstrap(environment: deploy.StackEnvironment, **changes: Any) -> deploy.Outcome:
    return deploy.bootstrap(environment, changes, dry_run=False)


def destroy(environment: deploy.StackEnvironment, *, delete_images: bool) -> deploy.Outcome:
    return deploy.destroy(
        environment, delete_images=delete_images, dry_run=False, confirm=lambda plan: True
    )


def bucket_names(environment: deploy.StackEnvironment) -> set[str]:
    return {b["Name"] for b in environment.client("s3").list_buckets()["Buckets"]}


def keys_in(environment: deploy.StackEnvironment, bucket: str) -> list[str]:
    listed = environment.client("s3").list_objects_v2(Bucket=bucket)
    return [item["Key"] for item in listed.get("Contents", [])]


def inline_policy(environment: deploy.StackEnvironment, role: str) -> dict[str, Any]:
    iam = environment.client("iam")
    assert iam.list_role_policies(RoleName=role)["PolicyNames"] == ["imgcli"]
    document = iam.get_role_policy(RoleName=role, PolicyName="imgcli")["PolicyDocument"]
    return document if isinstance(document, dict) else dict(json.loads(document))


def environment_of(environment: deploy.StackEnvironment, function: str) -> dict[str, str]:
    configuration = environment.client("lambda").get_function_configuration(FunctionName=function)
    return dict(configuration["Environment"]["Variables"])


def test_the_thumbnails_bucket_is_hardened_silent_and_not_versioned(
    environment: deploy.StackEnvironment,
) -> None:
    outcome = bootstrap(environment)
    assert outcome.description is not None
    assert outcome.description.bucket == NAMES.bucket
    assert outcome.description.thumbnails_bucket == THUMBS
    s3 = environment.client("s3")
    assert THUMBS in bucket_names(environment)

    block = s3.get_public_access_block(Bucket=THUMBS)["PublicAccessBlockConfiguration"]
    assert block == dict.fromkeys(
        ["BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"], True
    )
    ownership = s3.get_bucket_ownership_controls(Bucket=THUMBS)["OwnershipControls"]
    assert ownership["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    (rule,) = s3.get_bucket_encryption(Bucket=THUMBS)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert json.loads(s3.get_bucket_policy(Bucket=THUMBS)["Policy"]) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [THUMBS_ARN, f"{THUMBS_ARN}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }
    # Never versioned: an overwritten thumbnail is not worth keeping.
    assert "Status" not in s3.get_bucket_versioning(Bucket=THUMBS)
    (lifecycle,) = s3.get_bucket_lifecycle_configuration(Bucket=THUMBS)["Rules"]
    assert lifecycle["ID"] == "abort-incomplete-multipart-uploads"
    assert lifecycle["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    assert s3.get_bucket_tagging(Bucket=THUMBS)["TagSet"] == [
        {"Key": "imgcli:stack", "Value": "t1"}
    ]
    # Nothing the save function writes there can trigger anything.
    notification = s3.get_bucket_notification_configuration(Bucket=THUMBS)
    assert not any(key.endswith("Configurations") for key in notification)

    again = deploy.bootstrap(environment, {}, dry_run=True)
    assert again.plan.up_to_date, [step.description for step in again.plan.steps]


def test_the_roles_hold_exactly_the_old_statements_and_the_new_ones(
    environment: deploy.StackEnvironment,
) -> None:
    bootstrap(environment)
    assert inline_policy(environment, NAMES.save_role) == {
        "Version": "2012-10-17",
        "Statement": [*OLD_SAVE_STATEMENTS[:3], WRITE_THUMBNAILS, *OLD_SAVE_STATEMENTS[3:]],
    }
    assert inline_policy(environment, NAMES.retrieve_role) == {
        "Version": "2012-10-17",
        "Statement": [*OLD_RETRIEVE_STATEMENTS[:2], READ_FOR_LINKS, OLD_RETRIEVE_STATEMENTS[2]],
    }


def test_the_functions_are_told_the_buckets_and_the_links_expiry(
    environment: deploy.StackEnvironment,
) -> None:
    bootstrap(environment)
    assert environment_of(environment, NAMES.save_function) == {
        **OLD_SAVE_ENV,
        "THUMBNAILS_BUCKET": THUMBS,
    }
    assert environment_of(environment, NAMES.retrieve_function) == {
        "TABLE_NAME": "imgcli-t1-images",
        "BUCKET_NAME": NAMES.bucket,
        "THUMBNAILS_BUCKET": THUMBS,
        "URL_EXPIRES_S": "900",
    }

    longer = bootstrap(environment, url_expiry_s=3600)
    assert [step.description for step in longer.plan.steps] == [
        f"update function {NAMES.retrieve_function}: environment"
    ]
    assert environment_of(environment, NAMES.retrieve_function)["URL_EXPIRES_S"] == "3600"
    # Remembered like every other option: a plain re-run keeps it.
    assert bootstrap(environment).plan.up_to_date
    record = StackState.load(state_path("t1"))
    assert record is not None and record.options["url_expiry_s"] == 3600


def test_destroy_empties_the_thumbnails_bucket_without_being_told_to(
    environment: deploy.StackEnvironment,
) -> None:
    # moto applies the TLS-only policy without its condition, denying every object request.
    bootstrap(environment, require_tls=False)
    s3 = environment.client("s3")
    for box in (256, 1024):
        s3.put_object(Bucket=THUMBS, Key=f"abc/v1/{box}.webp", Body=b"w")
    s3.put_object(Bucket=THUMBS, Key="abc/v1/256.webp", Body=b"again")
    s3.create_multipart_upload(Bucket=THUMBS, Key="abc/v2/1024.webp")

    outcome = destroy(environment, delete_images=False)
    assert outcome.executed
    assert f"delete thumbnails bucket {THUMBS}" in [s.description for s in outcome.plan.steps]
    assert bucket_names(environment) == set()


def test_destroy_keeps_the_thumbnails_while_the_gallery_keeps_its_images(
    environment: deploy.StackEnvironment,
) -> None:
    bootstrap(environment, require_tls=False)
    s3 = environment.client("s3")
    s3.put_object(Bucket=NAMES.bucket, Key="beach.jpg", Body=b"image")
    s3.put_object(Bucket=THUMBS, Key="abc/v1/256.webp", Body=b"w")

    with pytest.raises(BucketNotEmpty, match=f"bucket {NAMES.bucket} still holds images"):
        destroy(environment, delete_images=False)
    assert keys_in(environment, THUMBS) == ["abc/v1/256.webp"]
    assert keys_in(environment, NAMES.bucket) == ["beach.jpg"]
    assert deploy.bootstrap(environment, {}, dry_run=True).plan.up_to_date  # nothing removed

    destroy(environment, delete_images=True)
    assert bucket_names(environment) == set()


def test_a_stack_bootstrapped_before_thumbnails_gets_them_as_drift(
    environment: deploy.StackEnvironment,
) -> None:
    bootstrap(environment, require_tls=False)
    make_it_as_before_thumbnails(environment)

    plan = deploy.bootstrap(environment, {}, dry_run=True).plan
    assert [step.description for step in plan.steps] == [
        f"create thumbnails bucket {THUMBS}",
        f"update role {NAMES.save_role}: policies",
        f"update role {NAMES.retrieve_role}: policies",
        f"update function {NAMES.save_function}: environment",
        f"update function {NAMES.retrieve_function}: environment",
    ]
    before = deploy.describe("t1")
    assert before.thumbnails_bucket is None and before.bucket == NAMES.bucket

    outcome = bootstrap(environment)
    assert outcome.description is not None
    assert outcome.description.thumbnails_bucket == THUMBS
    assert deploy.describe("t1").thumbnails_bucket == THUMBS
    assert THUMBS in bucket_names(environment)
    assert WRITE_THUMBNAILS in inline_policy(environment, NAMES.save_role)["Statement"]
    assert environment_of(environment, NAMES.retrieve_function)["URL_EXPIRES_S"] == "900"
    assert bootstrap(environment).plan.up_to_date


def make_it_as_before_thumbnails(environment: deploy.StackEnvironment) -> None:
    """The stack, its roles, functions and record as the previous release left them."""
    environment.client("s3").delete_bucket(Bucket=THUMBS)
    iam = environment.client("iam")
    for role, statements in (
        (NAMES.save_role, OLD_SAVE_STATEMENTS),
        (NAMES.retrieve_role, OLD_RETRIEVE_STATEMENTS),
    ):
        document = {"Version": "2012-10-17", "Statement": statements}
        iam.put_role_policy(RoleName=role, PolicyName="imgcli", PolicyDocument=json.dumps(document))
    functions = environment.client("lambda")
    for function, variables in (
        (NAMES.save_function, OLD_SAVE_ENV),
        (NAMES.retrieve_function, OLD_RETRIEVE_ENV),
    ):
        functions.update_function_configuration(
            FunctionName=function, Environment={"Variables": variables}
        )
    record = StackState.load(state_path("t1"))
    assert record is not None
    del record.outputs["thumbnails_bucket"]
    del record.options["url_expiry_s"]
    record.save()


def test_a_new_stack_whose_bucket_would_be_another_stack_s_thumbnails_is_refused(
    moto_aws: None,
) -> None:
    # Stack t1's thumbnails bucket is named as the gallery of a stack "t1-thumbs" would be.
    assert f"imgcli-t1-thumbs-{ACCOUNT}-{REGION}" == THUMBS  # = the bucket of "t1-thumbs"
    settings = resolve_stack(Flags(stack="t1-thumbs", target="aws"), os.environ)
    named = deploy.StackEnvironment("t1-thumbs", "aws", AwsClients(settings).client, REGION)
    with pytest.raises(InvalidStackName, match=r"may not end in '-thumbs'.*of stack 't1'"):
        deploy.bootstrap(named, {}, dry_run=True)
    assert check_new_stack_name("thumbs") == "thumbs"  # only the suffix is reserved
    # A stack of that name made before the rule stays reachable: only new ones are refused.
    assert check_stack_name("t1-thumbs") == "t1-thumbs"
    StackState(
        path=state_path("t1-thumbs"),
        stack="t1-thumbs",
        target="aws",
        region=REGION,
        account=ACCOUNT,
        outputs={"bucket": THUMBS},
        steps_done=["create bucket"],
    ).save()
    assert deploy.bootstrap(named, {}, dry_run=True).plan.steps  # planned, not refused


def test_a_resource_tagged_as_another_stack_s_is_never_adopted_nor_destroyed(
    environment: deploy.StackEnvironment,
) -> None:
    bootstrap(environment, require_tls=False)
    s3 = environment.client("s3")
    s3.put_bucket_tagging(
        Bucket=THUMBS, Tagging={"TagSet": [{"Key": "imgcli:stack", "Value": "someone"}]}
    )
    s3.put_object(Bucket=THUMBS, Key="theirs.webp", Body=b"w")

    with pytest.raises(ResourceOfAnotherStack, match=f"{THUMBS} belongs to imgcli stack 'someone'"):
        deploy.bootstrap(environment, {}, dry_run=True)
    destroy(environment, delete_images=True)
    assert bucket_names(environment) == {THUMBS}
    assert keys_in(environment, THUMBS) == ["theirs.webp"]
