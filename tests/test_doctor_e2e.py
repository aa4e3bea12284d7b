"""``imgcli doctor`` on a bootstrapped local stack: healthy, then broken behind its back,
then repaired with the commands its fix column names.

Drift is made as it happens in life: the save function's role is made to deny
``dynamodb:PutItem`` (the local cloud enforces the functions' roles), so an upload's
event exhausts its retries into the failed-events queue; then the bucket's notification
is removed, and meanwhile an object is written and an indexed one deleted. Doctor must
name each (resources: the notification, and the deny policy as drift of the role's
policies; index: the missing and orphaned counts; failed events) and exit 1. After
``bootstrap`` (which removes the deny policy with the rest) the index is still wrong and
doctor says reconcile, not bootstrap; after ``events replay`` and ``reconcile`` it exits 0.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from imgcli.localcloud.health import nobody_listens
from tests.images import image_bytes
from tests.localstack import (
    bootstrap,
    failed_queue_depth,
    free_port,
    local_client,
    local_cloud_env,
    run_imgcli,
)

INDEXED = "doctor/indexed.png"
FAILED = "doctor/failed.png"
UNNOTIFIED = "doctor/written while unnotified.png"
DENY = "deny-index-writes"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with local_cloud_env(tmp_path_factory.mktemp("doctor"), "doctor") as env:
        description = bootstrap(env)
        description["env"] = env
        yield description


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(0.1)
    return found


def doctor(stack: dict[str, Any]) -> tuple[int, dict[str, dict[str, str]], dict[str, Any]]:
    """Exit code, checks by name, and the whole document of ``imgcli doctor --json``."""
    done = run_imgcli(stack["env"], "doctor", "--json")
    document = json.loads(done.stdout)
    assert [check["name"] for check in document["checks"]] == [
        "resources",
        "local cloud",
        "credentials",
        "failed events",
        "index",
        "function errors",
    ], done.stderr
    return done.returncode, {c["name"]: c for c in document["checks"]}, document


def indexed(stack: dict[str, Any], key: str) -> bool:
    item = local_client(stack, "dynamodb").get_item(
        TableName=stack["table"], Key={"key": {"S": key}}, ConsistentRead=True
    )
    return bool(item.get("Item", {}).get("status", {}).get("S") == "active")


def save_role(stack: dict[str, Any]) -> str:
    functions = local_client(stack, "lambda")
    config = functions.get_function_configuration(FunctionName=stack["functions"]["save_delete"])
    return str(config["Role"]).rpartition("/")[2]


def test_a_stack_never_bootstrapped_exits_3_before_any_request(stack: dict[str, Any]) -> None:
    done = run_imgcli({**stack["env"], "IMGCLI_STACK": "neverbuilt"}, "doctor", "--json")
    assert done.returncode == 3, done.stderr
    assert "bootstrap" in done.stderr
    assert done.stdout == ""


def test_a_local_cloud_on_another_port_is_a_problem_and_nothing_is_started(
    stack: dict[str, Any],
) -> None:
    port = free_port()
    done = run_imgcli({**stack["env"], "IMGCLI_LOCAL_PORT": str(port)}, "doctor", "--json")
    assert done.returncode == 1, done.stderr
    checks = {check["name"]: check for check in json.loads(done.stdout)["checks"]}
    local = checks.pop("local cloud")
    assert local["status"] == "problem"
    assert f"is set to port {port}" in local["detail"]
    assert {check["status"] for check in checks.values()} == {"skipped"}
    assert nobody_listens(port)  # doctor reports; it starts no local cloud


def test_doctor_finds_drift_and_the_fixes_it_names_clear_it(stack: dict[str, Any]) -> None:
    env, s3, iam = stack["env"], local_client(stack, "s3"), local_client(stack, "iam")
    bucket = stack["bucket"]
    s3.put_object(Bucket=bucket, Key=INDEXED, Body=image_bytes("PNG", (16, 12)))
    wait_for(lambda: indexed(stack, INDEXED), "the first image indexed")

    code, checks, document = doctor(stack)
    assert code == 0, checks
    assert document["healthy"] is True
    assert {name: check["status"] for name, check in checks.items()} == dict.fromkeys(checks, "ok")
    assert "account" in checks["credentials"]["detail"]
    assert "1 key compared" in checks["index"]["detail"]

    role = save_role(stack)
    deny = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Action": "dynamodb:PutItem", "Resource": "*"}],
    }
    iam.put_role_policy(RoleName=role, PolicyName=DENY, PolicyDocument=json.dumps(deny))
    s3.put_object(Bucket=bucket, Key=FAILED, Body=image_bytes("PNG", (8, 8)))
    wait_for(lambda: failed_queue_depth(stack)[0] == 1, "the failed event in the failed queue")
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})
    s3.put_object(Bucket=bucket, Key=UNNOTIFIED, Body=image_bytes("JPEG", (20, 10)))
    s3.delete_object(Bucket=bucket, Key=INDEXED)

    code, checks, document = doctor(stack)
    assert code == 1, checks
    assert document["healthy"] is False
    resources = checks["resources"]
    assert resources["status"] == "problem"
    assert "create bucket notification" in resources["detail"]
    assert f"update role {role}: policies" in resources["detail"]  # the deny policy
    assert "bootstrap" in resources["fix"]
    index = checks["index"]
    assert index["status"] == "problem"
    assert "2 missing, 0 stale, 1 orphaned" in index["detail"]
    assert "reconcile" in index["fix"]
    failed = checks["failed events"]
    assert failed["status"] == "warning"
    assert failed["detail"].startswith("1 failed event in the queue; the oldest is ")
    assert "events replay" in failed["fix"]
    errors = checks["function errors"]
    assert errors["status"] == "warning"
    assert "AccessDenied" in errors["detail"]
    assert failed_queue_depth(stack)[0] == 1  # doctor read the queue and left the message visible

    table = run_imgcli(env, "doctor")
    assert table.returncode == 1
    assert "notification" in table.stdout and "reconcile" in table.stdout
    assert "doctor found 2 problems: resources, index" in table.stderr

    repaired = run_imgcli(env, "bootstrap")
    assert repaired.returncode == 0, repaired.stderr
    # Bootstrap puts the role's policies back as it makes them: the deny policy is gone.
    assert DENY not in iam.list_role_policies(RoleName=role)["PolicyNames"]
    code, checks, _ = doctor(stack)
    assert code == 1, checks
    assert checks["resources"]["status"] == "ok"
    assert checks["index"]["status"] == "problem"  # bootstrap does not index
    assert "reconcile (not bootstrap" in checks["index"]["fix"]
    replayed = run_imgcli(env, "events", "replay")
    assert replayed.returncode == 0, replayed.stderr
    reconciled = run_imgcli(env, "reconcile")
    assert reconciled.returncode == 0, reconciled.stderr

    code, checks, document = doctor(stack)
    assert code == 0, checks
    assert document["healthy"] is True
    statuses = {name: check["status"] for name, check in checks.items()}
    # The errors of the last hour stay in the logs: a warning, which keeps exit code 0.
    assert statuses == {**dict.fromkeys(checks, "ok"), "function errors": "warning"}
    assert "0 missing, 0 stale, 0 orphaned of 2 keys compared" in checks["index"]["detail"]
    told = run_imgcli(env, "doctor")
    assert told.returncode == 0, told.stderr
    assert "stack 'doctor' is healthy (1 warning: see their fixes)" in told.stderr
