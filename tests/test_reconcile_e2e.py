"""``imgcli reconcile`` on a bootstrapped local stack, against drift made behind its back.

Drift is made as it happens in life: the bucket's notification is removed (an event lost,
a hand edit), objects are written, overwritten and deleted meanwhile, and the
notification is put back. ``reconcile --dry-run`` reports exactly those keys and changes
nothing; ``reconcile`` repairs exactly those through the save function; a second run
finds nothing and exits 0.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.images import image_bytes
from tests.localstack import bootstrap, local_client, local_cloud_env, run_imgcli

KEPT = "kept.png"
OVERWRITTEN = "over written.png"
ADDED = "new/added.jpg"
UNREADABLE = "new/unreadable.png"
GONE = ("gone/a.png", "gone/b.png")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with local_cloud_env(tmp_path_factory.mktemp("reconcile"), "reconcile") as env:
        description = bootstrap(env)
        description["env"] = env
        yield description


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(0.1)
    return found


def table_items(stack: dict[str, Any]) -> dict[str, dict[str, Any]]:
    dynamodb = local_client(stack, "dynamodb")
    items = dynamodb.scan(TableName=stack["table"], ConsistentRead=True)["Items"]
    return {item["key"]["S"]: item for item in items}


def reconcile(stack: dict[str, Any], *args: str) -> tuple[int, list[dict[str, Any]], str]:
    """Exit code, JSON lines and stderr of ``imgcli reconcile --json ARGS``."""
    done = run_imgcli(stack["env"], "reconcile", "--json", *args)
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines and "summary" in lines[-1], (done.stdout, done.stderr)
    return done.returncode, lines, done.stderr


@pytest.fixture(scope="module")
def drift(stack: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Drift made while the notification was removed; the table as it was then."""
    s3 = local_client(stack, "s3")
    bucket = stack["bucket"]
    for key in (KEPT, OVERWRITTEN, *GONE):
        s3.put_object(Bucket=bucket, Key=key, Body=image_bytes("PNG", (16, 12)))
    wait_for(
        lambda: all(
            table_items(stack).get(key, {}).get("status", {}).get("S") == "active"
            for key in (KEPT, OVERWRITTEN, *GONE)
        ),
        "the first images indexed",
    )
    notification = s3.get_bucket_notification_configuration(Bucket=bucket)
    notification.pop("ResponseMetadata", None)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})
    try:
        s3.put_object(Bucket=bucket, Key=ADDED, Body=image_bytes("JPEG", (20, 10)))
        s3.put_object(Bucket=bucket, Key=UNREADABLE, Body=b"not an image at all")
        s3.put_object(Bucket=bucket, Key=OVERWRITTEN, Body=image_bytes("GIF", (30, 30)))
        for key in GONE:
            s3.delete_object(Bucket=bucket, Key=key)
    finally:
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration=notification
        )
    return table_items(stack)


EXPECTED_DRIFT = {
    ADDED: "missing",
    UNREADABLE: "missing",
    OVERWRITTEN: "stale",
    GONE[0]: "orphaned",
    GONE[1]: "orphaned",
}


def test_a_dry_run_reports_the_drift_and_changes_nothing(
    stack: dict[str, Any], drift: dict[str, dict[str, Any]]
) -> None:
    code, lines, stderr = reconcile(stack, "--dry-run")
    assert code == 0, stderr
    *reports, summary = lines
    assert {line["key"]: line["drift"] for line in reports} == EXPECTED_DRIFT
    assert {line["outcome"] for line in reports} == {"would_repair"}
    assert summary == {
        "summary": {
            "missing": 2,
            "stale": 1,
            "orphaned": 2,
            "unchanged": 1,
            "repaired": 0,
            "failed": 0,
            "older_schema": 0,
            "dry_run": True,
        }
    }
    code, lines, stderr = reconcile(stack, "--dry-run", "--prefix", "gone/")
    assert code == 0, stderr
    assert [(line["key"], line["drift"]) for line in lines[:-1]] == [
        (GONE[0], "orphaned"),
        (GONE[1], "orphaned"),
    ]
    people = run_imgcli(stack["env"], "reconcile", "--dry-run")
    assert people.returncode == 0, people.stderr
    assert OVERWRITTEN in people.stdout and "stale" in people.stdout
    assert "dry run: 6 keys compared: 2 missing, 1 stale, 2 orphaned" in people.stderr
    assert table_items(stack) == drift


