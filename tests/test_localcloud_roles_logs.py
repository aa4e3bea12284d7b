"""Function logs in their log groups, written with the function's role (``function_logs``).

moto in process (``mock_aws``); the writer is what the runtime calls after each invocation.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import boto3
import pytest

from imgcli.infra import policies
from imgcli.infra.names import StackNames
from imgcli.localcloud import function_logs
from imgcli.localcloud.function_logs import FunctionLogWriter
from tests.lambda_runtime import spec_for

NAMES = StackNames("demo", "123456789012", "us-east-1")
STREAM = "2025/01/01/[$LATEST]0123456789abcdef"
LOG = "START RequestId: r Version: $LATEST\nhello\n\nEND RequestId: r\nREPORT RequestId: r\n"


def role(name: str, document: dict[str, Any] | None) -> str:
    iam = boto3.client("iam", region_name=NAMES.region)
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    if document is not None:
        iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(document))
    return str(arn)


def events(group: str, stream: str = STREAM) -> list[str]:
    logs = boto3.client("logs", region_name=NAMES.region)
    found = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)
    return [event["message"] for event in found["events"]]


def test_the_moto_logs_internals_are_where_the_writer_expects_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from moto.logs.models import LogsBackend

    assert function_logs.missing_internals() == []
    monkeypatch.delattr(LogsBackend, "put_log_events")
    assert function_logs.missing_internals() == ["LogsBackend.put_log_events"]


def test_a_functions_log_lands_in_its_group_one_stream_per_worker(moto_aws: None) -> None:
    group = function_logs.log_group_name(NAMES.save_function)
    boto3.client("logs", region_name=NAMES.region).create_log_group(logGroupName=group)
    spec = spec_for(
        "h.echo",
        name=NAMES.save_function,
        role_arn=role("save", policies.save_function_policy(NAMES)),
    )
    changes: list[object] = []

    def mutate(change: Any) -> None:
        changes.append(change)
        change()

    writer = FunctionLogWriter(NAMES.account, NAMES.region, mutate=mutate)
    writer(spec, STREAM, LOG)
    writer(spec, STREAM, "second invocation\n")
    assert len(changes) == 3  # the stream, then two writes: each through ``mutate``
    assert events(group) == [
        "START RequestId: r Version: $LATEST",
        "hello",
        "END RequestId: r",
        "REPORT RequestId: r",
        "second invocation",
    ]


def test_a_role_without_logging_permissions_loses_its_logs(
    moto_aws: None, caplog: pytest.LogCaptureFixture
) -> None:
    group = function_logs.log_group_name(NAMES.retrieve_function)
    logs = boto3.client("logs", region_name=NAMES.region)
    logs.create_log_group(logGroupName=group)
    # The save function's policy grants logging on its own group only.
    spec = spec_for(
        "h.echo",
        name=NAMES.retrieve_function,
        role_arn=role("wrong-group", policies.save_function_policy(NAMES)),
    )
    writer = FunctionLogWriter(NAMES.account, NAMES.region)
    with caplog.at_level(logging.WARNING, logger=function_logs.LOGGER.name):
        writer(spec, STREAM, LOG)
        writer(spec, STREAM, LOG)
    assert logs.describe_log_streams(logGroupName=group)["logStreams"] == []
    assert caplog.text.count("may not logs:CreateLogStream") == 1  # once, not per invocation


def test_a_missing_group_is_made_only_if_the_role_may(moto_aws: None) -> None:
    group = function_logs.log_group_name("fn")
    logs = boto3.client("logs", region_name=NAMES.region)
    writer = FunctionLogWriter(NAMES.account, NAMES.region)
    stack_like = policies.save_function_policy(NAMES)  # no logs:CreateLogGroup, as bootstrap
    writer(spec_for("h.echo", name="fn", role_arn=role("no-group", stack_like)), STREAM, LOG)
    assert logs.describe_log_groups()["logGroups"] == []

    everything = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "logs:*", "Resource": "*"}],
    }
    writer(spec_for("h.echo", name="fn", role_arn=role("all-logs", everything)), STREAM, LOG)
    assert events(group)[1] == "hello"
    # A stream someone deleted is made again on the next invocation.
    logs.delete_log_stream(logGroupName=group, logStreamName=STREAM)
    writer(spec_for("h.echo", name="fn", role_arn=role("again", everything)), STREAM, "lost\n")
    writer(spec_for("h.echo", name="fn", role_arn=role("again2", everything)), STREAM, "kept\n")
    assert events(group) == ["kept"]


def test_a_line_ends_at_a_newline_only_as_lambda_splits_output(moto_aws: None) -> None:
    group = function_logs.log_group_name(NAMES.save_function)
    boto3.client("logs", region_name=NAMES.region).create_log_group(logGroupName=group)
    spec = spec_for(
        "h.echo",
        name=NAMES.save_function,
        role_arn=role("save", policies.save_function_policy(NAMES)),
    )
    # A JSON line keeps U+2028 and U+0085 raw (ensure_ascii=False); Lambda's logging
    # handler joins a traceback's lines with \r to keep a record in one event.
    record = json.dumps({"message": "record done", "key": "a\u2028b\x85c.jpg"}, ensure_ascii=False)
    traceback = "[ERROR] boom\rTraceback (most recent call last):\r  File x"
    FunctionLogWriter(NAMES.account, NAMES.region)(spec, STREAM, f"{record}\n{traceback}\n")
    lines = events(group)
    assert lines == [record, traceback]
    assert json.loads(lines[0])["key"] == "a\u2028b\x85c.jpg"
