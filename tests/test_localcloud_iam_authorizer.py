"""The authoriser over moto, in process: role sessions get exactly what their policies allow.

moto serves on a loopback port behind the authoriser and a gate that only names the caller
(``tests.role_harness``); the calls are plain boto3, so each refusal is checked as an SDK
sees it: error code, HTTP status, AWS's message.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from imgcli.lambdas.records import STATUS_INDEX
from imgcli.localcloud.identity import Principal
from tests.role_harness import NAMES, RoleCloud, authorizing_cloud, create_stack

KEY = {"key": {"S": "a.jpg"}}


@pytest.fixture(scope="module")
def cloud() -> Iterator[RoleCloud]:
    with authorizing_cloud() as cloud:
        create_stack(cloud)
        cloud.client("s3").put_object(Bucket=NAMES.bucket, Key="a.jpg", Body=b"image")
        yield cloud


def refusal(call: Any, **params: Any) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as raised:
        call(**params)
    error = raised.value.response
    return (
        error["Error"]["Code"],
        error["ResponseMetadata"]["HTTPStatusCode"],
        error["Error"].get("Message", ""),
    )


def assumed(role: str, session: str = "fn") -> str:
    return f"arn:aws:sts::{NAMES.account}:assumed-role/{role}/{session}"


def test_the_retrieve_role_is_refused_what_its_policy_does_not_allow(cloud: RoleCloud) -> None:
    session = cloud.session(NAMES.retrieve_role, "imgcli-demo-retrieve")
    s3, dynamodb = cloud.client("s3", session), cloud.client("dynamodb", session)
    caller = assumed(NAMES.retrieve_role, "imgcli-demo-retrieve")

    code, status, message = refusal(s3.put_object, Bucket=NAMES.bucket, Key="b.jpg", Body=b"x")
    assert (code, status) == ("AccessDenied", 403)
    assert message == (
        f"User: {caller} is not authorized to perform: s3:PutObject on resource: "
        f'"{NAMES.bucket_arn}/b.jpg" because no identity-based policy allows the '
        "s3:PutObject action"
    )
    code, status, message = refusal(dynamodb.scan, TableName=NAMES.table)
    assert (code, status) == ("AccessDeniedException", 400)
    assert f"dynamodb:Scan on resource: {NAMES.table_arn} because" in message
    assert refusal(cloud.client("iam", session).list_roles)[:2] == ("AccessDenied", 403)
    assert refusal(cloud.client("lambda", session).list_functions)[:2] == (
        "AccessDeniedException",
        403,
    )
    # It reads current images (for the links it presigns), never a version of one.
    assert s3.get_object(Bucket=NAMES.bucket, Key="a.jpg")["Body"].read() == b"image"
    versioned = {"Bucket": NAMES.bucket, "Key": "a.jpg", "VersionId": "null"}
    assert refusal(s3.get_object, **versioned)[:2] == ("AccessDenied", 403)
    # A Query of the table itself is not a Query of the status index.
    query = {
        "TableName": NAMES.table,
        "KeyConditionExpression": "#s = :s",
        "ExpressionAttributeNames": {"#s": "status"},
        "ExpressionAttributeValues": {":s": {"S": "active"}},
    }
    assert refusal(dynamodb.query, **query)[0] == "AccessDeniedException"
    # What it is allowed, it gets, with the body intact after the authoriser read it.
    assert dynamodb.query(**query, IndexName=STATUS_INDEX)["Items"] == []
    assert "Item" not in dynamodb.get_item(TableName=NAMES.table, Key=KEY)


def test_the_save_role_does_its_job_and_no_more(cloud: RoleCloud) -> None:
    session = cloud.session(NAMES.save_role)
    s3, dynamodb, sqs = (cloud.client(s, session) for s in ("s3", "dynamodb", "sqs"))

    assert s3.get_object(Bucket=NAMES.bucket, Key="a.jpg")["Body"].read() == b"image"
    # s3:ListBucket makes a missing key a 404, as the policy's comment promises.
    assert refusal(s3.head_object, Bucket=NAMES.bucket, Key="missing.jpg")[:2] == ("404", 404)
    dynamodb.put_item(TableName=NAMES.table, Item={**KEY, "status": {"S": "active"}})
    owner_view = cloud.client("dynamodb").get_item(TableName=NAMES.table, Key=KEY)
    assert owner_view["Item"]["status"] == {"S": "active"}
    queue_url = cloud.client("sqs").get_queue_url(QueueName=NAMES.failure_queue)["QueueUrl"]
    sqs.send_message(QueueUrl=queue_url, MessageBody="failed event")
    other_url = cloud.client("sqs").create_queue(QueueName="other")["QueueUrl"]
    code, status, _ = refusal(sqs.send_message, QueueUrl=other_url, MessageBody="x")
    assert (code, status) == ("AccessDenied", 403)
    code, status, _ = refusal(s3.delete_object, Bucket=NAMES.bucket, Key="a.jpg")
    assert (code, status) == ("AccessDenied", 403)
    # HEAD answers have no body: the refusal is a bare 403.
    denied_head = refusal(s3.head_bucket, Bucket="someone-elses")
    assert denied_head[:2] == ("403", 403)


def test_policies_count_as_they_are_at_the_moment_of_the_call(cloud: RoleCloud) -> None:
    iam = cloud.client("iam")
    role = "changing"
    iam.create_role(RoleName=role, AssumeRolePolicyDocument="{}")
    session = cloud.sessions.issue(NAMES.role_arn(role), "fn")
    dynamodb = cloud.client("dynamodb", session)
    assert refusal(dynamodb.list_tables)[0] == "AccessDeniedException"

    allow_list = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "dynamodb:ListTables", "Resource": "*"}],
    }
    iam.put_role_policy(RoleName=role, PolicyName="p", PolicyDocument=json.dumps(allow_list))
    assert NAMES.table in dynamodb.list_tables()["TableNames"]

    # An explicit deny in an attached managed policy beats the inline allow.
    deny_all = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Action": "dynamodb:*", "Resource": "*"}],
    }
    arn = iam.create_policy(PolicyName="no-dynamodb", PolicyDocument=json.dumps(deny_all))[
        "Policy"
    ]["Arn"]
    iam.attach_role_policy(RoleName=role, PolicyArn=arn)
    code, _, message = refusal(dynamodb.list_tables)
    assert code == "AccessDeniedException"
    assert message.endswith("with an explicit deny in an identity-based policy")
    iam.detach_role_policy(RoleName=role, PolicyArn=arn)
    assert dynamodb.list_tables()["TableNames"]
    iam.delete_role_policy(RoleName=role, PolicyName="p")
    assert refusal(dynamodb.list_tables)[0] == "AccessDeniedException"


def test_the_owner_is_never_checked(cloud: RoleCloud) -> None:
    assert cloud.client("iam").list_roles()["Roles"]
    assert cloud.client("lambda").list_functions()["Functions"] == []
    cloud.client("s3").put_object(Bucket=NAMES.bucket, Key="owner.jpg", Body=b"x")


def test_get_caller_identity_always_answers_with_the_session(cloud: RoleCloud) -> None:
    nothing = cloud.sessions.issue(NAMES.role_arn("no-such-role"), "lonely")
    identity = cloud.client("sts", nothing).get_caller_identity()
    assert identity["Arn"] == f"arn:aws:sts::{NAMES.account}:assumed-role/no-such-role/lonely"
    assert identity["Account"] == NAMES.account
    assert identity["UserId"].endswith(":lonely")
    # Everything else is refused to a session of a role that does not exist.
    assert refusal(cloud.client("sqs", nothing).list_queues)[0] == "AccessDenied"


def test_sts_assume_role_credentials_of_a_foreign_client_act_as_the_role(
    cloud: RoleCloud,
) -> None:
    credentials = cloud.client("sts").assume_role(
        RoleArn=NAMES.role_arn(NAMES.retrieve_role), RoleSessionName="cli"
    )["Credentials"]
    session = Principal(
        credentials["AccessKeyId"], credentials["SecretAccessKey"], credentials["SessionToken"]
    )
    s3 = cloud.client("s3", session)
    code, _, message = refusal(s3.put_object, Bucket=NAMES.bucket, Key="c.jpg", Body=b"x")
    assert code == "AccessDenied" and assumed(NAMES.retrieve_role, "cli") in message
    read = cloud.client("dynamodb", session).get_item(TableName=NAMES.table, Key=KEY)
    assert read["ResponseMetadata"]["HTTPStatusCode"] == 200
    identity = cloud.client("sts", session).get_caller_identity()
    assert identity["Arn"] == assumed(NAMES.retrieve_role, "cli")


def test_a_presigned_url_of_a_role_session_is_authorised_too(cloud: RoleCloud) -> None:
    session = cloud.session(NAMES.save_role)
    presigned = cloud.client("s3", session, config=Config(signature_version="s3v4"))
    get = presigned.generate_presigned_url(
        "get_object", Params={"Bucket": NAMES.bucket, "Key": "a.jpg"}
    )
    put = presigned.generate_presigned_url(
        "put_object", Params={"Bucket": NAMES.bucket, "Key": "p.jpg"}
    )
    assert requests.get(get, timeout=10).content == b"image"
    refused = requests.put(put, data=b"x", timeout=10)
    assert refused.status_code == 403
    assert b"<Code>AccessDenied</Code>" in refused.content


def test_execute_api_invoke_is_checked_for_role_sessions_only(cloud: RoleCloud) -> None:
    from imgcli.localcloud.authorizer import execute_api_arn, principal_allows
    from tests.role_harness import OWNER, REGION

    route = execute_api_arn(REGION, NAMES.account, "abc123", "$default", "GET", "/images")
    iam = cloud.client("iam")
    iam.create_role(RoleName="api-caller", AssumeRolePolicyDocument="{}")
    session = cloud.sessions.issue(NAMES.role_arn("api-caller"), "fn")
    assert route == f"arn:aws:execute-api:{REGION}:{NAMES.account}:abc123/$default/GET/images"
    assert principal_allows(OWNER, "execute-api:Invoke", route, REGION)
    assert not principal_allows(session, "execute-api:Invoke", route, REGION)
    may_get = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "execute-api:Invoke",
                "Resource": "arn:aws:execute-api:*:*:abc123/*/GET/*",
            }
        ],
    }
    iam.put_role_policy(RoleName="api-caller", PolicyName="p", PolicyDocument=json.dumps(may_get))
    assert principal_allows(session, "execute-api:Invoke", route, REGION)
    post = execute_api_arn(REGION, NAMES.account, "abc123", "$default", "POST", "/images")
    assert not principal_allows(session, "execute-api:Invoke", post, REGION)
