"""The functions' logs, read back from CloudWatch Logs for ``imgcli logs``.

Lambda writes each function's output to the log group ``/aws/lambda/<name>``, a stream per
execution environment; the local cloud writes its functions' output the same way
(``imgcli.localcloud.function_logs``), so one reader serves both targets through the Logs
API. Decisions:

* **FilterLogEvents, paginated, one group per function.** It searches every stream of a
  group by time, as ``aws logs tail`` reads; GetLogEvents would need the streams listed
  first. Two functions are merged by timestamp as their pages arrive (``heapq.merge``), so
  memory stays one page per group however long the time range.
* **A group that does not exist is no error**: a function that never ran (or a role that
  may not create its group) has nothing to show.
* **Following** re-reads from the newest timestamp seen, less ``FOLLOW_OVERLAP_MS``
  (events can be ingested a little after their timestamp, and the local cloud stamps a
  whole invocation when it ends), and drops the events already shown by their identity
  (function, stream, event id): no line twice, none lost to a late arrival within the
  overlap. Ids older than the overlap are forgotten, so memory stays bounded. The poll
  interval is ``POLL_INTERVAL_S``; ``sleep`` is injected, so tests never wait.
* **Times.** ``--since`` takes ``30s``, ``10m``, ``2h``, ``1d``, ``1w`` (a number and one
  unit, as ``aws logs tail`` does) or an ISO 8601 time; an ISO time without a zone is UTC,
  the zone every time here is shown in.
* **Records.** A message that is a JSON object (the functions' lines, ``lambdas/logs.py``)
  is parsed into ``LogEvent.record``; anything else (Lambda's START, END and REPORT lines,
  a traceback) stays text. Messages lose one trailing newline (Lambda ends each with one).
  ``LogEvent.is_error`` tells the lines that report a failure (for ``doctor``).
"""

from __future__ import annotations

import heapq
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from imgcli.errors import UsageError

DEFAULT_SINCE: Final = "10m"
POLL_INTERVAL_S: Final = 2.0
FOLLOW_OVERLAP_MS: Final = 5_000
#: The functions by the names people give them, and the stack description's key for each.
FUNCTIONS: Final = {"save": "save_delete", "retrieve": "retrieve"}

_RELATIVE: Final = re.compile(r"(\d+)([smhdw])")
#: What Lambda's own lines about a failed invocation contain (timeouts, runtime exits).
_FAILURE_MARKERS: Final = (
    "Task timed out after ",
    "Runtime exited with error",
    "Runtime.ExitError",
)
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def log_group(function_name: str) -> str:
    """Lambda's log group for a function."""
    return f"/aws/lambda/{function_name}"


def since_millis(text: str, now: datetime) -> int:
    """``--since``'s value as epoch milliseconds: ``30s``, ``10m``, ``2h``, ``1d``, ``1w``
    before ``now``, or an ISO 8601 time (UTC unless it names a zone)."""
    relative = _RELATIVE.fullmatch(text.strip())
    if relative is not None:
        amount, unit = relative.groups()
        start = now - timedelta(**{_UNITS[unit]: int(amount)})
    else:
        try:
            start = datetime.fromisoformat(text.strip())
        except ValueError:
            raise UsageError(
                f"--since {text!r} is neither a duration nor an ISO time",
                hint="give a number and one unit (30s, 10m, 2h, 1d) or a time "
                "such as 2025-01-31T12:00:00Z",
            ) from None
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
    return int(start.timestamp() * 1000)


def shown_time(timestamp_ms: int) -> str:
    """Epoch milliseconds as ISO 8601 in UTC, to the millisecond (``...T12:00:00.123Z``)."""
    moment = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{timestamp_ms % 1000:03d}Z"


@dataclass(frozen=True)
class LogEvent:
    """One line of a function's log: when, which function (``save``/``retrieve``), which
    stream, the text, and the JSON object it holds, if it is one."""

    timestamp_ms: int
    function: str
    stream: str
    event_id: str
    message: str

    @property
    def identity(self) -> tuple[str, str, str]:
        """What tells this event from every other: its event id within its stream."""
        return (self.function, self.stream, self.event_id)

    @property
    def record(self) -> dict[str, Any] | None:
        """The message as a JSON object, or ``None`` when it is plain text."""
        if not self.message.startswith("{"):
            return None
        try:
            parsed = json.loads(self.message)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None

    @property
    def is_error(self) -> bool:
        """Whether the line reports a failure: a JSON line of level ERROR or CRITICAL, or
        what Lambda writes for an unhandled exception (``[ERROR] Type: message``), a
        timeout or a runtime that exited (``doctor``'s "recent errors")."""
        record = self.record
        if record is not None:
            return str(record.get("level", "")).upper() in ("ERROR", "CRITICAL")
        return self.message.startswith("[ERROR]") or any(
            marker in self.message for marker in _FAILURE_MARKERS
        )

    def as_json(self) -> dict[str, Any]:
        """The event for ``--json``: ``record`` only when the message is a JSON object."""
        data: dict[str, Any] = {
            "timestamp": shown_time(self.timestamp_ms),
            "function": self.function,
            "stream": self.stream,
            "message": self.message,
        }
        record = self.record
        if record is not None:
            data["record"] = record
        return data


