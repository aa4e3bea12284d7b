"""moto behind the authoriser on a loopback port, for the role tests: a small local cloud.

The real gate verifies SigV4 and then names the caller; :class:`TrustingGate` stands in for
it and only names the caller (the access key id in the request's credential scope, looked
up in the role sessions), so these tests exercise the authoriser alone. The stack's own
resources and roles (``infra.policies``) are created by the owner with plain boto3.

:func:`create_victims` builds a small account for the authorisation-bypass tests: an
attacker role whose policy allows a little on "its" resources (``mytable``, ``myqueue``,
``mybucket/tmp/*``...) beside victims (``victimtable``, ``victimqueue``,
``victim-bucket``...). Those tests send crafted requests with :func:`raw` (the trusting
gate needs no real signature) and check both the refusal and that the victim is untouched.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import requests

from imgcli.infra import policies
from imgcli.infra.names import StackNames
from imgcli.lambdas.records import TABLE_DEFINITION
from imgcli.localcloud.authorizer import Authorizer
from imgcli.localcloud.identity import ENVIRON_KEY, Principal
from imgcli.localcloud.role_sessions import RoleSessions

ACCOUNT = "123456789012"
REGION = "us-east-1"
OWNER = Principal("owner-key", "owner-secret")
NAMES = StackNames("demo", ACCOUNT, REGION)
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/|X-Amz-Credential=([^%&/]+)")


class TrustingGate:
    """Names the caller from the request's access key id; verifies nothing (the real gate
    does: these tests are about what happens after it)."""

    def __init__(self, app: Callable[..., Iterable[bytes]], sessions: RoleSessions) -> None:
        self.app = app
        self.sessions = sessions

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        signed = environ.get("HTTP_AUTHORIZATION", "") + " " + environ.get("QUERY_STRING", "")
        match = _CREDENTIAL.search(signed)
        key = (match[1] or match[2]) if match else ""
        principal = OWNER if key == OWNER.access_key_id else self.sessions.lookup(key)
        if principal is None:
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"unknown key"]
        environ[ENVIRON_KEY] = principal
        return self.app(environ, start_response)


@dataclass
class RoleCloud:
    endpoint: str
    sessions: RoleSessions

    def client(self, service: str, principal: Principal = OWNER, **extra: Any) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=principal.access_key_id,
            aws_secret_access_key=principal.secret_access_key,
            aws_session_token=principal.session_token,
            **extra,
        )

    def session(self, role_name: str, session_name: str = "fn") -> Principal:
        return self.sessions.issue(NAMES.role_arn(role_name), session_name)


@contextmanager
def authorizing_cloud() -> Iterator[RoleCloud]:
    """moto, behind the authoriser and a trusting gate, on 127.0.0.1; reset afterwards."""
    from moto.moto_api._internal.models import moto_api_backend
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    sessions = RoleSessions()
    moto_app = DomainDispatcherApplication(create_backend_app)
    app = TrustingGate(Authorizer(moto_app, account=ACCOUNT, default_region=REGION), sessions)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield RoleCloud(f"http://127.0.0.1:{server.port}", sessions)
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()
        moto_api_backend.reset()


def create_stack(cloud: RoleCloud) -> None:
    """The stack's buckets, table, failure queue and the two roles with their real policies."""
    cloud.client("s3").create_bucket(Bucket=NAMES.bucket)
    cloud.client("s3").create_bucket(Bucket=NAMES.thumbnails_bucket)
    cloud.client("dynamodb").create_table(TableName=NAMES.table, **TABLE_DEFINITION)
    cloud.client("sqs").create_queue(QueueName=NAMES.failure_queue)
    iam = cloud.client("iam")
    for role, document in (
        (NAMES.save_role, policies.save_function_policy(NAMES)),
        (NAMES.retrieve_role, policies.retrieve_function_policy(NAMES)),
    ):
        iam.create_role(
            RoleName=role, AssumeRolePolicyDocument=json.dumps(policies.lambda_trust_policy(NAMES))
        )
        iam.put_role_policy(RoleName=role, PolicyName="imgcli", PolicyDocument=json.dumps(document))


