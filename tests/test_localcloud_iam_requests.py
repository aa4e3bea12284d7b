"""Requests as AWS authorises them (``iam_requests``): real requests, built by botocore.

Each request is what a boto3 client sends for the call: a ``before-send`` handler captures
the prepared request and stops it there, so no network is involved and the mapping is
tested against the SDK's wire format, not a hand-made imitation of it.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config

from imgcli.localcloud.iam_request_model import HttpRequest, Permission, Protocol
from imgcli.localcloud.iam_requests import required_permissions, signing_scope

ACCOUNT = "123456789012"
REGION = "us-east-1"
BUCKET = "arn:aws:s3:::photos"
TABLE = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/images"
QUEUE_URL = f"http://127.0.0.1:9/{ACCOUNT}/failed"
QUEUE = f"arn:aws:sqs:{REGION}:{ACCOUNT}:failed"
FUNCTION = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:fn"
GROUP = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/fn"


class Captured(Exception):
    def __init__(self, request: Any) -> None:
        super().__init__("captured")
        self.request = request


def sent(service: str, operation: str, **params: Any) -> HttpRequest:
    """The request boto3 sends for ``operation``, as the local cloud receives it."""
    client = boto3.client(
        service,
        region_name=REGION,
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="ASIAEXAMPLE",
        aws_secret_access_key="secret",
        aws_session_token="token",
    )

    def capture(request: Any, **kwargs: Any) -> None:
        raise Captured(request)

    client.meta.events.register("before-send", capture)
    try:
        getattr(client, operation)(**params)
    except Captured as captured:
        return as_received(captured.request)
    raise AssertionError("the request was not sent")


def as_received(prepared: Any) -> HttpRequest:
    url = urlsplit(prepared.url)
    headers = {name.lower(): _text(value) for name, value in prepared.headers.items()}
    body = prepared.body
    if hasattr(body, "read"):
        body = body.read()
    if isinstance(body, str):
        body = body.encode()
    scope = signing_scope(headers, url.query)
    assert scope is not None, headers
    return HttpRequest(
        method=prepared.method,
        raw_path=url.path,
        query=url.query,
        headers=headers,
        body=body or b"",
        service=scope[0],
        region=scope[1],
        account=ACCOUNT,
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def checks(service: str, operation: str, **params: Any) -> list[tuple[str, str]]:
    required = required_permissions(sent(service, operation, **params))
    assert required.mapped, required
    return [(p.action, p.resource) for p in required.permissions]


# --- S3 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "params", "expected"),
    [
        ("get_object", {"Key": "a b/é.jpg"}, [("s3:GetObject", f"{BUCKET}/a b/é.jpg")]),
        (
            "get_object",
            {"Key": "a.jpg", "VersionId": "v1"},
            [("s3:GetObjectVersion", f"{BUCKET}/a.jpg")],
        ),
        ("head_object", {"Key": "a.jpg"}, [("s3:GetObject", f"{BUCKET}/a.jpg")]),
        ("put_object", {"Key": "a+b.jpg", "Body": b"x"}, [("s3:PutObject", f"{BUCKET}/a+b.jpg")]),
        ("delete_object", {"Key": "a.jpg"}, [("s3:DeleteObject", f"{BUCKET}/a.jpg")]),
        (
            "delete_object",
            {"Key": "a.jpg", "VersionId": "v1"},
            [("s3:DeleteObjectVersion", f"{BUCKET}/a.jpg")],
        ),
        (
            "delete_objects",
            {
                "Delete": {
                    "Objects": [{"Key": "a&b.jpg"}, {"Key": "c.jpg", "VersionId": "v2"}],
                }
            },
            [
                ("s3:DeleteObject", f"{BUCKET}/a&b.jpg"),
                ("s3:DeleteObjectVersion", f"{BUCKET}/c.jpg"),
            ],
        ),
        ("list_objects_v2", {"Prefix": "a/"}, [("s3:ListBucket", BUCKET)]),
        ("list_object_versions", {}, [("s3:ListBucketVersions", BUCKET)]),
        ("head_bucket", {}, [("s3:ListBucket", BUCKET)]),
        ("get_bucket_location", {}, [("s3:GetBucketLocation", BUCKET)]),
        (
            "copy_object",
            {"Key": "new.jpg", "CopySource": {"Bucket": "other", "Key": "old.jpg"}},
            [("s3:PutObject", f"{BUCKET}/new.jpg"), ("s3:GetObject", "arn:aws:s3:::other/old.jpg")],
        ),
        (
            "copy_object",
            {
                "Key": "new.jpg",
                "CopySource": {"Bucket": "other", "Key": "o l d.jpg", "VersionId": "v3"},
            },
            [
                ("s3:PutObject", f"{BUCKET}/new.jpg"),
                ("s3:GetObjectVersion", "arn:aws:s3:::other/o l d.jpg"),
            ],
        ),
        ("create_multipart_upload", {"Key": "big"}, [("s3:PutObject", f"{BUCKET}/big")]),
        (
            "upload_part",
            {"Key": "big", "UploadId": "u", "PartNumber": 1, "Body": b"x"},
            [("s3:PutObject", f"{BUCKET}/big")],
        ),
        (
            "complete_multipart_upload",
            {"Key": "big", "UploadId": "u", "MultipartUpload": {"Parts": []}},
            [("s3:PutObject", f"{BUCKET}/big")],
        ),
        (
            "abort_multipart_upload",
            {"Key": "big", "UploadId": "u"},
            [("s3:AbortMultipartUpload", f"{BUCKET}/big")],
        ),
        (
            "list_parts",
            {"Key": "big", "UploadId": "u"},
            [("s3:ListMultipartUploadParts", f"{BUCKET}/big")],
        ),
        ("get_object_tagging", {"Key": "a"}, [("s3:GetObjectTagging", f"{BUCKET}/a")]),
        (
            "get_object_tagging",
            {"Key": "a", "VersionId": "v"},
            [("s3:GetObjectVersionTagging", f"{BUCKET}/a")],
        ),
        (
            "put_bucket_notification_configuration",
            {"NotificationConfiguration": {}},
            [("s3:PutBucketNotification", BUCKET)],
        ),
        ("delete_bucket_cors", {}, [("s3:PutBucketCORS", BUCKET)]),
        (
            "put_bucket_versioning",
            {"VersioningConfiguration": {"Status": "Enabled"}},
            [("s3:PutBucketVersioning", BUCKET)],
        ),
        ("create_bucket", {}, [("s3:CreateBucket", BUCKET)]),
        ("delete_bucket", {}, [("s3:DeleteBucket", BUCKET)]),
    ],
)
def test_s3(operation: str, params: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert checks("s3", operation, Bucket="photos", **params) == expected


def test_s3_list_buckets_and_the_error_protocol() -> None:
    assert checks("s3", "list_buckets") == [("s3:ListAllMyBuckets", "*")]
    assert required_permissions(sent("s3", "list_buckets")).protocol is Protocol.S3


def test_a_presigned_url_is_mapped_from_its_query_string() -> None:
    client = boto3.client(
        "s3",
        region_name=REGION,
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="ASIAEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(signature_version="s3v4"),
    )
    url = urlsplit(
        client.generate_presigned_url("put_object", Params={"Bucket": "photos", "Key": "k 1"})
    )
    assert signing_scope({}, url.query) == ("s3", REGION)
    request = HttpRequest("PUT", url.path, url.query, {}, b"", "s3", REGION, ACCOUNT)
    assert required_permissions(request).permissions == (
        Permission("s3:PutObject", f"{BUCKET}/k 1"),
    )


@pytest.mark.parametrize(
    ("method", "path", "query"),
    [
        ("GET", "/photos", "inventory&id=x"),
        ("GET", "/photos/a.jpg", "some-new-subresource"),
        ("POST", "/photos", ""),  # a browser upload: the key is in the form
    ],
)
def test_an_unknown_s3_call_is_authorised_on_any_resource(
    method: str, path: str, query: str
) -> None:
    request = HttpRequest(method, path, query, {}, b"", "s3", REGION, ACCOUNT)
    required = required_permissions(request)
    assert not required.mapped and required.permissions[0].resource == "*"


# --- DynamoDB ---------------------------------------------------------------------------

_KEY = {"key": {"S": "a.jpg"}}


@pytest.mark.parametrize(
    ("operation", "params", "expected"),
    [
        ("get_item", {"TableName": "images", "Key": _KEY}, [("dynamodb:GetItem", TABLE)]),
        ("put_item", {"TableName": "images", "Item": _KEY}, [("dynamodb:PutItem", TABLE)]),
        ("scan", {"TableName": "images"}, [("dynamodb:Scan", TABLE)]),
        (
            "query",
            {
                "TableName": "images",
                "IndexName": "by-status",
                "KeyConditionExpression": "s = :s",
                "ExpressionAttributeValues": {":s": {"S": "active"}},
            },
            [("dynamodb:Query", f"{TABLE}/index/by-status")],
        ),
        (
            "query",
            {"TableName": TABLE, "KeyConditionExpression": "k = :k"},
            [("dynamodb:Query", TABLE)],
        ),
        ("list_tables", {}, [("dynamodb:ListTables", "*")]),
        ("describe_table", {"TableName": "images"}, [("dynamodb:DescribeTable", TABLE)]),
        (
            "batch_write_item",
            {
                "RequestItems": {
                    "images": [{"PutRequest": {"Item": _KEY}}],
                    "other": [{"DeleteRequest": {"Key": _KEY}}],
                }
            },
            [
                ("dynamodb:BatchWriteItem", TABLE),
                ("dynamodb:BatchWriteItem", TABLE.replace("images", "other")),
            ],
        ),
        (
            "batch_get_item",
            {"RequestItems": {"images": {"Keys": [_KEY]}}},
            [("dynamodb:BatchGetItem", TABLE)],
        ),
        (
            "transact_write_items",
            {
                "TransactItems": [
                    {"Put": {"TableName": "images", "Item": _KEY}},
                    {"Delete": {"TableName": "other", "Key": _KEY}},
                    {
                        "ConditionCheck": {
                            "TableName": "images",
                            "Key": _KEY,
                            "ConditionExpression": "x",
                        }
                    },
                ]
            },
            [
                ("dynamodb:PutItem", TABLE),
                ("dynamodb:DeleteItem", TABLE.replace("images", "other")),
                ("dynamodb:ConditionCheckItem", TABLE),
            ],
        ),
        (
            "tag_resource",
            {"ResourceArn": TABLE, "Tags": [{"Key": "k", "Value": "v"}]},
            [("dynamodb:TagResource", TABLE)],
        ),
    ],
)
def test_dynamodb(operation: str, params: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert checks("dynamodb", operation, **params) == expected
    assert required_permissions(sent("dynamodb", operation, **params)).protocol is Protocol.JSON


# --- SQS, CloudWatch Logs ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "params", "expected"),
    [
        ("send_message", {"QueueUrl": QUEUE_URL, "MessageBody": "x"}, [("sqs:SendMessage", QUEUE)]),
        (
            "send_message_batch",
            {"QueueUrl": QUEUE_URL, "Entries": [{"Id": "1", "MessageBody": "x"}]},
            [("sqs:SendMessage", QUEUE)],
        ),
        ("receive_message", {"QueueUrl": QUEUE_URL}, [("sqs:ReceiveMessage", QUEUE)]),
        ("get_queue_url", {"QueueName": "failed"}, [("sqs:GetQueueUrl", QUEUE)]),
        ("create_queue", {"QueueName": "failed"}, [("sqs:CreateQueue", QUEUE)]),
        ("list_queues", {}, [("sqs:ListQueues", "*")]),
    ],
)
def test_sqs(operation: str, params: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert checks("sqs", operation, **params) == expected


def test_sqs_query_protocol() -> None:
    body = f"Action=SendMessage&Version=2012-11-05&QueueUrl={QUEUE_URL}&MessageBody=x".encode()
    headers = {"content-type": "application/x-www-form-urlencoded; charset=utf-8"}
    request = HttpRequest("POST", "/", "", headers, body, "sqs", REGION, ACCOUNT)
    required = required_permissions(request)
    assert required.protocol is Protocol.QUERY
    assert required.permissions == (Permission("sqs:SendMessage", QUEUE),)
    # The query protocol may also address the queue's own URL.
    by_path = HttpRequest(
        "POST", f"/{ACCOUNT}/failed", "", headers, b"Action=DeleteQueue", "sqs", REGION, ACCOUNT
    )
    assert required_permissions(by_path).permissions == (Permission("sqs:DeleteQueue", QUEUE),)


@pytest.mark.parametrize(
    ("operation", "params", "expected"),
    [
        (
            "create_log_stream",
            {"logGroupName": "/aws/lambda/fn", "logStreamName": "2025/01/01/[$LATEST]ab"},
            [("logs:CreateLogStream", f"{GROUP}:log-stream:2025/01/01/[$LATEST]ab")],
        ),
        (
            "put_log_events",
            {
                "logGroupName": "/aws/lambda/fn",
                "logStreamName": "s",
                "logEvents": [{"timestamp": 1, "message": "m"}],
            },
            [("logs:PutLogEvents", f"{GROUP}:log-stream:s")],
        ),
        (
            "describe_log_streams",
            {"logGroupName": "/aws/lambda/fn"},
            [("logs:DescribeLogStreams", f"{GROUP}:*")],
        ),
        (
            "describe_log_streams",
            {"logGroupIdentifier": GROUP},
            [("logs:DescribeLogStreams", f"{GROUP}:*")],
        ),
        (
            "create_log_group",
            {"logGroupName": "/aws/lambda/fn"},
            [("logs:CreateLogGroup", f"{GROUP}:*")],
        ),
        (
            "describe_log_groups",
            {},
            [("logs:DescribeLogGroups", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:*")],
        ),
    ],
)
def test_logs(operation: str, params: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert checks("logs", operation, **params) == expected


# --- Lambda, API Gateway ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "params", "expected"),
    [
        ("invoke", {"FunctionName": "fn"}, [("lambda:InvokeFunction", FUNCTION)]),
        (
            "invoke",
            {"FunctionName": "fn", "Qualifier": "3"},
            [("lambda:InvokeFunction", f"{FUNCTION}:3")],
        ),
        ("invoke", {"FunctionName": "fn:live"}, [("lambda:InvokeFunction", f"{FUNCTION}:live")]),
        ("invoke", {"FunctionName": FUNCTION}, [("lambda:InvokeFunction", FUNCTION)]),
        (
            "invoke",
            {"FunctionName": f"{ACCOUNT}:function:fn"},
            [("lambda:InvokeFunction", FUNCTION)],
        ),
        ("list_functions", {}, [("lambda:ListFunctions", "*")]),
        ("get_function", {"FunctionName": "fn"}, [("lambda:GetFunction", FUNCTION)]),
        (
            "create_function",
            {
                "FunctionName": "fn",
                "Role": "r",
                "Code": {"ZipFile": b"z"},
                "Runtime": "python3.13",
                "Handler": "h.h",
            },
            [("lambda:CreateFunction", FUNCTION), ("iam:PassRole", "r")],
        ),
        (
            "add_permission",
            {
                "FunctionName": "fn",
                "StatementId": "s",
                "Action": "lambda:InvokeFunction",
                "Principal": "s3.amazonaws.com",
            },
            [("lambda:AddPermission", FUNCTION)],
        ),
        (
            "remove_permission",
            {"FunctionName": "fn", "StatementId": "s"},
            [("lambda:RemovePermission", FUNCTION)],
        ),
        ("get_policy", {"FunctionName": "fn"}, [("lambda:GetPolicy", FUNCTION)]),
        (
            "update_function_configuration",
            {"FunctionName": "fn", "Timeout": 3},
            [("lambda:UpdateFunctionConfiguration", FUNCTION)],
        ),
        (
            "put_function_event_invoke_config",
            {"FunctionName": "fn", "MaximumRetryAttempts": 1},
            [("lambda:PutFunctionEventInvokeConfig", FUNCTION)],
        ),
        ("list_tags", {"Resource": FUNCTION}, [("lambda:ListTags", FUNCTION)]),
        (
            "get_alias",
            {"FunctionName": "fn", "Name": "live"},
            [("lambda:GetAlias", f"{FUNCTION}:live")],
        ),
        (
            "delete_event_source_mapping",
            {"UUID": "14e0db71-0000-4000-8000-000000000000"},
            [
                (
                    "lambda:DeleteEventSourceMapping",
                    f"arn:aws:lambda:{REGION}:{ACCOUNT}:event-source-mapping:14e0db71-0000-4000-8000-000000000000",
                )
            ],
        ),
    ],
)
def test_lambda(operation: str, params: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert checks("lambda", operation, **params) == expected


def test_api_gateway_v2_is_authorised_by_method_and_path() -> None:
    base = f"arn:aws:apigateway:{REGION}::"
    assert checks("apigatewayv2", "get_apis") == [("apigateway:GET", f"{base}/apis")]
    created = checks("apigatewayv2", "create_route", ApiId="abc", RouteKey="GET /x")
    assert created == [("apigateway:POST", f"{base}/apis/abc/routes")]
    deleted = checks("apigatewayv2", "delete_api", ApiId="abc")
    assert deleted == [("apigateway:DELETE", f"{base}/apis/abc")]


# --- IAM, STS, and what is not mapped ---------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "params", "expected"),
    [
        ("list_roles", {}, [("iam:ListRoles", "*")]),
        ("get_role", {"RoleName": "r"}, [("iam:GetRole", f"arn:aws:iam::{ACCOUNT}:role/r")]),
        (
            "attach_role_policy",
            {"RoleName": "r", "PolicyArn": "arn:aws:iam::aws:policy/ReadOnlyAccess"},
            [("iam:AttachRolePolicy", f"arn:aws:iam::{ACCOUNT}:role/r")],
        ),
        (
            "get_policy",
            {"PolicyArn": f"arn:aws:iam::{ACCOUNT}:policy/p"},
            [("iam:GetPolicy", f"arn:aws:iam::{ACCOUNT}:policy/p")],
        ),
        (
            "create_policy",
            {"PolicyName": "p", "PolicyDocument": "{}"},
            [("iam:CreatePolicy", f"arn:aws:iam::{ACCOUNT}:policy/p")],
        ),
    ],
)
def test_iam(operation: str, params: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert checks("iam", operation, **params) == expected
    assert required_permissions(sent("iam", operation, **params)).protocol is Protocol.QUERY


def test_sts() -> None:
    role = f"arn:aws:iam::{ACCOUNT}:role/r"
    assert checks("sts", "assume_role", RoleArn=role, RoleSessionName="session") == [
        ("sts:AssumeRole", role)
    ]
    identity = required_permissions(sent("sts", "get_caller_identity"))
    assert identity.always_allowed and identity.operation == "GetCallerIdentity"


@pytest.mark.parametrize(
    ("service", "operation", "params", "action"),
    [
        (
            "events",
            "put_events",
            {"Entries": [{"Source": "s", "DetailType": "d", "Detail": "{}"}]},
            "events:PutEvents",
        ),
        (
            "sns",
            "publish",
            {"TopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:t", "Message": "m"},
            "sns:Publish",
        ),
        (
            "cloudwatch",
            "put_metric_data",
            {"Namespace": "n", "MetricData": [{"MetricName": "m", "Value": 1.0}]},
            "cloudwatch:PutMetricData",
        ),
        (
            "dynamodb",
            "execute_statement",
            {"Statement": "SELECT * FROM /* a comment */ images"},
            "dynamodb:ExecuteStatement",
        ),
        ("lambda", "list_layers", {}, "lambda:GET /2018-10-31/layers"),
    ],
)
def test_what_is_not_mapped_is_authorised_on_any_resource(
    service: str, operation: str, params: dict[str, Any], action: str
) -> None:
    required = required_permissions(sent(service, operation, **params))
    assert not required.mapped
    assert required.permissions == (Permission(action, "*"),)


def test_a_json_target_body_that_is_not_a_json_object_is_refused() -> None:
    request = sent("dynamodb", "get_item", TableName="images", Key=_KEY)
    assert json.loads(request.body)["TableName"] == "images"
    broken = HttpRequest(
        "POST",
        "/",
        "",
        {"x-amz-target": "DynamoDB_20120810.GetItem"},
        b"{oops",
        "dynamodb",
        REGION,
        ACCOUNT,
    )
    assert required_permissions(broken).refusal is not None
