"""``imgcli events list|replay|purge`` on a bootstrapped local stack, as a user runs them.

The save function is made to fail the way it would on AWS: a policy on its role denies
``dynamodb:PutItem`` (the local cloud authorises every call a function makes against its
role). Uploaded images then exhaust their retries into the failed-events queue (the local
cloud retries seconds apart); ``events list`` shows them, a replay while the policy stands
fails again and keeps them, and once the policy is gone ``events replay`` indexes them and
empties the queue.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.images import image_bytes
from tests.localstack import (
    bootstrap,
    failed_queue_depth,
    local_client,
    local_cloud_env,
    run_imgcli,
)

KEYS = ("failed/first image.png", "failed/second+one.png")
DENY = "deny-index-writes"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with local_cloud_env(tmp_path_factory.mktemp("failed-events"), "failedevents") as env:
        description = bootstrap(env)
        description["env"] = env
        yield description


def wait_for(check: Any, what: str, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(0.2)
    return found


def save_role(stack: dict[str, Any]) -> str:
    functions = local_client(stack, "lambda")
    arn = functions.get_function_configuration(FunctionName=stack["functions"]["save_delete"])
    return str(arn["Role"]).rpartition("/")[2]


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_failed_events_are_listed_kept_when_failing_and_replayed(stack: dict[str, Any]) -> None:
    env, iam, s3 = stack["env"], local_client(stack, "iam"), local_client(stack, "s3")
    role = save_role(stack)
    deny = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Action": "dynamodb:PutItem", "Resource": "*"}],
    }
    iam.put_role_policy(RoleName=role, PolicyName=DENY, PolicyDocument=json.dumps(deny))
    for key in KEYS:
        s3.put_object(Bucket=stack["bucket"], Key=key, Body=image_bytes("PNG", (16, 12)))
    wait_for(lambda: failed_queue_depth(stack) == (2, 0), "both events in the failed-events queue")

    listed = run_imgcli(env, "events", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    events = json_lines(listed.stdout)
    assert sorted(key for event in events for key in event["keys"]) == sorted(KEYS)
    for event in events:
        assert event["condition"] == "RetriesExhausted"
        assert event["attempts"] == 3
        assert event["error_type"] == "RecordsFailed"
        assert "AccessDenied" in event["error_message"]
        assert event["function"] == stack["functions"]["save_delete"]
        assert event["event_time"] and event["age_s"] >= 0
    assert failed_queue_depth(stack) == (2, 0)  # listing consumed nothing and hides nothing

    table = run_imgcli(env, "events", "list")
    assert table.returncode == 0, table.stderr
    assert all(key in table.stdout for key in KEYS)
    assert "RecordsFailed" in table.stdout

    first = events[0]["id"]
    again = run_imgcli(env, "events", "replay", first, "--json")
    assert again.returncode == 1, again.stderr
    *outcomes, summary = json_lines(again.stdout)
    assert [(o["id"], o["status"]) for o in outcomes] == [(first, "failed")]
    assert "AccessDenied" in outcomes[0]["error_message"]
    assert summary == {
        "summary": {
            "total": 1,
            "replayed": 0,
            "failed": 1,
            "unreadable": 0,
            "missing": 0,
            "held_elsewhere": 0,
        }
    }
    assert failed_queue_depth(stack) == (2, 0)  # the one that failed again stays, visible
    told = run_imgcli(env, "events", "replay", first)
    assert told.returncode == 1
    assert first in told.stdout and "failed" in told.stdout and "AccessDenied" in told.stdout
    assert "replayed 0 of 1 failed event: 1 failed again" in told.stderr
    assert "1 of 1 failed event not replayed" in told.stderr
    assert failed_queue_depth(stack) == (2, 0)

    iam.delete_role_policy(RoleName=role, PolicyName=DENY)
    replayed = run_imgcli(env, "events", "replay", "--json")
    assert replayed.returncode == 0, replayed.stderr
    *outcomes, summary = json_lines(replayed.stdout)
    assert sorted(o["status"] for o in outcomes) == ["replayed", "replayed"]
    assert summary["summary"]["replayed"] == 2
    assert failed_queue_depth(stack) == (0, 0)
    for key in KEYS:
        shown = run_imgcli(env, "show", key, "--json")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["width"] == 16

    empty = run_imgcli(env, "events", "replay")
    assert empty.returncode == 0, empty.stderr
    assert "no failed events" in empty.stderr


def test_purge_asks_first_and_deletes_what_it_counted(stack: dict[str, Any]) -> None:
    env, sqs = stack["env"], local_client(stack, "sqs")
    url = sqs.get_queue_url(QueueName=stack["failed_events_queue"])["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="not a record")
    sqs.send_message(QueueUrl=url, MessageBody="{}")

    refused = run_imgcli(env, "events", "purge")
    assert refused.returncode == 2  # no terminal to ask on, and no --yes
    assert "--yes" in refused.stderr
    assert failed_queue_depth(stack) == (2, 0)

    purged = run_imgcli(env, "events", "purge", "--yes", "--json")
    assert purged.returncode == 0, purged.stderr
    assert json_lines(purged.stdout) == [{"summary": {"counted": 2, "deleted": 2}}]
    assert failed_queue_depth(stack) == (0, 0)
