"""What goes into the journal, and when: the WSGI layer and the event ledger.

``Journaling`` sits inside the gate, outside ``ExecuteApi`` and moto. For every request
that changes moto's state it reads the body once, runs moto under **one** global
mutation lock, and, if moto answered 2xx, appends the request (the environ moto saw, the
body as sent, the draws ``replay_determinism`` recorded, the events it caused) to the
journal *before releasing the lock*, so the journal's order is the order moto applied
the requests in. Outside the lock it waits for the group commit to cover its record;
only then does the response leave. A request moto refused changed nothing and is not
journaled.

**Which requests.** POST, PUT, DELETE and PATCH, except:

* JSON- and query-protocol reads sent as POST (an ``X-Amz-Target`` or ``Action`` that
  starts with Get, Describe, List, Query, Scan, BatchGet or TransactGet);
* Lambda's Invoke (``/functions/<name>/invocations`` and its older and streaming forms):
  a synchronous invocation runs code that calls back into the server, which would
  deadlock under the lock, and a replay must never run code again. An ``Event``
  invocation's event is journaled by the ``EventLedger`` instead;
* the HTTP API (``/_api/...``, served by ``ExecuteApi``) and ``/_imgcli/...``: the
  functions an API call runs make their own, journaled, calls;
* SQS ReceiveMessage, which may long-poll for 20 s: it runs without the lock and is
  journaled after it answers, when it received something (so the receipt handles a
  client holds still work after a restart).

A body over ``MAX_BODY_BYTES`` (2 GiB less a margin: it is read into memory and must fit
one record) is refused before moto sees it, with S3's ``EntityTooLarge``.

**Events.** An S3 event (from ``s3_events``) or an ``InvocationType=Event`` call is an
accepted promise; the ``AsyncInvoker`` tells the ``EventLedger`` of each one. Inside a
journaled request the ledger collects them into that request's record, so a change and
the events it caused are durable together, and a replay never makes events (the ledger
knows them already). Outside one (an Invoke), it appends an ``event`` record and waits
for it. A settled event gets a ``done`` record, not waited for: losing one means the
event runs again after a restart, which the functions tolerate. The ledger keeps the
unsettled events in memory, so a journal rotation carries them into the new generation.

**Mutations that are not requests.** Delivering a failed event to its on-failure queue
changes moto's state from a worker thread; ``call`` journals it as a named call that
the recovery runs again with the same draws.
"""

from __future__ import annotations

import base64
import io
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, TypeVar
from urllib.parse import parse_qs, urlsplit

from imgcli.localcloud import API_PATH_PREFIX, replay_determinism
from imgcli.localcloud.journal import MAX_PAYLOAD_BYTES, JournalClosed, JournalWriter, Record
from imgcli.localcloud.replay_determinism import Draws

StartResponse = Callable[..., Any]
Environ = dict[str, Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]

REQUEST: Final = "request"
EVENT: Final = "event"
DONE: Final = "done"
CALL: Final = "call"

_MUTATING: Final = frozenset({"POST", "PUT", "DELETE", "PATCH"})
_READ_ONLY_OPERATIONS: Final = (
    "Get",
    "Describe",
    "List",
    "Query",
    "Scan",
    "BatchGet",
    "TransactGet",
)
_INVOKE: Final = re.compile(
    r"/\d{4}-\d{2}-\d{2}/functions/[^/]+/"
    r"(invocations|invoke-async/?|response-streaming-invocations)"
)
_RECEIVE: Final = "ReceiveMessage"
#: The largest body a journaled request may have: it is read into memory and goes into
#: one record. imgcli sends files over 8 MiB in parts; AWS's own single PUT limit is 5 GB.
MAX_BODY_BYTES: Final = MAX_PAYLOAD_BYTES - 2**20
_LOCAL_PREFIX: Final = "/_imgcli/"
#: Environ entries a replay gives moto again: what moto and werkzeug read of a request.
_KEPT_PREFIXES: Final = ("HTTP_", "CONTENT_", "SERVER_", "REQUEST_")
_KEPT: Final = frozenset(
    {
        "PATH_INFO",
        "QUERY_STRING",
        "RAW_URI",
        "SCRIPT_NAME",
        "REMOTE_ADDR",
        "wsgi.url_scheme",
        "wsgi.input_terminated",
        "moto.preserved_header_names",
    }
)

logger = logging.getLogger(__name__)
_T = TypeVar("_T")


