"""Replaying the journal gives moto's state back with the ids and times it had.

Requests go through the journal layer to moto over HTTP; moto's memory is wiped (the
crash); the journal is replayed; the same clients must find the same S3 version ids,
ETags and LastModified, the same HTTP API id, multipart upload id, SQS message id and
Lambda revision id. Without ``replay_determinism``'s hooks the same replay draws new
ids, which the last test shows.
"""

from __future__ import annotations

import io
import random
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imgcli.localcloud import MotoInternalsChanged, replay_determinism
from tests.journal_server import client, journaled_moto, moto_app, recovered, serving, wipe_moto

ROLE_POLICY = '{"Version":"2012-10-17","Statement":[]}'


@pytest.fixture
def determinism() -> Iterator[None]:
    uninstall = replay_determinism.install()
    yield
    uninstall()
    wipe_moto()


def function_zip() -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("h.py", "def handler(event, context):\n    return event\n")
    return archive.getvalue()


def make_changes(endpoint: str) -> dict[str, Any]:
    """One of each kind of id the stack and its clients hold; what the clients saw."""
    s3, sqs = client("s3", endpoint), client("sqs", endpoint)
    s3.create_bucket(Bucket="replayed")
    s3.put_bucket_versioning(Bucket="replayed", VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket="replayed", Key="a b.jpg", Body=b"first")
    second = s3.put_object(Bucket="replayed", Key="a b.jpg", Body=b"second")
    s3.put_object(Bucket="replayed", Key="gone.jpg", Body=b"gone")
    marker = s3.delete_object(Bucket="replayed", Key="gone.jpg")
    upload = s3.create_multipart_upload(Bucket="replayed", Key="big.jpg")["UploadId"]
    part = s3.upload_part(
        Bucket="replayed", Key="big.jpg", UploadId=upload, PartNumber=1, Body=b"p" * 1024
    )
    queue = sqs.create_queue(QueueName="failed")["QueueUrl"]
    message = sqs.send_message(QueueUrl=queue, MessageBody="record")["MessageId"]
    api_id = client("apigatewayv2", endpoint).create_api(Name="imgcli", ProtocolType="HTTP")[
        "ApiId"
    ]
    role = client("iam", endpoint).create_role(
        RoleName="save", AssumeRolePolicyDocument=ROLE_POLICY
    )["Role"]["Arn"]
    functions = client("lambda", endpoint)
    functions.create_function(
        FunctionName="save",
        Runtime="python3.11",
        Role=role,
        Handler="h.handler",
        Code={"ZipFile": function_zip()},
    )
    return {
        "versions": [(first["VersionId"], first["ETag"]), (second["VersionId"], second["ETag"])],
        "last_modified": s3.head_object(Bucket="replayed", Key="a b.jpg")["LastModified"],
        "marker": marker["VersionId"],
        "upload": (upload, part["ETag"]),
        "queue": (queue, message),
        "api_id": api_id,
        "function": functions.get_function(FunctionName="save")["Configuration"],
    }


def what_moto_holds(endpoint: str, saw: dict[str, Any]) -> dict[str, Any]:
    s3, sqs = client("s3", endpoint), client("sqs", endpoint)
    listed = s3.list_object_versions(Bucket="replayed")
    upload, part_etag = saw["upload"]
    s3.complete_multipart_upload(  # the upload id a client holds still works
        Bucket="replayed",
        Key="big.jpg",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part_etag}]},
    )
    queue, _ = saw["queue"]
    received = sqs.receive_message(QueueUrl=queue)["Messages"][0]["MessageId"]
    apis = client("apigatewayv2", endpoint).get_apis()["Items"]
    function = client("lambda", endpoint).get_function(FunctionName="save")
    return {
        "versions": [
            (v["VersionId"], v["ETag"])
            for v in reversed(listed["Versions"])
            if v["Key"] == "a b.jpg"
        ],
        "last_modified": s3.head_object(Bucket="replayed", Key="a b.jpg")["LastModified"],
        "marker": listed["DeleteMarkers"][0]["VersionId"],
        "upload": saw["upload"],
        "queue": (queue, received),
        "api_id": apis[0]["ApiId"],
        "function": function["Configuration"],
    }


def test_a_replay_gives_back_the_same_ids_and_times(determinism: None, tmp_path: Path) -> None:
    with journaled_moto(tmp_path) as moto:
        saw = make_changes(moto.endpoint)
    wipe_moto()

    recovery = recovered(tmp_path, tmp_path / "state.pickle")

    assert (recovery.replayed, recovery.diverged, recovery.problems) == (13, 0, [])
    with serving(moto_app()) as endpoint:
        assert what_moto_holds(endpoint, saw) == saw


def test_without_the_hooks_a_replay_draws_new_ids(tmp_path: Path) -> None:
    try:
        with journaled_moto(tmp_path) as moto:
            s3 = client("s3", moto.endpoint)
            s3.create_bucket(Bucket="replayed")
            s3.put_bucket_versioning(
                Bucket="replayed", VersioningConfiguration={"Status": "Enabled"}
            )
            put = s3.put_object(Bucket="replayed", Key="a.jpg", Body=b"a")
        wipe_moto()
        recovered(tmp_path, tmp_path / "state.pickle")
        with serving(moto_app()) as endpoint:
            head = client("s3", endpoint).head_object(Bucket="replayed", Key="a.jpg")
        assert head["ETag"] == put["ETag"]
        assert head["VersionId"] != put["VersionId"]
    finally:
        wipe_moto()


def test_other_threads_draw_from_moto_s_own_generator(determinism: None) -> None:
    from moto.moto_api._internal import mock_random

    mock_random.seed(5)
    expected = random.Random(5).getrandbits(64)
    inside, outside = threading.Event(), threading.Event()
    drawn: list[int] = []

    def draw_outside() -> None:
        inside.wait()
        drawn.append(mock_random.getrandbits(64))
        outside.set()

    thread = threading.Thread(target=draw_outside)
    thread.start()
    with replay_determinism.recording():
        inside.set()
        outside.wait()
        mock_random.getrandbits(64)  # this thread's own draws do not touch the shared one
    thread.join()
    assert drawn == [expected]


def test_a_recording_notes_the_clock_and_a_replay_reads_it_back(determinism: None) -> None:
    from moto.core.utils import unix_time, utcnow
    from moto.moto_api._internal import mock_random

    with replay_determinism.recording() as draws:
        first, second = utcnow(), unix_time()
        drawn = mock_random.uuid4()
    with replay_determinism.replaying(draws):
        assert (utcnow(), unix_time(), mock_random.uuid4()) == (first, second, drawn)
        assert unix_time() == second  # asked more often than recorded: the last reading
    assert len(draws.clock) == 2


def test_moto_internals_are_where_the_replay_expects_them() -> None:
    replay_determinism.check_moto_internals()


def test_a_moved_moto_internal_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.s3 import models

    monkeypatch.setattr(models, "random", random.Random())
    with pytest.raises(MotoInternalsChanged, match=r"moto\.s3\.models no longer draws"):
        replay_determinism.check_moto_internals()