def test_reconcile_repairs_exactly_the_drift_and_a_second_run_finds_nothing(
    stack: dict[str, Any], drift: dict[str, dict[str, Any]]
) -> None:
    code, lines, stderr = reconcile(stack)
    *reports, summary = lines
    assert {line["key"]: (line["drift"], line["outcome"]) for line in reports} == {
        ADDED: ("missing", "indexed"),
        UNREADABLE: ("missing", "invalid"),
        OVERWRITTEN: ("stale", "indexed"),
        GONE[0]: ("orphaned", "removed"),
        GONE[1]: ("orphaned", "removed"),
    }, stderr
    assert code == 0, stderr
    assert summary["summary"]["repaired"] == 5 and summary["summary"]["failed"] == 0

    s3 = local_client(stack, "s3")
    items = table_items(stack)
    for key in (ADDED, OVERWRITTEN):
        head = s3.head_object(Bucket=stack["bucket"], Key=key)
        assert items[key]["status"]["S"] == "active"
        assert items[key]["version_id"]["S"] == head["VersionId"]
    assert items[OVERWRITTEN]["format"]["S"] == "GIF"
    assert items[UNREADABLE]["status"]["S"] == "invalid"
    assert {items[key]["status"]["S"] for key in GONE} == {"deleted"}
    assert items[KEPT] == drift[KEPT]

    code, lines, stderr = reconcile(stack)
    assert code == 0, stderr
    assert lines == [
        {
            "summary": {
                "missing": 0,
                "stale": 0,
                "orphaned": 0,
                "unchanged": 4,
                "repaired": 0,
                "failed": 0,
                "older_schema": 0,
                "dry_run": False,
            }
        }
    ]


def refused_events(stack: dict[str, Any], key: str) -> bool:
    logs = local_client(stack, "logs")
    group = f"/aws/lambda/{stack['functions']['save_delete']}"
    try:
        events = logs.filter_log_events(logGroupName=group)["events"]
    except logs.exceptions.ResourceNotFoundException:
        return False
    for event in events:
        try:
            line = json.loads(event["message"])
        except ValueError:
            continue  # START, END and REPORT lines
        if (
            line.get("message") == "record for another bucket: not indexed"
            and line.get("key") == key
        ):
            return True
    return False


def test_a_failed_repair_makes_exit_code_1_and_the_next_run_repairs_it(
    stack: dict[str, Any], drift: dict[str, dict[str, Any]]
) -> None:
    # The save function is told another bucket is its own: it refuses this bucket's
    # events and repairs alike, as it would a foreign bucket's.
    functions = local_client(stack, "lambda")
    name = stack["functions"]["save_delete"]
    environment = functions.get_function_configuration(FunctionName=name)["Environment"]
    elsewhere = {"Variables": {**environment["Variables"], "BUCKET_NAME": "another-bucket"}}
    functions.update_function_configuration(FunctionName=name, Environment=elsewhere)
    try:
        s3 = local_client(stack, "s3")
        s3.put_object(Bucket=stack["bucket"], Key="late.png", Body=image_bytes("PNG", (8, 8)))
        # Its event is settled (refused) before the function is put right again.
        wait_for(lambda: refused_events(stack, "late.png"), "the event refused")
        code, lines, stderr = reconcile(stack)
    finally:
        functions.update_function_configuration(FunctionName=name, Environment=environment)
    assert code == 1, stderr
    ((report, summary),) = [lines]
    assert report["key"] == "late.png" and report["drift"] == "missing"
    assert report["outcome"].startswith("failed: the save function refused the repair")
    assert summary["summary"]["failed"] == 1
    assert "1 of 1 repairs failed" in stderr

    code, lines, stderr = reconcile(stack)
    assert code == 0, stderr
    assert [line.get("outcome") for line in lines[:-1]] == ["indexed"]