def selected_functions(functions: Mapping[str, str], which: str | None) -> dict[str, str]:
    """``{short name: function name}`` for ``which`` (``save``, ``retrieve``, or both when
    ``None``), from a stack description's ``functions`` (keyed ``save_delete``,
    ``retrieve``); a function the description lacks is left out."""
    names = [which] if which is not None else list(FUNCTIONS)
    return {name: functions[FUNCTIONS[name]] for name in names if FUNCTIONS[name] in functions}


class FunctionLogReader:
    """Reads the log groups of ``functions`` (``{short name: function name}``) through
    ``logs``, a CloudWatch Logs client; ``sleep`` waits between polls when following;
    ``page_size`` caps each FilterLogEvents page (the service's own limit when ``None``)."""

    def __init__(
        self,
        logs: Any,
        functions: Mapping[str, str],
        *,
        sleep: Callable[[float], None] = time.sleep,
        poll_interval_s: float = POLL_INTERVAL_S,
        page_size: int | None = None,
    ) -> None:
        self._logs = logs
        self._functions = dict(functions)
        self._sleep = sleep
        self._poll_interval_s = poll_interval_s
        self._pagination = {} if page_size is None else {"PageSize": page_size}

    def read(self, start_ms: int) -> Iterator[LogEvent]:
        """Every event from ``start_ms`` on, all functions merged by time."""
        streams = [
            self._group_events(short, name, start_ms) for short, name in self._functions.items()
        ]
        return heapq.merge(*streams, key=lambda event: event.timestamp_ms)

    def follow(self, start_ms: int) -> Iterator[list[LogEvent]]:
        """Batches of new events, one per poll, forever (the caller stops on Ctrl-C); the
        first batch is everything from ``start_ms``. A poll with nothing new yields nothing."""
        shown: dict[tuple[str, str, str], int] = {}
        while True:
            batch = [event for event in self.read(start_ms) if event.identity not in shown]
            if batch:
                yield batch
                for event in batch:
                    shown[event.identity] = event.timestamp_ms
                newest = max(shown.values())
                start_ms = max(start_ms, newest - FOLLOW_OVERLAP_MS)
                shown = {key: stamp for key, stamp in shown.items() if stamp >= start_ms}
            self._sleep(self._poll_interval_s)

    def _group_events(self, short: str, function_name: str, start_ms: int) -> Iterator[LogEvent]:
        paginator = self._logs.get_paginator("filter_log_events")
        pages = paginator.paginate(
            logGroupName=log_group(function_name),
            startTime=start_ms,
            interleaved=True,
            PaginationConfig=self._pagination,
        )
        try:
            for page in pages:
                for event in page.get("events", []):
                    message = str(event.get("message", ""))
                    yield LogEvent(
                        timestamp_ms=int(event["timestamp"]),
                        function=short,
                        stream=str(event.get("logStreamName", "")),
                        event_id=str(event.get("eventId", "")),
                        message=message[:-1] if message.endswith("\n") else message,
                    )
        except self._logs.exceptions.ResourceNotFoundException:
            return  # the function never wrote a log: nothing to show


#: A JSON line's fields shown in their own columns, not as ``key=value``.
_COLUMN_FIELDS: Final = frozenset({"time", "level", "function", "message"})
_BARE_VALUE: Final = re.compile(r"[^\s\"=]+")


def readable_fields(event: LogEvent) -> list[str]:
    """The event as a person reads it, as tab-separated fields (``Output.lines`` escapes each).

    A JSON line is one field: ``time function LEVEL message key=value...`` (a value with a
    space, quote or ``=`` JSON-quoted, anything but a string as JSON). Any other line is
    shown as it is after ``time function``, its tabs kept as field separators, so Lambda's
    REPORT line reads as Lambda wrote it.
    """
    prefix = f"{shown_time(event.timestamp_ms)} {event.function}"
    record = event.record
    if record is None or not isinstance(record.get("message"), str):
        first, *rest = event.message.split("\t")
        return [f"{prefix} {first}", *rest]
    parts = [prefix, str(record.get("level") or "-"), record["message"]]
    parts += [
        f"{key}={_logfmt(value)}" for key, value in record.items() if key not in _COLUMN_FIELDS
    ]
    return [" ".join(parts)]


def _logfmt(value: Any) -> str:
    if isinstance(value, str) and _BARE_VALUE.fullmatch(value):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)
