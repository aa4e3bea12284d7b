"""Crash test of the local cloud, as databases are tested: kill it, restart, compare.

A real server process with a bootstrapped stack (its bucket's events go to the save
function). For each seed, plain boto3 threads upload, overwrite and delete images for a
moment; the server's process group is killed with SIGKILL at a moment the seed picks;
the server is started again. Then every operation the client saw succeed must be there:
each acknowledged PUT's version with its ETag, each acknowledged DELETE's marker, and
each key's current state is its last acknowledged operation's, or that of the one
operation on it still in flight at the kill (which may or may not have landed: its
client never heard). Finally the index, with no user action, converges to the bucket.

Each key belongs to one thread, so its operations are sequential and at most one is in
flight at the kill. The seed is in the test's id: a failure replays with the same one.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError, ClientError

from imgcli.config import LOCAL_REGION
from imgcli.gallery_api import GalleryApi
from imgcli.localcloud import process
from tests.images import noisy_jpeg
from tests.localstack import KEY, SECRET, bootstrap, local_cloud_env

SEEDS = (1, 2, 3)
THREADS = 6
KEYS_PER_THREAD = 3
#: The kill comes after this many acknowledged operations (the seed picks how many).
KILL_AFTER = (30, 250)
LOAD_TIMEOUT_S = 30.0
INDEX_TIMEOUT_S = 30.0


@dataclass
class Operation:
    kind: str  # "put" or "delete"
    etag: str | None = None  # a PUT's body's, known before it is sent
    version_id: str | None = None  # from the response: only once acknowledged
    acknowledged: bool = False


@dataclass
class KeyHistory:
    operations: list[Operation] = field(default_factory=list)

    def last_acknowledged(self) -> Operation | None:
        done = [op for op in self.operations if op.acknowledged]
        return done[-1] if done else None

    def in_flight(self) -> Operation | None:
        last = self.operations[-1] if self.operations else None
        return last if last is not None and not last.acknowledged else None


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Any]]:
    with local_cloud_env(tmp_path_factory.mktemp("crash"), "crash") as env:
        yield env, bootstrap(env)


def s3_client(stack: dict[str, Any]) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=stack["endpoint_url"],
        region_name=LOCAL_REGION,
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
        # One attempt: a retry could land after the restart and blur what was in flight.
        config=Config(
            retries={"total_max_attempts": 1},
            connect_timeout=2,
            read_timeout=10,
            max_pool_connections=THREADS * 2,
        ),
    )


class Killer:
    """Kills the server's process group right after the ``after``-th acknowledgement."""

    def __init__(self, pid: int, after: int) -> None:
        self.pid = pid
        self.after = after
        self.acknowledged = 0
        self.stop = threading.Event()
        self._lock = threading.Lock()

    def acknowledge(self, operation: Operation) -> None:
        with self._lock:
            operation.acknowledged = True
            self.acknowledged += 1
            if self.acknowledged == self.after:
                os.killpg(self.pid, signal.SIGKILL)
                self.stop.set()


def run_load(
    s3: Any, bucket: str, prefix: str, rng: random.Random, killer: Killer
) -> dict[str, KeyHistory]:
    histories: dict[str, KeyHistory] = {}
    bodies = [noisy_jpeg(24, 24, quality=80) for _ in range(THREADS * 4)]
    plans = []
    for number in range(THREADS):
        keys = [f"{prefix}t{number}-k{n}.jpg" for n in range(KEYS_PER_THREAD)]
        histories.update((key, KeyHistory()) for key in keys)
        plans.append((keys, random.Random(rng.random())))

    errors: list[BaseException] = []

    def work(keys: list[str], choices: random.Random) -> None:
        try:
            operate(keys, choices)
        except BaseException as error:  # a bug in the test, not the server going away
            errors.append(error)
            raise

    def operate(keys: list[str], choices: random.Random) -> None:
        while not killer.stop.is_set():
            key = choices.choice(keys)
            history = histories[key]
            if choices.random() < 0.7:
                body = choices.choice(bodies)
                operation = Operation("put", etag=f'"{hashlib.md5(body).hexdigest()}"')
                history.operations.append(operation)
                try:
                    response = s3.put_object(Bucket=bucket, Key=key, Body=body)
                except BotoCoreError:  # the server is gone: this one stays in flight
                    return
                assert response["ETag"] == operation.etag
                operation.version_id = response["VersionId"]
            else:
                operation = Operation("delete")
                history.operations.append(operation)
                try:
                    response = s3.delete_object(Bucket=bucket, Key=key)
                except BotoCoreError:
                    return
                # The delete marker's; moto makes none for a key that never existed.
                operation.version_id = response.get("VersionId")
            killer.acknowledge(operation)

    workers = [threading.Thread(target=work, args=plan) for plan in plans]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=LOAD_TIMEOUT_S)
    assert errors == []
    return histories


