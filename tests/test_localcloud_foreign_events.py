"""Events for another bucket, sent to a local stack's save function by its owner.

The issue's finding, end to end: the table is keyed by object key alone, so a create or a
delete event naming another bucket overwrote or tombstoned the stack's image of the same
key. Here such events (with the largest sequencer there is) are invoked on the deployed
function, synchronously and asynchronously, as ``aws lambda invoke`` would: the stack's
record and listing of that key stay as they were, and nothing reaches the failed-events
queue (the asynchronous runs are known to be over once their log lines are written).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.eventdata import s3_event
from tests.images import image_bytes
from tests.localstack import (
    bootstrap,
    failed_queue_depth,
    local_client,
    local_cloud_env,
    run_imgcli,
)

KEY = "same/key.png"
OTHER_BUCKET = "someone-elses-bucket"
FORGED = "F" * 64


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with local_cloud_env(tmp_path_factory.mktemp("foreign"), "foreign") as env:
        description = bootstrap(env)
        description["env"] = env
        yield description


def wait_for(check: Any, what: str, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(0.1)
    return found


def foreign_lines(stack: dict[str, Any]) -> list[dict[str, Any]]:
    logs = local_client(stack, "logs")
    group = f"/aws/lambda/{stack['functions']['save_delete']}"
    try:
        events = logs.filter_log_events(logGroupName=group)["events"]
    except logs.exceptions.ResourceNotFoundException:
        return []
    lines = []
    for event in events:
        try:
            line = json.loads(event["message"])
        except ValueError:
            continue  # START, END and REPORT lines
        if line.get("message") == "record for another bucket: not indexed":
            lines.append(line)
    return lines


def test_events_for_another_bucket_change_nothing(stack: dict[str, Any], tmp_path: Path) -> None:
    env = stack["env"]
    s3, dynamodb = local_client(stack, "s3"), local_client(stack, "dynamodb")
    functions = local_client(stack, "lambda")
    s3.put_object(Bucket=stack["bucket"], Key=KEY, Body=image_bytes("PNG", (32, 24)))

    def indexed() -> dict[str, Any] | None:
        item = dynamodb.get_item(TableName=stack["table"], Key={"key": {"S": KEY}}).get("Item")
        return item if item and item["status"]["S"] == "active" else None

    before = wait_for(indexed, "the stack's own image indexed")
    shown = run_imgcli(env, "show", KEY, "--json")
    assert shown.returncode == 0, shown.stderr

    s3.create_bucket(Bucket=OTHER_BUCKET)
    put = s3.put_object(Bucket=OTHER_BUCKET, Key=KEY, Body=image_bytes("GIF", (8, 8)))
    create = s3_event("s3_put", bucket=OTHER_BUCKET, key=KEY, sequencer=FORGED, put=dict(put))
    delete = s3_event("s3_delete", bucket=OTHER_BUCKET, key=KEY, sequencer=FORGED)
    for event in (create, delete):
        answer = functions.invoke(
            FunctionName=stack["functions"]["save_delete"], Payload=json.dumps(event)
        )
        payload = json.loads(answer["Payload"].read())
        assert "FunctionError" not in answer, payload
        assert payload == {"other_bucket": 1}
        queued = functions.invoke(
            FunctionName=stack["functions"]["save_delete"],
            Payload=json.dumps(event),
            InvocationType="Event",
        )
        assert queued["StatusCode"] == 202

    lines = wait_for(lambda: len(foreign_lines(stack)) >= 4 and foreign_lines(stack), "logs")
    assert {(line["bucket"], line["key"]) for line in lines} == {(OTHER_BUCKET, KEY)}
    assert (
        sorted(line["event_name"] for line in lines)
        == ["ObjectCreated:Put"] * 2 + ["ObjectRemoved:Delete"] * 2
    )

    assert indexed() == before
    again = run_imgcli(env, "show", KEY, "--json")
    assert again.returncode == 0, again.stderr
    assert without_links(json.loads(again.stdout)) == without_links(json.loads(shown.stdout))
    assert failed_queue_depth(stack) == (0, 0)


def without_links(record: dict[str, Any]) -> dict[str, Any]:
    """The record without its presigned links, which are signed anew on every request."""
    return {name: value for name, value in record.items() if name not in ("urls", "urls_expire_at")}
