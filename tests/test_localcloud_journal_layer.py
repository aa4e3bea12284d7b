"""The journal layer: which requests it journals, in what order, and when it answers.

A recording WSGI app stands in for moto, so each test sees exactly what the layer did:
which requests reached the app under the lock, what the journal holds afterwards, and
whether the response waited for the fsync. The event ledger is tested through the same
layer, as the ``AsyncInvoker`` uses it.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from imgcli.localcloud import replay_determinism
from imgcli.localcloud.journal import JournalWriter, Record, generation_path, read_generation
from imgcli.localcloud.journal_layer import (
    CALL,
    DONE,
    EVENT,
    MAX_BODY_BYTES,
    REQUEST,
    EventLedger,
    Journaling,
    draws_of,
    events_of,
)

KEY = b"k" * 32

Environ = dict[str, Any]


class FakeMoto:
    """Answers every request with ``status``; notes whether the layer's lock was held."""

    def __init__(self, lock: threading.Lock, status: str = "200 OK") -> None:
        self.lock = lock
        self.status = status
        self.calls: list[tuple[str, bytes, bool]] = []
        self.during: Callable[[], None] | None = None

    def __call__(self, environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = environ["wsgi.input"].read()
        self.calls.append((environ["PATH_INFO"], body, self.lock.locked()))
        if self.during is not None:
            self.during()
        start_response(self.status, [("Content-Type", "text/plain")])
        return [b"answer"]


class Stack:
    def __init__(self, tmp_path: Path, status: str = "200 OK") -> None:
        self.syncs: list[int] = []
        self.writer = JournalWriter(tmp_path, KEY, 1, fsync=self.syncs.append)
        self.ledger = EventLedger()
        self.ledger.attach(self.writer)
        self.lock = threading.Lock()
        self.moto = FakeMoto(self.lock, status)
        self.layer = Journaling(self.moto, writer=self.writer, ledger=self.ledger, lock=self.lock)
        self.path = generation_path(tmp_path, 1)

    def request(self, method: str, path: str, body: bytes = b"", **headers: str) -> list[bytes]:
        environ: Environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "REQUEST_URI": path,
            "QUERY_STRING": "",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body + b"trailing bytes the client never sent"),
            "HTTP_HOST": "127.0.0.1:4566",
        }
        for name, value in headers.items():
            # WSGI names two headers without the HTTP_ prefix.
            prefix = "" if name == "content_type" else "HTTP_"
            environ[prefix + name.upper()] = value
        return list(self.layer(environ, lambda status, headers, exc_info=None: None))

    def journaled(self) -> list[Record]:
        return read_generation(self.path, KEY, 1).records[1:]


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    return Stack(tmp_path)


def test_a_change_is_journaled_with_its_body_under_the_lock(stack: Stack) -> None:
    assert stack.request("PUT", "/bucket/a.jpg", b"jpeg bytes") == [b"answer"]

    assert stack.moto.calls == [("/bucket/a.jpg", b"jpeg bytes", True)]
    (record,) = stack.journaled()
    assert (record.kind, record.blob) == (REQUEST, b"jpeg bytes")
    assert record.fields["environ"]["PATH_INFO"] == "/bucket/a.jpg"
    assert record.fields["environ"]["CONTENT_LENGTH"] == "10"
    assert "wsgi.input" not in record.fields["environ"]


def test_the_answer_waits_for_the_fsync(stack: Stack) -> None:
    stack.syncs.clear()
    stack.request("DELETE", "/bucket/a.jpg")
    assert len(stack.syncs) == 1


@pytest.mark.parametrize(
    ("method", "path", "headers", "body"),
    [
        ("GET", "/bucket/a.jpg", {}, b""),
        ("HEAD", "/bucket/a.jpg", {}, b""),
        ("POST", "/", {"x_amz_target": "DynamoDB_20120810.Query"}, b"{}"),
        ("POST", "/", {"x_amz_target": "DynamoDB_20120810.GetItem"}, b"{}"),
        ("POST", "/", {"x_amz_target": "DynamoDB_20120810.TransactGetItems"}, b"{}"),
        ("POST", "/", {}, b"Action=GetRole&RoleName=x"),
        ("POST", "/2015-03-31/functions/save/invocations", {}, b"{}"),
        ("POST", "/2015-03-31/functions/arn%3Aaws%3Alambda%3Ax/invocations", {}, b"{}"),
        ("GET", "/_api/abc/images", {}, b""),
        ("POST", "/_api/abc/images", {}, b"{}"),
        ("POST", "/_imgcli/health", {}, b""),
    ],
)
def test_reads_invokes_and_the_http_api_are_not_journaled(
    stack: Stack, method: str, path: str, headers: dict[str, str], body: bytes
) -> None:
    if body.startswith(b"Action="):
        headers = {**headers, "content_type": "application/x-www-form-urlencoded"}
    stack.syncs.clear()
    stack.request(method, path, body, **headers)

    assert stack.journaled() == []
    assert stack.syncs == []
    assert [locked for _, _, locked in stack.moto.calls] == [False]


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"x_amz_target": "DynamoDB_20120810.PutItem"}, b"{}"),
        ({"x_amz_target": "DynamoDB_20120810.BatchWriteItem"}, b"{}"),
        ({"content_type": "application/x-www-form-urlencoded"}, b"Action=CreateRole&x=1"),
        ({}, b"<CreateBucketConfiguration/>"),
    ],
)
def test_writes_sent_as_post_are_journaled(
    stack: Stack, headers: dict[str, str], body: bytes
) -> None:
    stack.request("POST", "/", body, **headers)
    assert [record.blob for record in stack.journaled()] == [body]


