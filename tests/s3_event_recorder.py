"""What the local cloud's S3 event test files share: a ``deliver`` that records, and the
bucket notification configurations that route events to it.

``recording`` installs ``imgcli.localcloud.s3_events`` with a ``Recorder`` for the length
of a block; the recorder reads the events it is handed back through ``lambdas.s3_events``,
the parser the save function itself uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from imgcli.lambdas.s3_events import ObjectEvent, object_events
from imgcli.localcloud import s3_events

ACCOUNT = "123456789012"
FUNCTION_ARN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:imgcli-save"
OTHER_FUNCTION_ARN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:imgcli-other"
ALL_OBJECT_EVENTS = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]


class Recorder:
    """The ``deliver`` callback: keeps every (function ARN, event) it is handed."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, function_arn: str, event: dict[str, Any]) -> None:
        self.deliveries.append((function_arn, event))

    def records(self) -> list[dict[str, Any]]:
        return [record for _, event in self.deliveries for record in event["Records"]]

    def events(self) -> list[ObjectEvent]:
        parsed = [item for _, event in self.deliveries for item in object_events(event)]
        assert all(isinstance(item, ObjectEvent) for item in parsed), parsed
        return [item for item in parsed if isinstance(item, ObjectEvent)]

    def names(self) -> list[str]:
        return [event.event_name for event in self.events()]

    def clear(self) -> None:
        self.deliveries.clear()


@contextmanager
def recording() -> Iterator[Recorder]:
    """A ``Recorder`` installed as the local cloud's ``deliver`` until the block ends."""
    recorder = Recorder()
    uninstall = s3_events.install(recorder)
    try:
        yield recorder
    finally:
        uninstall()


def configure(s3: Any, bucket: str, *configurations: dict[str, Any]) -> None:
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={"LambdaFunctionConfigurations": list(configurations)},
    )


def lambda_target(
    events: list[str] | None = None,
    *,
    arn: str = FUNCTION_ARN,
    config_id: str = "imgcli-index",
    prefix: str | None = None,
    suffix: str | None = None,
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "Id": config_id,
        "LambdaFunctionArn": arn,
        "Events": events or ALL_OBJECT_EVENTS,
    }
    # Lower-case rule names: moto answers 500 to "Prefix" (docs/local-cloud.md).
    rules = [
        {"Name": name, "Value": value} for name, value in [("prefix", prefix), ("suffix", suffix)]
    ]
    rules = [rule for rule in rules if rule["Value"] is not None]
    if rules:
        config["Filter"] = {"Key": {"FilterRules": rules}}
    return config


def unquoted(etag: str) -> str:
    return etag.strip('"')