@dataclass(frozen=True)
class PendingEvent:
    """An accepted asynchronous invocation that has not been settled yet."""

    event_id: str
    function: str
    payload: bytes
    #: When it was first submitted (``time.time()``), so a restart keeps its age.
    submitted_at: float

    def as_record(self) -> Record:
        return Record(EVENT, self.fields(), self.payload)

    def fields(self) -> dict[str, Any]:
        return {"id": self.event_id, "function": self.function, "at": self.submitted_at}

    @classmethod
    def from_record(cls, record: Record) -> PendingEvent:
        fields = record.fields
        return cls(str(fields["id"]), str(fields["function"]), record.blob, float(fields["at"]))


class EventLedger:
    """The ``AsyncInvoker``'s journal: every event from submission until it is settled.

    Attach a writer (``attach``) before the first event; until then (the recovery),
    nothing may be submitted.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, PendingEvent] = {}
        self._collecting = threading.local()
        self._writer: JournalWriter | None = None

    def attach(self, writer: JournalWriter, pending: Iterable[PendingEvent] = ()) -> None:
        """Start journaling into ``writer``; ``pending`` are events a restart resumes."""
        with self._lock:
            self._writer = writer
            self._pending.update((event.event_id, event) for event in pending)

    def submitted(self, event_id: str, function: str, payload: bytes) -> None:
        event = PendingEvent(event_id, function, payload, self._clock())
        collected: list[PendingEvent] | None = getattr(self._collecting, "events", None)
        with self._lock:
            writer = self._require_writer()
            self._pending[event_id] = event
            if collected is not None:
                collected.append(event)  # into the record of the change that made it
                return
            sequence = writer.append(event.as_record(), change=False)
        writer.wait_durable(sequence)

    def finished(self, event_id: str) -> None:
        with self._lock:
            writer = self._require_writer()
            if self._pending.pop(event_id, None) is None:
                return
            try:
                writer.append(Record(DONE, {"id": event_id}), change=False)
            except JournalClosed:
                # An invocation that outlived the last snapshot: it runs again at the next
                # start, which at-least-once delivery allows.
                logger.info("event %s settled after the journal closed", event_id)

    def pending(self) -> list[PendingEvent]:
        with self._lock:
            return list(self._pending.values())

    @contextmanager
    def collecting(self) -> Iterator[list[PendingEvent]]:
        """Within the body, events submitted on this thread are collected, not appended."""
        events: list[PendingEvent] = []
        self._collecting.events = events
        try:
            yield events
        finally:
            self._collecting.events = None

    def rotate(self, writer: JournalWriter) -> int:
        """Rotate ``writer``, carrying every unsettled event into the new generation."""
        with self._lock:
            return writer.rotate([event.as_record() for event in self._pending.values()])

    def _require_writer(self) -> JournalWriter:
        if self._writer is None:
            raise RuntimeError("no event can be accepted before the journal is open")
        return self._writer


class Journaling:
    """The WSGI layer that journals every request changing moto's state (module docstring)."""

    def __init__(
        self, app: WsgiApp, *, writer: JournalWriter, ledger: EventLedger, lock: threading.Lock
    ) -> None:
        self.app = app
        self.writer = writer
        self.ledger = ledger
        self.lock = lock

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if not may_change_state(environ):
            return self.app(environ, start_response)
        if _declared_length(environ) > MAX_BODY_BYTES:
            return _too_large(start_response)
        body = read_body(environ)
        environ["wsgi.input"] = io.BytesIO(body)
        operation = _operation(environ, body)
        if operation.startswith(_READ_ONLY_OPERATIONS):
            return self.app(environ, start_response)
        if operation == _RECEIVE:
            return self._receive(environ, body, start_response)
        status: list[str] = []
        with self.lock:
            with replay_determinism.recording() as draws, self.ledger.collecting() as events:
                response = list(self.app(environ, _noting(status, start_response)))
            sequence = self._append(environ, body, draws, events, succeeded=_ok(status))
        if sequence:
            self.writer.wait_durable(sequence)
        return response

    def call(self, name: str, arguments: dict[str, Any], run: Callable[[], _T]) -> _T:
        """Run ``run`` (a change to moto's state that is not a request) as a journaled
        mutation named ``name``; the recovery runs its replayer with ``arguments``."""
        with self.lock:
            with replay_determinism.recording() as draws, self.ledger.collecting() as events:
                result = run()
            record = Record(
                CALL,
                {"name": name, "arguments": arguments, **_draw_fields(draws, events)},
            )
            sequence = self.writer.append(record)
        self.writer.wait_durable(sequence)
        return result

    def _receive(
        self, environ: Environ, body: bytes, start_response: StartResponse
    ) -> Iterable[bytes]:
        status: list[str] = []
        with replay_determinism.recording() as draws, self.ledger.collecting() as events:
            response = list(self.app(environ, _noting(status, start_response)))
        received = _ok(status) and any(b"ReceiptHandle" in part for part in response)
        sequence = self._append(environ, body, draws, events, succeeded=received)
        if sequence:
            self.writer.wait_durable(sequence)
        return response

    def _append(
        self,
        environ: Environ,
        body: bytes,
        draws: Draws,
        events: list[PendingEvent],
        *,
        succeeded: bool,
    ) -> int:
        if succeeded:
            fields = {"environ": captured_environ(environ), **_draw_fields(draws, events)}
            return self.writer.append(Record(REQUEST, fields, body))
        if events:  # refused, yet it caused events: keep the promise anyway
            return self.writer.append(*(event.as_record() for event in events), change=False)
        return 0


