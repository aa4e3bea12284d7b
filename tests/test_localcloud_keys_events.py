"""The S3 event for a key with control characters, and the stack indexing it.

Issue 12: "a file name with a newline fails as PutObject failed (404)". With
``moto_s3_keys`` the object is stored, and its event carries the key form-encoded as S3
writes it (``a%0Ab.jpg``; ``+`` for a space): checked on the records the local cloud hands
its functions (the gate on a loopback port, ``tests.s3_event_recorder``), and end to end
on a bootstrapped local stack, whose save function decodes the key, reads the object as
its role and indexes it under exactly that key.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote_plus

import pytest

from imgcli.localcloud import moto_s3_keys
from tests.gate_harness import client, serving_gate
from tests.images import image_bytes
from tests.localstack import bootstrap, local_client, local_cloud_env
from tests.s3_event_recorder import configure, lambda_target, recording

CONTROL = [chr(code) for code in [*range(0x01, 0x20), 0x7F]]


def test_each_event_carries_the_key_form_encoded() -> None:
    keys = [f"ctl/{ord(c):02x}-a{c}b c+.jpg" for c in CONTROL]
    uninstall = moto_s3_keys.install()
    try:
        with serving_gate() as server, recording() as recorder:
            s3 = client(server, "s3")
            s3.create_bucket(Bucket="keys-events")
            configure(s3, "keys-events", lambda_target())
            for key in keys:
                s3.put_object(Bucket="keys-events", Key=key, Body=b"x")
                s3.delete_object(Bucket="keys-events", Key=key)
            records = recorder.records()
            events = recorder.events()
    finally:
        uninstall()

    sent = [record["s3"]["object"]["key"] for record in records]
    assert sent == [quote_plus(key, safe="/") for key in keys for _ in ("put", "delete")]
    assert "ctl/0a-a%0Ab+c%2B.jpg" in sent
    assert [event.key for event in events] == [key for key in keys for _ in ("put", "delete")]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with local_cloud_env(tmp_path_factory.mktemp("keys-events"), "keys-events") as env:
        yield bootstrap(env)


def test_a_stack_indexes_keys_with_control_characters(stack: dict[str, Any]) -> None:
    s3, dynamodb = local_client(stack, "s3"), local_client(stack, "dynamodb")
    keys = ["trips/a\nb.png", "trips/esc\x1b[31m red.png", "trips/soh\x01+tab\t.png"]
    for key in keys:
        s3.put_object(Bucket=stack["bucket"], Key=key, Body=image_bytes("PNG", (8, 6)))

    def statuses() -> dict[str, str]:
        found: dict[str, str] = {}
        for key in keys:
            item = dynamodb.get_item(TableName=stack["table"], Key={"key": {"S": key}})
            if "Item" in item:
                found[key] = item["Item"]["status"]["S"]
        return found

    deadline = time.monotonic() + 60
    while len(statuses()) < len(keys) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert statuses() == dict.fromkeys(keys, "active")
