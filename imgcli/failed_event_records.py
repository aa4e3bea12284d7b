"""Reading the records Lambda leaves in the stack's failed-events queue.

When an asynchronous invocation of the save function fails past its retries (or waits past
its maximum age), Lambda sends an *invocation record* to the function's on-failure
destination, an SQS queue (AWS, "Capturing records of Lambda asynchronous invocations"):
``version``, ``timestamp``, ``requestContext`` (``requestId``, ``functionArn``,
``condition``: ``RetriesExhausted`` or ``EventAgeExceeded``, ``approximateInvokeCount``),
``requestPayload`` (the original event), and, when the function ran, ``responseContext``
(``statusCode``, ``executedVersion``, ``functionError``) and ``responsePayload`` (the
error: ``errorMessage``, usually ``errorType``). The local cloud writes the same shape
(``imgcli.localcloud.async_invoke``).

Decisions:

* A message is a destination record only if its body is a JSON object with a
  ``requestContext`` object and a ``requestPayload``: replaying is re-invoking the function
  with ``requestPayload``, so without it there is nothing to replay. Anything else (a
  message someone sent by hand, a record cut short) is ``NotADestinationRecord`` with the
  reason, and the commands report it and leave it.
* The keys are read from ``requestPayload`` with the save function's own reader
  (``imgcli.lambdas.event_shapes``, on ``imgcli.lambdas.s3_events``), so a key is decoded
  exactly as the function decodes it, and an S3 event wrapped in SQS or SNS shows its keys
  too. A record the reader cannot read adds no key.
* The error shown is ``responsePayload``'s ``errorType`` and ``errorMessage``; a record
  without a response (``EventAgeExceeded``: the function never ran) shows its condition.

This module is pure: no AWS client, no output.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from imgcli.lambdas.event_shapes import S3Record, read_invocation
from imgcli.lambdas.s3_events import MalformedRecord, read_record

#: A message body longer than this is not read as a record (SQS's own limit is 256 KiB;
#: a record is at most that, so anything larger did not come from Lambda).
MAX_BODY_CHARS: Final = 1024 * 1024
#: An error message is shown at most this long; the rest is in the queue.
MAX_ERROR_CHARS: Final = 500


class NotADestinationRecord(ValueError):
    """A queue message that is not a Lambda invocation record: nothing to replay."""


@dataclass(frozen=True)
class FailedInvocation:
    """One invocation record: which event failed, how, and the event itself."""

    request_payload: Any
    keys: tuple[str, ...]
    event_time: str | None
    condition: str | None
    error_type: str | None
    error_message: str | None
    attempts: int | None
    function_arn: str | None
    request_id: str | None
    recorded_at: str | None

    @property
    def function_name(self) -> str | None:
        """The function's name from ``functionArn`` (``...:function:NAME[:QUALIFIER]``)."""
        if not self.function_arn:
            return None
        parts = self.function_arn.split(":")
        if len(parts) >= 7 and parts[5] == "function":
            return parts[6]
        return None

    @property
    def error(self) -> str:
        """One line for people: ``Type: message``, or the condition when nothing ran."""
        if self.error_type and self.error_message:
            return f"{self.error_type}: {self.error_message}"
        return self.error_type or self.error_message or self.condition or "unknown"


def read_destination_record(body: str) -> FailedInvocation:
    """The invocation record in an SQS message body; ``NotADestinationRecord`` if it is not
    one."""
    if len(body) > MAX_BODY_CHARS:
        raise NotADestinationRecord(f"the body is {len(body):,} characters, too long")
    try:
        record = json.loads(body)
    except ValueError as exc:
        raise NotADestinationRecord(f"the body is not JSON ({exc})") from None
    if not isinstance(record, Mapping):
        raise NotADestinationRecord("the body is not a JSON object")
    context = record.get("requestContext")
    if not isinstance(context, Mapping):
        raise NotADestinationRecord("it has no requestContext")
    if "requestPayload" not in record or record["requestPayload"] is None:
        raise NotADestinationRecord("it has no requestPayload (the original event)")
    payload = record["requestPayload"]
    response = record.get("responsePayload")
    error_type, error_message = _error(response)
    keys, event_time = _keys_and_time(payload)
    return FailedInvocation(
        request_payload=payload,
        keys=keys,
        event_time=event_time,
        condition=_text(context.get("condition")),
        error_type=error_type,
        error_message=error_message,
        attempts=_count(context.get("approximateInvokeCount")),
        function_arn=_text(context.get("functionArn")),
        request_id=_text(context.get("requestId")),
        recorded_at=_text(record.get("timestamp")),
    )


def _error(response: Any) -> tuple[str | None, str | None]:
    if isinstance(response, Mapping):
        return _text(response.get("errorType")), _short(_text(response.get("errorMessage")))
    if isinstance(response, str) and response:
        return None, _short(response)
    return None, None


def _keys_and_time(payload: Any) -> tuple[tuple[str, ...], str | None]:
    """The decoded keys of every S3 record the event carries, and its first event time."""
    keys: dict[str, None] = {}
    event_time: str | None = None
    for unit in read_invocation(payload).units:
        if not isinstance(unit, S3Record):
            continue
        item = read_record(unit.record, unit.index)
        if isinstance(item, MalformedRecord):
            continue
        keys[item.key] = None
        if event_time is None and item.event_time:
            event_time = item.event_time
    return tuple(keys), event_time


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _short(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_ERROR_CHARS:
        return text
    return text[:MAX_ERROR_CHARS] + "..."


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value