def may_change_state(environ: Mapping[str, Any]) -> bool:
    """Whether a request may need journaling, before its body names its operation."""
    if environ.get("REQUEST_METHOD") not in _MUTATING:
        return False
    path = raw_path(environ)
    return not (path.startswith((API_PATH_PREFIX + "/", _LOCAL_PREFIX)) or _INVOKE.fullmatch(path))


def raw_path(environ: Mapping[str, Any]) -> str:
    """The path as sent, which is what ``ExecuteApi`` routes on."""
    raw_uri = environ.get("REQUEST_URI") or environ.get("RAW_URI")
    if isinstance(raw_uri, str) and raw_uri:
        return urlsplit(raw_uri).path
    return str(environ.get("PATH_INFO", ""))


def read_body(environ: Mapping[str, Any]) -> bytes:
    """The whole request body as sent (an ``aws-chunked`` one still chunked), read once."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    length_text = str(environ.get("CONTENT_LENGTH") or "")
    if length_text.isdigit():
        remaining = int(length_text)
        parts: list[bytes] = []
        while remaining > 0:
            chunk = stream.read(remaining)
            if not chunk:
                break
            parts.append(chunk)
            remaining -= len(chunk)
        return b"".join(parts)
    if environ.get("wsgi.input_terminated"):
        data: bytes = stream.read()
        return data
    return b""


def captured_environ(environ: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``environ`` a replay hands moto again (strings, one dict, a flag)."""
    return {
        name: value
        for name, value in environ.items()
        if (name in _KEPT or name.startswith(_KEPT_PREFIXES))
        and isinstance(value, str | bool | dict)
    }


def _operation(environ: Mapping[str, Any], body: bytes) -> str:
    """The operation a JSON- or query-protocol request names, or ``""``."""
    target = str(environ.get("HTTP_X_AMZ_TARGET", "")).rpartition(".")[2]
    if target:
        return target
    query = parse_qs(str(environ.get("QUERY_STRING", "")))
    if str(environ.get("CONTENT_TYPE", "")).startswith("application/x-www-form-urlencoded"):
        query.update(parse_qs(body.decode("utf-8", errors="replace")))
    return (query.get("Action") or [""])[0]


def _draw_fields(draws: Draws, events: list[PendingEvent]) -> dict[str, Any]:
    fields: dict[str, Any] = {"seed": format(draws.seed, "x"), "clock": draws.clock}
    if events:
        fields["events"] = [
            {**event.fields(), "payload": base64.b64encode(event.payload).decode()}
            for event in events
        ]
    return fields


def draws_of(record: Record) -> Draws:
    """The draws a request or call record noted."""
    return Draws(int(record.fields["seed"], 16), [int(t) for t in record.fields["clock"]])


def events_of(record: Record) -> list[PendingEvent]:
    """The events a request or call record caused, or the one an event record holds."""
    if record.kind == EVENT:
        return [PendingEvent.from_record(record)]
    return [
        PendingEvent(
            str(event["id"]),
            str(event["function"]),
            base64.b64decode(event["payload"]),
            float(event["at"]),
        )
        for event in record.fields.get("events", ())
    ]


def _declared_length(environ: Mapping[str, Any]) -> int:
    text = str(environ.get("CONTENT_LENGTH") or "")
    return int(text) if text.isdigit() else 0


def _too_large(start_response: StartResponse) -> list[bytes]:
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>EntityTooLarge</Code>'
        b"<Message>Your proposed upload exceeds the maximum allowed size "
        b"(the local cloud journals at most 2 GiB per request; use a multipart upload)"
        b"</Message></Error>"
    )
    start_response(
        "400 Bad Request",
        [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _noting(status: list[str], start_response: StartResponse) -> StartResponse:
    def noted(status_line: str, headers: Any, exc_info: Any = None) -> Any:
        status.append(status_line)
        return start_response(status_line, headers, exc_info)

    return noted


def _ok(status: list[str]) -> bool:
    return bool(status) and status[-1][:1] == "2"
