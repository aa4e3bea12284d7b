"""The repair invocation end to end: ``lambda invoke`` on a bootstrapped local stack.

The deployed function, under its own role, repairs an image whose record was lost and a
record whose image was deleted behind the index, refuses another bucket, and fails a
malformed request with a clear error.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from imgcli.lambdas.repair import repair_request
from tests.images import image_bytes
from tests.localstack import bootstrap, local_client, local_cloud_env


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with local_cloud_env(tmp_path_factory.mktemp("repair"), "repair") as env:
        yield bootstrap(env)


def invoke(stack: dict[str, Any], payload: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    answer = local_client(stack, "lambda").invoke(
        FunctionName=stack["functions"]["save_delete"], Payload=json.dumps(payload)
    )
    return answer, json.loads(answer["Payload"].read())


def test_lambda_invoke_repairs_the_keys_it_is_given(stack: dict[str, Any]) -> None:
    s3, dynamodb = local_client(stack, "s3"), local_client(stack, "dynamodb")
    table, bucket = stack["table"], stack["bucket"]

    def item(key: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = dynamodb.get_item(
            TableName=table, Key={"key": {"S": key}}, ConsistentRead=True
        ).get("Item")
        return found

    s3.put_object(Bucket=bucket, Key="lost record.png", Body=image_bytes("PNG", (12, 8)))
    deadline = time.monotonic() + 30
    while item("lost record.png") is None:  # indexed by its event first
        assert time.monotonic() < deadline, "the upload was not indexed within 30 s"
        time.sleep(0.1)
    dynamodb.delete_item(TableName=table, Key={"key": {"S": "lost record.png"}})
    orphan = {"key": {"S": "orphan.jpg"}, "status": {"S": "active"}, "sequencer": {"S": "F" * 64}}
    dynamodb.put_item(TableName=table, Item=orphan)

    keys = ["lost record.png", "orphan.jpg", "never.gif"]
    answer, payload = invoke(stack, repair_request(bucket, keys))
    assert "FunctionError" not in answer, payload
    assert payload == {
        "repaired": {
            "lost record.png": "indexed",
            "orphan.jpg": "removed",
            "never.gif": "unchanged",
        }
    }
    assert item("lost record.png")["width"] == {"N": "12"}  # type: ignore[index]
    assert item("orphan.jpg")["status"] == {"S": "deleted"}  # type: ignore[index]

    answer, payload = invoke(stack, repair_request(bucket, keys))
    assert set(payload["repaired"].values()) == {"unchanged"}

    answer, payload = invoke(stack, repair_request("someone-elses", ["lost record.png"]))
    assert "FunctionError" not in answer, payload
    assert payload["repaired"] == {} and "someone-elses" in payload["refused"]

    answer, payload = invoke(stack, repair_request(bucket, [f"{n}.png" for n in range(101)]))
    assert answer["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "InvalidRepairRequest"
    assert "at most 100" in payload["errorMessage"]