def current(s3: Any, bucket: str, key: str) -> tuple[str, str] | None:
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response["Error"]["Code"] in ("404", "NoSuchKey"):
            return None
        raise
    return head["ETag"], head["VersionId"]


def allowed_states(history: KeyHistory) -> list[tuple[str, str | None] | None]:
    """What the key may hold now: after its last acknowledged op, or its op in flight."""
    states: list[tuple[str, str | None] | None] = []
    for operation in (history.last_acknowledged(), history.in_flight()):
        if operation is None:
            continue
        states.append(
            (str(operation.etag), operation.version_id) if operation.kind == "put" else None
        )
    if history.last_acknowledged() is None:
        states.append(None)  # nothing acknowledged: it may never have existed
    return states


def matches(state: tuple[str, str] | None, allowed: tuple[str, str | None] | None) -> bool:
    if state is None or allowed is None:
        return state is allowed
    etag, version_id = allowed
    # An operation in flight has no version id the client knows of.
    return state[0] == etag and (version_id is None or state[1] == version_id)


def versions(s3: Any, bucket: str, prefix: str) -> tuple[dict[str, str], set[str]]:
    """Every object version (id → ETag) and every delete marker id under ``prefix``."""
    found: dict[str, str] = {}
    markers: set[str] = set()
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        found.update((v["VersionId"], v["ETag"]) for v in page.get("Versions", []))
        markers.update(m["VersionId"] for m in page.get("DeleteMarkers", []))
    return found, markers


def indexed(stack: dict[str, Any], prefix: str) -> dict[str, str]:
    api = GalleryApi(stack["api_url"], Credentials(KEY, SECRET), LOCAL_REGION)
    return {item["key"]: item["etag"] for item in api.list_images(prefix=prefix)}


def in_bucket(s3: Any, bucket: str, prefix: str) -> dict[str, str]:
    listed: dict[str, str] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        listed.update((o["Key"], o["ETag"].strip('"')) for o in page.get("Contents", []))
    return listed


def wait_for_index(
    stack: dict[str, Any], s3: Any, prefix: str
) -> tuple[dict[str, str], dict[str, str]]:
    deadline = time.monotonic() + INDEX_TIMEOUT_S
    while True:
        bucket_state = in_bucket(s3, stack["bucket"], prefix)
        index_state = {k: v.strip('"') for k, v in indexed(stack, prefix).items()}
        if index_state == bucket_state or time.monotonic() > deadline:
            return bucket_state, index_state
        time.sleep(0.2)


@pytest.mark.parametrize("seed", SEEDS)
def test_what_was_acknowledged_survives_kill_9(
    cloud: tuple[dict[str, str], Any], seed: int
) -> None:
    env, stack = cloud
    port = int(env["IMGCLI_LOCAL_PORT"])
    server = process.status(port, env)
    assert server.running and server.pid is not None
    rng = random.Random(seed)
    prefix = f"crash{seed}/"
    s3, bucket = s3_client(stack), stack["bucket"]
    killer = Killer(server.pid, after=rng.randint(*KILL_AFTER))
    histories = run_load(s3, bucket, prefix, rng, killer)
    assert killer.stop.is_set(), f"seed {seed}: the load stopped before the kill"
    acknowledged = sum(op.acknowledged for h in histories.values() for op in h.operations)
    in_flight = sum(h.in_flight() is not None for h in histories.values())
    print(f"seed {seed}: killed after {killer.after} acknowledgements, {in_flight} in flight")

    process.start(port, env)

    s3 = s3_client(stack)
    all_versions, markers = versions(s3, bucket, prefix)
    lost = [
        (key, op.kind, op.version_id)
        for key, history in histories.items()
        for op in history.operations
        if op.acknowledged
        and (
            (op.kind == "put" and all_versions.get(str(op.version_id)) != op.etag)
            or (op.kind == "delete" and op.version_id and op.version_id not in markers)
        )
    ]
    assert lost == [], f"seed {seed}: {len(lost)} of {acknowledged} acknowledged operations lost"
    states = {key: current(s3, bucket, key) for key in histories}
    wrong = {
        key: state
        for key, state in states.items()
        if not any(matches(state, allowed) for allowed in allowed_states(histories[key]))
    }
    assert wrong == {}, f"seed {seed}: keys whose current state no client operation explains"
    bucket_state, index_state = wait_for_index(stack, s3, prefix)
    assert bucket_state, f"seed {seed}: nothing left to index"
    assert index_state == bucket_state, f"seed {seed}: the index did not converge"
