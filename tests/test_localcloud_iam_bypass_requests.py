"""Requests the authoriser once read otherwise than moto: refused, victims untouched.

Each test replays a way a security review found for a role session to have moto run a
call its policy does not allow (issue 11): operation confusion (F1), repeated parameters
(F2), SQS queue URLs (F3), DeleteObjects bodies (F5) and copy sources (F6). The harness
is moto behind the authoriser, in process (``tests.role_harness``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from botocore.exceptions import ClientError

from imgcli.localcloud import iam_request_shape
from imgcli.localcloud.iam_request_model import HttpRequest
from imgcli.localcloud.iam_requests import required_permissions
from imgcli.localcloud.identity import Principal
from tests.role_harness import (
    ACCOUNT,
    ATTACKER,
    FORM,
    REGION,
    ROLE_ARN,
    RoleCloud,
    assert_refused,
    authorizing_cloud,
    create_victims,
    json_target,
    queue_url,
    raw,
)


@pytest.fixture(scope="module")
def cloud() -> Iterator[RoleCloud]:
    with authorizing_cloud() as cloud:
        create_victims(cloud)
        yield cloud


@pytest.fixture
def attacker(cloud: RoleCloud) -> Principal:
    return cloud.sessions.issue(ROLE_ARN + ATTACKER, "atk")


def table_names(cloud: RoleCloud) -> list[str]:
    return list(cloud.client("dynamodb").list_tables()["TableNames"])


def queue_has_message(cloud: RoleCloud, name: str) -> bool:
    sqs = cloud.client("sqs")
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) > 0


def user_names(cloud: RoleCloud) -> list[str]:
    return [user["UserName"] for user in cloud.client("iam").list_users()["Users"]]


# --- F1: the operation is decided the way moto decides it -------------------------------


def test_an_action_parameter_beside_a_target_is_refused(
    cloud: RoleCloud, attacker: Principal
) -> None:
    get_item = json.dumps({"TableName": "mytable", "Key": {"pk": {"S": "row-mytable"}}})
    # The target alone is what the policy allows, and still works.
    allowed = raw(
        cloud,
        attacker,
        "dynamodb",
        "POST",
        "/",
        json_target("DynamoDB_20120810.GetItem"),
        get_item.encode(),
    )
    assert allowed.status_code == 200, allowed.text
    for target in ("/?Action=DeleteTable", "/?Action=Scan"):
        response = raw(
            cloud,
            attacker,
            "dynamodb",
            "POST",
            target,
            json_target("DynamoDB_20120810.GetItem"),
            get_item.encode(),
        )
        assert_refused(response)
    # moto reads a JSON body as a query string when there is no other: "&Action=" in it.
    smuggled = json.dumps({"TableName": "mytable", "x": "&Action=DeleteTable&"})
    response = raw(
        cloud,
        attacker,
        "dynamodb",
        "POST",
        "/",
        json_target("DynamoDB_20120810.GetItem"),
        smuggled.encode(),
    )
    assert_refused(response)
    assert "mytable" in table_names(cloud)

    send = json.dumps({"QueueUrl": queue_url(cloud, "myqueue"), "MessageBody": "x"}).encode()
    response = raw(
        cloud,
        attacker,
        "sqs",
        "POST",
        "/?Action=DeleteQueue",
        json_target("AmazonSQS.SendMessage"),
        send,
    )
    assert_refused(response)
    assert queue_has_message(cloud, "myqueue")

    decoy = {**FORM, "X-Amz-Target": "x.ListRoles"}
    body = b"Action=CreateUser&UserName=evil&Version=2010-05-08"
    assert_refused(raw(cloud, attacker, "iam", "POST", "/", decoy, body))
    # With nothing else to read, moto reads the headers as parameters.
    header_action = {"Action": "CreateUser", "UserName": "evil2", "Version": "2010-05-08"}
    assert_refused(raw(cloud, attacker, "iam", "POST", "/", header_action))
    assert "evil" not in user_names(cloud) and "evil2" not in user_names(cloud)


def test_a_target_on_a_rest_service_is_refused(cloud: RoleCloud, attacker: Principal) -> None:
    response = raw(
        cloud, attacker, "s3", "GET", "/mybucket/tmp/a.txt", {"X-Amz-Target": "x.GetObject"}
    )
    assert_refused(response)
    assert raw(cloud, attacker, "s3", "GET", "/mybucket/tmp/a.txt").content == b"mine"


# --- F2: one value per parameter, from one place ---------------------------------------


def test_repeated_or_split_parameters_are_refused(cloud: RoleCloud, attacker: Principal) -> None:
    admin, allowed = quote(ROLE_ARN + "admin-role", safe=""), quote(ROLE_ARN + "allowed-role")
    assume = "Action=AssumeRole&Version=2011-06-15&RoleSessionName=x"
    ok = raw(cloud, attacker, "sts", "POST", "/", FORM, f"{assume}&RoleArn={allowed}".encode())
    assert ok.status_code == 200, ok.text
    twice = f"{assume}&RoleArn={admin}&RoleArn={allowed}".encode()
    assert_refused(raw(cloud, attacker, "sts", "POST", "/", FORM, twice))
    split = f"{assume}&RoleArn={allowed}".encode()
    assert_refused(raw(cloud, attacker, "sts", "POST", f"/?RoleArn={admin}", FORM, split))

    document = quote(json.dumps({"Version": "2012-10-17", "Statement": []}), safe="")
    put = f"Action=PutRolePolicy&Version=2010-05-08&PolicyName=esc&PolicyDocument={document}"
    names = f"{put}&RoleName={ATTACKER}&RoleName=sandbox-x".encode()
    assert_refused(raw(cloud, attacker, "iam", "POST", "/", FORM, names))
    in_query = f"{put}&RoleName=sandbox-x".encode()
    assert_refused(raw(cloud, attacker, "iam", "POST", f"/?RoleName={ATTACKER}", FORM, in_query))
    actions = b"Action=CreateUser&UserName=evil3&Action=ListRoles&Version=2010-05-08"
    assert_refused(raw(cloud, attacker, "iam", "POST", "/", FORM, actions))
    assert "evil3" not in user_names(cloud)
    policies = cloud.client("iam").list_role_policies(RoleName=ATTACKER)["PolicyNames"]
    assert policies == ["p"]
    # A form body under another content type is read by moto, not by the mapping.
    plain = {"Content-Type": "text/plain"}
    assert_refused(raw(cloud, attacker, "iam", "POST", "/", plain, b"Action=ListRoles"))
    # S3 too: one value per query parameter.
    assert_refused(raw(cloud, attacker, "s3", "GET", "/mybucket/tmp/a.txt?versionId=1&versionId=2"))


# --- F3: the queue moto acts on -------------------------------------------------------


@pytest.mark.parametrize(
    "tail", ["myqueue#/victimqueue", "myqueue?/victimqueue", "victimqueue", "x/../victimqueue"]
)
def test_queue_urls_name_the_queue_moto_acts_on(
    cloud: RoleCloud, attacker: Principal, tail: str
) -> None:
    for body in (
        json.dumps({"QueueUrl": f"{cloud.endpoint}/{ACCOUNT}/{tail}", "VisibilityTimeout": 0}),
        json.dumps({"QueueUrl": f"{cloud.endpoint}/999999999999/victimqueue"}),
        json.dumps({"QueueUrl": "victimqueue"}),
    ):
        response = raw(
            cloud,
            attacker,
            "sqs",
            "POST",
            "/",
            json_target("AmazonSQS.ReceiveMessage"),
            body.encode(),
        )
        assert_refused(response)
    assert queue_has_message(cloud, "victimqueue")


def test_the_own_queue_is_still_reachable(cloud: RoleCloud, attacker: Principal) -> None:
    sqs = cloud.client("sqs", attacker)
    sqs.send_message(QueueUrl=queue_url(cloud, "myqueue"), MessageBody="ok")
    with pytest.raises(ClientError) as raised:
        sqs.send_message(QueueUrl=queue_url(cloud, "victimqueue"), MessageBody="no")
    assert raised.value.response["Error"]["Code"] == "AccessDenied"


# --- F5: DeleteObjects' keys, read as moto reads them ------------------------------------


@pytest.mark.parametrize(
    "document",
    [
        b"<Delete><Object><!-- <Key>tmp/x</Key> --><Key>important.txt</Key></Object></Delete>",
        b'<Delete><Object><Key>tmp/x</Key></Object><Object a="1"><Key>important.txt</Key>'
        b"</Object></Delete>",
        b"<Delete><Object><Key>tmp/x</Key></Object><Object ><Key>important.txt</Key></Object>"
        b"</Delete>",
        b"<Delete><Object><Key><![CDATA[important.txt]]></Key></Object></Delete>",
        b"<Delete><Object><Key>tmp/x</Key></Object><Object><Key>important.txt</Key>",
        b"<s3:Delete xmlns:s3='x'><Object><Key>important.txt</Key></Object></s3:Delete>",
    ],
)
def test_delete_objects_names_every_key_moto_deletes(
    cloud: RoleCloud, attacker: Principal, document: bytes
) -> None:
    headers = {"Content-Type": "application/xml"}
    cloud.client("s3").put_object(Bucket="mybucket", Key="important.txt", Body=b"keep")
    assert_refused(raw(cloud, attacker, "s3", "POST", "/mybucket?delete", headers, document))
    assert cloud.client("s3").head_object(Bucket="mybucket", Key="important.txt")


def test_delete_objects_of_allowed_keys_works(cloud: RoleCloud, attacker: Principal) -> None:
    s3 = cloud.client("s3", attacker)
    s3.put_object(Bucket="mybucket", Key="tmp/gone.txt", Body=b"x")
    deleted = s3.delete_objects(Bucket="mybucket", Delete={"Objects": [{"Key": "tmp/gone.txt"}]})
    assert [d["Key"] for d in deleted["Deleted"]] == ["tmp/gone.txt"]


# --- F6: the copy source moto reads -----------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "//mybucket/tmp/../victim-bucket/secret.txt",
        "//mybucket/victim-bucket/secret.txt",
        "http://mybucket/tmp/x/victim-bucket/secret.txt",
        "/victim-bucket/secret.txt;/mybucket/tmp/a.txt",
        "/victim-bucket/secret.txt#/mybucket/tmp/a.txt",
        "/victim-bucket/secret.txt",
    ],
)
def test_copy_sources_are_read_as_moto_reads_them(
    cloud: RoleCloud, attacker: Principal, source: str
) -> None:
    headers = {"x-amz-copy-source": source}
    stolen = f"tmp/stolen-{abs(hash(source))}.txt"
    assert_refused(raw(cloud, attacker, "s3", "PUT", f"/mybucket/{stolen}", headers))
    with pytest.raises(ClientError):
        cloud.client("s3").head_object(Bucket="mybucket", Key=stolen)


def test_an_allowed_copy_still_works(cloud: RoleCloud, attacker: Principal) -> None:
    s3 = cloud.client("s3", attacker)
    s3.copy_object(Bucket="mybucket", Key="tmp/b.txt", CopySource="mybucket/tmp/a.txt")
    assert s3.get_object(Bucket="mybucket", Key="tmp/b.txt")["Body"].read() == b"mine"


# --- moto's reading, checked -------------------------------------------------------------


def test_moto_reads_requests_as_the_authoriser_expects() -> None:
    assert iam_request_shape.missing_internals() == []


def test_a_moto_that_reads_the_target_first_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.core.responses import BaseResponse

    def target_first(self: BaseResponse) -> str:
        target = self.headers.get("x-amz-target")
        return str(target).split(".")[-1] if target else str(self.querystring.get("Action"))

    monkeypatch.setattr(BaseResponse, "_get_action", target_first)
    assert any("FromTarget" in problem for problem in iam_request_shape.missing_internals())


def test_sdk_requests_are_not_ambiguous() -> None:
    form = HttpRequest(
        "POST",
        "/",
        "",
        {"content-type": FORM["Content-Type"]},
        b"Action=ListRoles",
        "iam",
        REGION,
        ACCOUNT,
    )
    presigned = HttpRequest(
        "GET", "/", "Action=GetCallerIdentity&X-Amz-Date=1", {}, b"", "sts", REGION, ACCOUNT
    )
    for request in (form, presigned):
        assert required_permissions(request).refusal is None
