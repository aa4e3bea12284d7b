"""S3 event delivery in the local cloud, against moto in process with real boto3 calls:
the hooks on moto's backend, matching the notification configuration, moto's own
notifier, and ``deliver`` on the request path.

Every test drives S3 the way a client would and reads the events handed to ``deliver``
back through ``lambdas.s3_events``, the parser the save function itself uses
(``tests.s3_event_recorder``). Event shapes are in ``test_localcloud_s3_event_shape.py``,
sequencers in ``test_localcloud_s3_event_sequencers.py``.
"""

from __future__ import annotations

import io
import json
import threading
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest

from imgcli.localcloud import s3_events
from tests.s3_event_recorder import (
    FUNCTION_ARN,
    OTHER_FUNCTION_ARN,
    Recorder,
    configure,
    lambda_target,
    recording,
    unquoted,
)


@pytest.fixture
def recorder(moto_aws: None) -> Iterator[Recorder]:
    with recording() as recorded:
        yield recorded


# --- moto internals and installation ------------------------------------------------------


def test_moto_internals_are_where_delivery_expects_them() -> None:
    """Fails loudly on a moto upgrade that moves a method, a parameter or the matcher."""
    s3_events.check_moto_internals()


def test_uninstall_restores_moto(moto_aws: None) -> None:
    from moto.s3 import notifications
    from moto.s3.models import S3Backend

    before = {name: getattr(S3Backend, name) for name in s3_events.WRAPPED_METHODS}
    sender = getattr(notifications, s3_events.MOTO_LAMBDA_SENDER)

    uninstall = s3_events.install(Recorder())
    assert all(getattr(S3Backend, name) is not before[name] for name in before)
    assert getattr(notifications, s3_events.MOTO_LAMBDA_SENDER) is not sender
    uninstall()
    uninstall()  # a second call is harmless

    assert {name: getattr(S3Backend, name) for name in before} == before
    assert getattr(notifications, s3_events.MOTO_LAMBDA_SENDER) is sender


def test_a_second_install_is_refused(recorder: Recorder) -> None:
    with pytest.raises(RuntimeError, match="already installed"):
        s3_events.install(Recorder())


def test_nothing_is_delivered_after_uninstall(s3_client: Any, bucket: str) -> None:
    recorder = Recorder()
    s3_events.install(recorder)()
    configure(s3_client, bucket, lambda_target())
    s3_client.put_object(Bucket=bucket, Key="a.jpg", Body=b"x")
    assert recorder.deliveries == []


# --- matching the notification configuration ----------------------------------------------


def test_prefix_and_suffix_filters_are_honoured(
    s3_client: Any, bucket: str, recorder: Recorder
) -> None:
    configure(s3_client, bucket, lambda_target(prefix="photos/", suffix=".jpg"))
    for key in ["photos/a.jpg", "photos/a.png", "other/a.jpg", "photos/deep/b c.jpg"]:
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"x")

    assert [event.key for event in recorder.events()] == ["photos/a.jpg", "photos/deep/b c.jpg"]


def test_event_type_filters_are_honoured(s3_client: Any, bucket: str, recorder: Recorder) -> None:
    configure(s3_client, bucket, lambda_target(["s3:ObjectRemoved:*"]))
    s3_client.put_object(Bucket=bucket, Key="a.jpg", Body=b"x")
    assert recorder.deliveries == []

    s3_client.delete_object(Bucket=bucket, Key="a.jpg")
    assert recorder.names() == ["ObjectRemoved:Delete"]


def test_an_exact_event_type_excludes_its_siblings(
    s3_client: Any, bucket: str, recorder: Recorder
) -> None:
    configure(s3_client, bucket, lambda_target(["s3:ObjectCreated:Copy"]))
    s3_client.put_object(Bucket=bucket, Key="a.jpg", Body=b"x")
    s3_client.copy_object(Bucket=bucket, Key="b.jpg", CopySource={"Bucket": bucket, "Key": "a.jpg"})
    assert recorder.names() == ["ObjectCreated:Copy"]