def test_a_refused_change_is_not_journaled(tmp_path: Path) -> None:
    stack = Stack(tmp_path, status="409 Conflict")
    stack.syncs.clear()
    stack.request("PUT", "/bucket")
    assert (stack.journaled(), stack.syncs) == ([], [])


def test_the_journal_order_is_the_order_moto_applied_them(stack: Stack) -> None:
    threads = [
        threading.Thread(target=stack.request, args=("PUT", f"/bucket/{n}", b"x"))
        for n in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    applied = [path for path, _, _ in stack.moto.calls]
    journaled = [record.fields["environ"]["PATH_INFO"] for record in stack.journaled()]
    assert journaled == applied
    assert all(locked for _, _, locked in stack.moto.calls)


def test_a_sqs_receive_runs_unlocked_and_is_journaled_when_it_received(stack: Stack) -> None:
    receive = {"x_amz_target": "AmazonSQS.ReceiveMessage"}
    stack.request("POST", "/", b"{}", **receive)  # answers "answer": received nothing
    assert stack.journaled() == []

    def answer_with_a_message(environ: Environ, start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [json.dumps({"Messages": [{"ReceiptHandle": "h"}]}).encode()]

    stack.layer.app = answer_with_a_message
    stack.request("POST", "/", b"{}", **receive)
    assert [record.kind for record in stack.journaled()] == [REQUEST]
    assert stack.moto.calls[0][2] is False


def test_a_request_s_events_are_in_its_own_record(stack: Stack) -> None:
    stack.moto.during = lambda: stack.ledger.submitted("e1", "save", b'{"Records": []}')

    stack.request("PUT", "/bucket/a.jpg", b"jpeg")

    (record,) = stack.journaled()
    (event,) = events_of(record)
    assert (event.event_id, event.function, event.payload) == ("e1", "save", b'{"Records": []}')
    assert [pending.event_id for pending in stack.ledger.pending()] == ["e1"]


def test_an_event_outside_a_change_is_journaled_and_synced_on_its_own(stack: Stack) -> None:
    stack.syncs.clear()
    stack.ledger.submitted("e2", "save", b"{}")
    stack.ledger.finished("e2")
    stack.ledger.finished("e2")  # settled twice: noted once

    assert [(r.kind, r.fields["id"]) for r in stack.journaled()] == [(EVENT, "e2"), (DONE, "e2")]
    assert len(stack.syncs) == 1  # the event's, not the done's
    assert stack.ledger.pending() == []


def test_a_rotation_carries_the_unsettled_events(stack: Stack, tmp_path: Path) -> None:
    stack.ledger.submitted("kept", "save", b"1")
    stack.ledger.submitted("settled", "save", b"2")
    stack.ledger.finished("settled")

    generation = stack.ledger.rotate(stack.writer)

    carried = read_generation(generation_path(tmp_path, generation), KEY, generation).records
    assert [(r.kind, r.fields.get("id"), r.blob) for r in carried[1:]] == [(EVENT, "kept", b"1")]


def test_a_call_is_journaled_under_the_lock_with_its_draws(stack: Stack) -> None:
    uninstall = replay_determinism.install()
    try:
        from moto.moto_api._internal import mock_random

        drawn = stack.layer.call(
            "send", {"queue": "q"}, lambda: (stack.lock.locked(), mock_random.uuid4())
        )
        (record,) = stack.journaled()
        with replay_determinism.replaying(draws_of(record)):
            again = mock_random.uuid4()
    finally:
        uninstall()
    assert (record.kind, record.fields["name"], record.fields["arguments"]) == (
        CALL,
        "send",
        {"queue": "q"},
    )
    assert drawn == (True, again)


def test_no_event_is_taken_before_the_journal_is_open() -> None:
    with pytest.raises(RuntimeError, match="journal"):
        EventLedger().submitted("e", "save", b"")


def test_a_body_too_large_for_one_record_is_refused_before_moto(stack: Stack) -> None:
    class Unread(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            raise AssertionError("a refused body is never read")

    answer: list[str] = []
    environ: Environ = {
        "REQUEST_METHOD": "PUT",
        "PATH_INFO": "/bucket/huge.iso",
        "CONTENT_LENGTH": str(MAX_BODY_BYTES + 1),
        "wsgi.input": Unread(),
    }
    body = b"".join(stack.layer(environ, lambda status, headers: answer.append(status)))

    assert answer == ["400 Bad Request"] and b"EntityTooLarge" in body
    assert (stack.moto.calls, stack.journaled()) == ([], [])


def test_an_event_settled_after_the_journal_closed_is_left_to_run_again(stack: Stack) -> None:
    stack.ledger.submitted("late", "save", b"{}")
    stack.writer.close()
    stack.ledger.finished("late")  # no error: the next start runs it once more
    assert [(r.kind, r.fields["id"]) for r in stack.journaled()] == [(EVENT, "late")]