ATTACKER = "attacker-role"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/"
QUEUES = ("myqueue", "victimqueue")
TABLES = ("mytable", "victimtable")
LOG_GROUPS = ("mygroup", "victimgroup")
ATTACKER_POLICY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            # The PartiQL API names too, as a policy written from the API reference has them.
            "Action": [
                "dynamodb:GetItem",
                "dynamodb:PartiQLSelect",
                "dynamodb:ExecuteStatement",
                "dynamodb:BatchExecuteStatement",
                "dynamodb:ExecuteTransaction",
            ],
            "Resource": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/mytable",
        },
        {
            "Effect": "Allow",
            "Action": ["sqs:SendMessage", "sqs:ReceiveMessage"],
            "Resource": f"arn:aws:sqs:{REGION}:{ACCOUNT}:myqueue",
        },
        {"Effect": "Allow", "Action": "iam:ListRoles", "Resource": "*"},
        {"Effect": "Allow", "Action": "iam:PutRolePolicy", "Resource": ROLE_ARN + "sandbox-*"},
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": ROLE_ARN + "*"},
        {
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:DeleteObject"],
            "Resource": "arn:aws:s3:::mybucket/tmp/*",
        },
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::mybucket/*"},
        {
            "Effect": "Allow",
            "Action": ["logs:GetLogEvents", "logs:DescribeLogStreams"],
            "Resource": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:mygroup:*",
        },
        {"Effect": "Allow", "Action": "lambda:CreateFunction", "Resource": "*"},
    ],
}
TRUST_ACCOUNT = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
            "Action": "sts:AssumeRole",
        }
    ],
}
TRUST_LAMBDA = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}
ADMIN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def create_victims(cloud: RoleCloud) -> None:
    """The attacker's role, the roles it aims at, and every resource on both sides."""
    iam = cloud.client("iam")
    for name, trust in (
        (ATTACKER, TRUST_ACCOUNT),
        ("admin-role", TRUST_LAMBDA),
        ("allowed-role", TRUST_ACCOUNT),
        ("sandbox-x", TRUST_ACCOUNT),
    ):
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
    iam.put_role_policy(
        RoleName=ATTACKER, PolicyName="p", PolicyDocument=json.dumps(ATTACKER_POLICY)
    )
    iam.put_role_policy(
        RoleName="admin-role", PolicyName="p", PolicyDocument=json.dumps(ADMIN_POLICY)
    )
    dynamodb = cloud.client("dynamodb")
    for table in TABLES:
        dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamodb.put_item(TableName=table, Item={"pk": {"S": f"row-{table}"}})
    sqs = cloud.client("sqs")
    for queue in QUEUES:
        url = sqs.create_queue(QueueName=queue)["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody=f"for {queue}")
    s3 = cloud.client("s3")
    for bucket in ("mybucket", "victim-bucket"):
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket="mybucket", Key="important.txt", Body=b"do not delete")
    s3.put_object(Bucket="mybucket", Key="tmp/a.txt", Body=b"mine")
    s3.put_object(Bucket="victim-bucket", Key="secret.txt", Body=b"secret")
    logs = cloud.client("logs")
    for group in LOG_GROUPS:
        logs.create_log_group(logGroupName=group)
        logs.create_log_stream(logGroupName=group, logStreamName="s")
        logs.put_log_events(
            logGroupName=group,
            logStreamName="s",
            logEvents=[{"timestamp": int(time.time() * 1000), "message": f"{group} says hi"}],
        )


def raw(
    cloud: RoleCloud,
    principal: Principal,
    service: str,
    method: str,
    target: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> requests.Response:
    """A request as an attacker crafts it, scoped to ``service``."""
    scope = f"{principal.access_key_id}/20260101/{REGION}/{service}/aws4_request"
    signed = {
        "Authorization": f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, Signature=0",
        "X-Amz-Security-Token": principal.session_token or "",
        **(headers or {}),
    }
    return requests.request(method, cloud.endpoint + target, headers=signed, data=body, timeout=10)


def json_target(target: str) -> dict[str, str]:
    return {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": target}


def queue_url(cloud: RoleCloud, name: str) -> str:
    return f"{cloud.endpoint}/{ACCOUNT}/{name}"


def assert_refused(response: requests.Response) -> None:
    assert response.status_code in (400, 403), (response.status_code, response.text)
    assert "AccessDenied" in (response.text + response.headers.get("x-amzn-ErrorType", ""))