def test_each_matching_configuration_gets_its_own_event(
    s3_client: Any, bucket: str, recorder: Recorder
) -> None:
    configure(
        s3_client,
        bucket,
        lambda_target(config_id="index"),
        lambda_target(arn=OTHER_FUNCTION_ARN, config_id="thumbs", suffix=".jpg"),
    )
    s3_client.put_object(Bucket=bucket, Key="a.jpg", Body=b"x")

    assert [
        (arn, event["Records"][0]["s3"]["configurationId"]) for arn, event in recorder.deliveries
    ] == [(FUNCTION_ARN, "index"), (OTHER_FUNCTION_ARN, "thumbs")]
    sequencers = {record["s3"]["object"]["sequencer"] for record in recorder.records()}
    assert len(sequencers) == 1  # one change, one place in the key's order


def test_no_configuration_no_delivery(s3_client: Any, bucket: str, recorder: Recorder) -> None:
    s3_client.put_object(Bucket=bucket, Key="a.jpg", Body=b"x")
    s3_client.delete_object(Bucket=bucket, Key="a.jpg")
    assert recorder.deliveries == []


# --- moto's own notifier and the request path ---------------------------------------------


@pytest.fixture
def moto_lambda_invocations(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every time moto itself invokes a Lambda function (its S3 notifier's only way)."""
    from moto.awslambda.models import LambdaFunction

    calls: list[Any] = []
    original = LambdaFunction.invoke

    def counting_invoke(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LambdaFunction, "invoke", counting_invoke)
    return calls


def create_real_function(moto_aws: None) -> str:
    import boto3

    iam = boto3.client("iam", region_name="us-east-1")
    role = iam.create_role(
        RoleName="imgcli-save-role",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return None\n")
    function = boto3.client("lambda", region_name="us-east-1").create_function(
        FunctionName="imgcli-save",
        Runtime="python3.11",
        Role=role["Role"]["Arn"],
        Handler="handler.handler",
        Code={"ZipFile": code.getvalue()},
    )
    arn: str = function["FunctionArn"]
    return arn


def test_moto_own_notifier_does_not_invoke_the_function_again(
    s3_client: Any, bucket: str, moto_aws: None, moto_lambda_invocations: list[Any]
) -> None:
    arn = create_real_function(moto_aws)
    configure(s3_client, bucket, lambda_target(arn=arn))

    s3_client.put_object(Bucket=bucket, Key="before-install.jpg", Body=b"x")
    assert len(moto_lambda_invocations) >= 1, "the spy must see moto's notifier when it runs"
    moto_lambda_invocations.clear()

    recorder = Recorder()
    uninstall = s3_events.install(recorder)
    try:
        s3_client.put_object(Bucket=bucket, Key="a.jpg", Body=b"x")
        s3_client.delete_object(Bucket=bucket, Key="a.jpg")
    finally:
        uninstall()

    assert moto_lambda_invocations == []
    assert [(a, e["Records"][0]["eventName"]) for a, e in recorder.deliveries] == [
        (arn, "ObjectCreated:Put"),
        (arn, "ObjectRemoved:Delete"),
    ]


def test_a_failing_deliver_never_fails_the_s3_request(s3_client: Any, bucket: str) -> None:
    def broken(function_arn: str, event: dict[str, Any]) -> None:
        raise RuntimeError("queue is gone")

    uninstall = s3_events.install(broken)
    try:
        configure(s3_client, bucket, lambda_target())
        s3_client.put_object(Bucket=bucket, Key="a.jpg", Body=b"x")
        assert s3_client.head_object(Bucket=bucket, Key="a.jpg")["ContentLength"] == 1
    finally:
        uninstall()


def test_deliver_runs_after_the_change_and_outside_the_key_lock(
    s3_client: Any, bucket: str
) -> None:
    """``deliver`` sees the object already written, and another writer of the key can proceed."""
    seen: list[tuple[str, bool]] = []
    first_delivery = threading.Event()

    def deliver(function_arn: str, event: dict[str, Any]) -> None:
        if first_delivery.is_set():
            return  # the second writer's own event
        first_delivery.set()
        etag = s3_client.head_object(Bucket=bucket, Key="a.jpg")["ETag"]
        writer = threading.Thread(
            target=lambda: s3_client.put_object(Bucket=bucket, Key="a.jpg", Body=b"second")
        )
        writer.start()
        writer.join(timeout=10)
        seen.append((unquoted(etag), not writer.is_alive()))

    uninstall = s3_events.install(deliver)
    try:
        configure(s3_client, bucket, lambda_target())
        first = s3_client.put_object(Bucket=bucket, Key="a.jpg", Body=b"first")
    finally:
        uninstall()

    assert seen == [(unquoted(first["ETag"]), True)]
