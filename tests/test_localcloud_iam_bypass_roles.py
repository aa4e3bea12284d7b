"""Calls the authoriser once let through although AWS checks more: refused, victims untouched.

The rest of the security review's findings (issue 11): PartiQL statements authorised on a
decoy ``TableName`` (F4), a function handed a role without ``iam:PassRole`` (F7),
``sts:AssumeRole`` that ignored trust policies and durations (F8), and CloudWatch Logs'
``logGroupIdentifier``, which moto resolves to another group (F9). moto runs behind the
authoriser, in process (``tests.role_harness``).
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from botocore.exceptions import ClientError

from imgcli.localcloud import MotoInternalsChanged, iam_moto_resources
from imgcli.localcloud.iam_assume_role import refusal
from imgcli.localcloud.iam_request_model import HttpRequest
from imgcli.localcloud.iam_requests import required_permissions
from imgcli.localcloud.iam_requests_dynamodb import partiql_checks
from imgcli.localcloud.identity import Principal
from imgcli.localcloud.role_policies import RoleTrust
from tests.role_harness import (
    ACCOUNT,
    ATTACKER,
    FORM,
    OWNER,
    REGION,
    ROLE_ARN,
    TRUST_ACCOUNT,
    RoleCloud,
    assert_refused,
    authorizing_cloud,
    create_victims,
    json_target,
    raw,
)

GROUP_ARN = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:"


@pytest.fixture(scope="module")
def cloud() -> Iterator[RoleCloud]:
    with authorizing_cloud() as cloud:
        create_victims(cloud)
        yield cloud


@pytest.fixture
def attacker(cloud: RoleCloud) -> Principal:
    return cloud.sessions.issue(ROLE_ARN + ATTACKER, "atk")


def victim_rows(cloud: RoleCloud) -> int:
    return int(cloud.client("dynamodb").scan(TableName="victimtable")["Count"])


def refused_code(call: Any, **params: Any) -> str:
    with pytest.raises(ClientError) as raised:
        call(**params)
    return str(raised.value.response["Error"]["Code"])


# --- F4: PartiQL is authorised on the tables its statements name ---------------------------


@pytest.mark.parametrize(
    ("operation", "body"),
    [
        ("ExecuteStatement", {"Statement": 'SELECT * FROM "victimtable"', "TableName": "mytable"}),
        ("ExecuteStatement", {"Statement": 'SELECT * FROM "victimtable"'}),
        (
            "BatchExecuteStatement",
            {
                "Statements": [
                    {"Statement": "DELETE FROM \"victimtable\" WHERE pk='row-victimtable'"}
                ],
                "TableName": "mytable",
            },
        ),
        (
            "ExecuteTransaction",
            {
                "TransactStatements": [
                    {"Statement": "INSERT INTO \"victimtable\" VALUE {'pk':'x'}"}
                ],
                "TableName": "mytable",
            },
        ),
    ],
)
def test_partiql_is_authorised_on_its_statements_tables(
    cloud: RoleCloud, attacker: Principal, operation: str, body: dict[str, Any]
) -> None:
    target = json_target(f"DynamoDB_20120810.{operation}")
    response = raw(cloud, attacker, "dynamodb", "POST", "/", target, json.dumps(body).encode())
    assert_refused(response)
    assert victim_rows(cloud) == 1


def test_partiql_on_an_allowed_table_works(cloud: RoleCloud, attacker: Principal) -> None:
    dynamodb = cloud.client("dynamodb", attacker)
    items = dynamodb.execute_statement(Statement='SELECT * FROM "mytable"')["Items"]
    assert items == [{"pk": {"S": "row-mytable"}}]


def test_partiql_table_references_are_read_from_every_clause() -> None:
    assert partiql_checks('SELECT a FROM "t"."i" WHERE x = 1') == [
        ("dynamodb:PartiQLSelect", "table/t"),
        ("dynamodb:PartiQLSelect", "table/t/index/i"),
    ]
    assert partiql_checks("update t SET a=1") == [("dynamodb:PartiQLUpdate", "table/t")]
    # A table named in a literal only adds a check; one that cannot be read is "*".
    assert partiql_checks('SELECT \'FROM "v"\' FROM "t"') == [
        ("dynamodb:PartiQLSelect", "table/v"),
        ("dynamodb:PartiQLSelect", "table/t"),
    ]
    assert partiql_checks('SELECT * FROM/**/"v"') is None
    assert partiql_checks("EXPLAIN SELECT 1") is None


def test_only_members_of_the_operations_input_are_read() -> None:
    decoy = {"TableName": "mytable", "Statement": "SELECT * FROM victimtable"}
    request = HttpRequest(
        "POST",
        "/",
        "",
        {"x-amz-target": "DynamoDB_20120810.ExecuteStatement"},
        json.dumps(decoy).encode(),
        "dynamodb",
        REGION,
        ACCOUNT,
    )
    resources = [p.resource for p in required_permissions(request).permissions]
    assert resources == [f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/victimtable"]


# --- F7: handing a function a role needs iam:PassRole ------------------------------------


def _zip() -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("h.py", "def handler(event, context):\n    return 1\n")
    return base64.b64encode(buffer.getvalue()).decode()


def test_create_function_needs_pass_role_on_its_role(cloud: RoleCloud, attacker: Principal) -> None:
    body = {
        "FunctionName": "attacker-fn",
        "Runtime": "python3.11",
        "Role": ROLE_ARN + "admin-role",
        "Handler": "h.handler",
        "Code": {"ZipFile": _zip()},
    }
    response = raw(
        cloud,
        attacker,
        "lambda",
        "POST",
        "/2015-03-31/functions",
        {"Content-Type": "application/json"},
        json.dumps(body).encode(),
    )
    assert response.status_code == 403
    assert "iam:PassRole on resource: " + ROLE_ARN + "admin-role" in response.text
    functions = cloud.client("lambda").list_functions()["Functions"]
    assert "attacker-fn" not in [f["FunctionName"] for f in functions]


def test_update_function_configuration_with_a_role_needs_pass_role() -> None:
    role = ROLE_ARN + "admin-role"
    request = HttpRequest(
        "PUT",
        "/2015-03-31/functions/fn/configuration",
        "",
        {"content-type": "application/json"},
        json.dumps({"Role": role}).encode(),
        "lambda",
        REGION,
        ACCOUNT,
    )
    actions = [(p.action, p.resource) for p in required_permissions(request).permissions]
    assert ("iam:PassRole", role) in actions
    without_role = HttpRequest(
        "PUT", request.raw_path, "", {}, b'{"Timeout": 3}', "lambda", REGION, ACCOUNT
    )
    assert [p.action for p in required_permissions(without_role).permissions] == [
        "lambda:UpdateFunctionConfiguration"
    ]


# --- F8: AssumeRole: the trust policy, and the duration ----------------------------------


def assume(cloud: RoleCloud, principal: Principal, role: str, **extra: Any) -> Any:
    params = {"RoleArn": ROLE_ARN + role, "RoleSessionName": "xx", **extra}
    return cloud.client("sts", principal).assume_role(**params)


def test_assume_role_needs_the_roles_trust(cloud: RoleCloud, attacker: Principal) -> None:
    sts = cloud.client("sts", attacker)
    code = refused_code(sts.assume_role, RoleArn=ROLE_ARN + "admin-role", RoleSessionName="xx")
    assert code == "AccessDenied"  # admin-role trusts only lambda.amazonaws.com
    assert refused_code(sts.assume_role, RoleArn=ROLE_ARN + "no-such", RoleSessionName="xx") == (
        "AccessDenied"
    )
    assert assume(cloud, attacker, "allowed-role")["Credentials"]["AccessKeyId"]


def assume_raw(cloud: RoleCloud, principal: Principal, role: str, seconds: int) -> Any:
    arn = quote(ROLE_ARN + role, safe="")
    body = f"Action=AssumeRole&Version=2011-06-15&RoleSessionName=xx&RoleArn={arn}"
    return raw(
        cloud, principal, "sts", "POST", "/", FORM, f"{body}&DurationSeconds={seconds}".encode()
    )


def test_assume_role_durations_are_bounded(cloud: RoleCloud, attacker: Principal) -> None:
    for seconds in (2, 899, 3601, 43200, 315360000):
        response = assume_raw(cloud, attacker, "allowed-role", seconds)
        assert response.status_code == 400, (seconds, response.text)
        assert "<Code>ValidationError</Code>" in response.text
    assert assume(cloud, attacker, "allowed-role", DurationSeconds=3600)
    # The owner is not checked against trust policies, but its durations are bounded too.
    for seconds in (2, 7200, 315360000):
        response = assume_raw(cloud, OWNER, "admin-role", seconds)
        assert response.status_code == 400, (seconds, response.text)
    assert assume_raw(cloud, OWNER, "admin-role", 3600).status_code == 200


def test_trust_policies_are_evaluated_for_the_session() -> None:
    session_role = ROLE_ARN + "caller"
    session = f"arn:aws:sts::{ACCOUNT}:assumed-role/caller/s"

    def trust(principal: Any, effect: str = "Allow", max_s: int = 7200) -> Any:
        statement = {"Effect": effect, "Principal": principal, "Action": "sts:AssumeRole"}
        document = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
        return lambda arn: RoleTrust(document, max_s)

    def check(trust_of: Any, **params: Any) -> str | None:
        found = refusal(
            {"RoleArn": ROLE_ARN + "target", **params},
            REGION,
            caller_role=session_role,
            caller_session=session,
            trust_of=trust_of,
        )
        return None if found is None else found.code

    assert check(trust({"AWS": session_role})) is None
    assert check(trust({"AWS": session})) is None
    assert check(trust({"AWS": ACCOUNT})) is None
    assert check(trust({"AWS": "arn:aws:iam::999999999999:root"})) == "AccessDenied"
    assert check(trust("*", effect="Deny")) == "AccessDenied"
    assert check(trust({"Service": "lambda.amazonaws.com"})) == "AccessDenied"
    # Role chaining: one hour at most, whatever MaxSessionDuration says.
    assert check(trust({"AWS": ACCOUNT}), DurationSeconds="3601") == "ValidationError"
    owner = refusal({"RoleArn": "r", "DurationSeconds": "7200"}, REGION, trust_of=trust("*"))
    assert owner is None
    too_long = refusal({"RoleArn": "r", "DurationSeconds": "7201"}, REGION, trust_of=trust("*"))
    assert too_long is not None and too_long.code == "ValidationError"
    assert refusal({"RoleArn": "r", "DurationSeconds": "x"}, REGION, trust_of=trust("*"))


def test_trust_of_the_stacks_roles_is_read_from_moto(cloud: RoleCloud) -> None:
    from imgcli.localcloud.role_policies import role_trust

    found = role_trust(ROLE_ARN + ATTACKER)
    assert found is not None and json.loads(found.document) == TRUST_ACCOUNT
    assert found.max_session_s == 3600
    assert role_trust(ROLE_ARN + "no-such") is None


# --- F9: logGroupIdentifier names the group moto acts on ---------------------------------


def log_events(cloud: RoleCloud, principal: Principal, **body: Any) -> Any:
    target = {
        **json_target("Logs_20140328.GetLogEvents"),
        "Content-Type": "application/x-amz-json-1.1",
    }
    body = {"logStreamName": "s", "startFromHead": True, **body}
    return raw(cloud, principal, "logs", "POST", "/", target, json.dumps(body).encode())


def test_log_group_identifiers_that_moto_resolves_elsewhere_are_refused(
    cloud: RoleCloud, attacker: Principal
) -> None:
    # moto resolves each of these to the last group created: victimgroup.
    for identifier in ("mygroup", GROUP_ARN + "mygroup", GROUP_ARN + "mygroup:*", "nothing"):
        response = log_events(cloud, attacker, logGroupIdentifier=identifier)
        assert_refused(response)
        assert "victimgroup says hi" not in response.text
    allowed = log_events(cloud, attacker, logGroupName="mygroup")
    assert allowed.status_code == 200 and "mygroup says hi" in allowed.text
    # A parameter smuggled into a JSON string, which moto also parses as a query string.
    smuggled = log_events(cloud, attacker, logGroupName="mygroup", x="&logGroupName=victimgroup&")
    assert "victimgroup says hi" not in smuggled.text


def test_an_identifier_is_resolved_only_to_the_group_moto_acts_on(cloud: RoleCloud) -> None:
    assert iam_moto_resources.missing_internals() == []
    assert iam_moto_resources.resolves_exactly(GROUP_ARN + "victimgroup")
    assert not iam_moto_resources.resolves_exactly(GROUP_ARN + "mygroup")
    assert not iam_moto_resources.resolves_exactly(GROUP_ARN + "nothing")
    assert not iam_moto_resources.resolves_exactly(f"arn:aws:sqs:{REGION}:{ACCOUNT}:q")


def test_a_changed_moto_log_group_fails_loudly(
    cloud: RoleCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.logs.models import logs_backends

    class Reshaped:
        pass  # no arn

    groups = logs_backends[ACCOUNT][REGION].groups
    monkeypatch.setitem(groups, "reshaped", Reshaped())
    with pytest.raises(MotoInternalsChanged):
        iam_moto_resources.resolves_exactly(GROUP_ARN + "reshaped")
