"""The health check proves the secret: an impostor on the port is never taken for the local
cloud (``imgcli.localcloud.health`` and its use by ``process``).

The client side is tested against a small fake server in a thread that answers as told:
with the right proof, without one, or with a proof made with another key. The last test
replays the security review's finding on a real local cloud: after a crash, another
program listens on the port and answers with the dead pid from ``server.json``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from imgcli.localcloud import health, process
from imgcli.localcloud.health import Listener
from imgcli.localcloud.secret import OwnerKey, load_or_create, local_cloud_dir
from tests.images import image_bytes
from tests.localstack import bootstrap, free_port, local_cloud_env, run_imgcli

NONCE = "0123456789abcdef0123456789abcdef"
OWNER = OwnerKey("LKIATESTHEALTH000000", "health-test-secret")

#: What a fake server answers to the health check, given the nonce it was sent.
Answer = Callable[[str], dict[str, Any]]


class FakeServer:
    """Something listening on a port of 127.0.0.1: answers the health check as told, and
    records every request it gets (method and path)."""

    def __init__(self, answer: Answer, port: int = 0) -> None:
        self.answer = answer
        self.requests: list[tuple[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.requests.append(("GET", self.path))
                url = urlsplit(self.path)
                if url.path == health.HEALTH_PATH:
                    nonce = parse_qs(url.query).get("nonce", [""])[0]
                    self._send(200, json.dumps(fake.answer(nonce)).encode())
                else:
                    self._send(200, b"<ListAllMyBucketsResult/>")

            def do_PUT(self) -> None:
                fake.requests.append(("PUT", self.path))
                self._send(200, b"")

            do_POST = do_HEAD = do_DELETE = do_PUT  # noqa: N815 - http.server's names

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = int(self.server.server_address[1])

    def non_health_requests(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if not r[1].startswith(health.HEALTH_PATH)]


@contextmanager
def fake_server(answer: Answer, port: int = 0) -> Iterator[FakeServer]:
    fake = FakeServer(answer, port)
    thread = threading.Thread(target=fake.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()
        thread.join(10)


def proving(owner: OwnerKey, pid: int) -> Answer:
    """The answer of a server that holds ``owner``'s secret and runs as ``pid``."""
    return lambda nonce: health.answer(f"nonce={nonce}", owner, pid)


def unproved(pid: int) -> Answer:
    """What the local cloud answered before the proof, and what an impostor can answer."""
    return lambda nonce: {"service": "imgcli-local", "pid": pid}


# The server's side


def test_the_answer_proves_the_nonce_and_the_pid_with_the_owners_key() -> None:
    answer = health.answer(f"nonce={NONCE}", OWNER, 4321)
    assert answer["service"] == "imgcli-local" and answer["pid"] == 4321
    assert answer["proof"] == health.proof(OWNER, NONCE, 4321)
    others = {
        health.proof(OwnerKey(OWNER.access_key_id, "another secret"), NONCE, 4321),
        health.proof(OWNER, NONCE.replace("0", "1"), 4321),
        health.proof(OWNER, NONCE, 4322),
    }
    assert answer["proof"] not in others and len(others) == 3


@pytest.mark.parametrize(
    "query",
    ["", "nonce=", "nonce=abc", f"nonce={NONCE.upper()}", f"nonce={NONCE}&nonce={NONCE}"],
)
def test_no_proof_for_a_missing_or_malformed_nonce(query: str) -> None:
    assert health.answer(query, OWNER, 4321) == {"service": "imgcli-local", "pid": 4321}


# The client's side, against a fake server


def test_a_server_with_the_proof_is_ours_with_the_pid_it_vouched_for() -> None:
    with fake_server(proving(OWNER, 4321)) as fake:
        assert health.check(fake.port, OWNER) == health.HealthCheck(Listener.OURS, 4321)
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    "answer",
    [
        unproved(4321),
        proving(OwnerKey(OWNER.access_key_id, "a guess"), 4321),
        lambda nonce: {**proving(OWNER, 4321)(nonce), "pid": 4322},  # a proof for another pid
        lambda nonce: {**proving(OWNER, 4321)(nonce), "service": "other"},
        lambda nonce: {**proving(OWNER, 4321)(nonce), "pid": True},
        lambda nonce: {"proof": 7},
    ],
    ids=["no proof", "wrong secret", "another pid", "another service", "pid not int", "junk"],
)
def test_anything_else_that_answers_is_something_else(answer: Answer) -> None:
    with fake_server(answer) as fake:
        found = health.check(fake.port, OWNER)
    assert found.listener is Listener.SOMETHING_ELSE and found.pid is None


def test_a_claim_without_proof_is_reported_but_not_vouched_for() -> None:
    with fake_server(unproved(4321)) as fake:
        found = health.check(fake.port, OWNER)
    assert found == health.HealthCheck(Listener.SOMETHING_ELSE, pid=None, claimed_pid=4321)


def test_a_listener_that_says_nothing_sensible_is_something_else() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def garble() -> None:
            connection, _ = listener.accept()
            with connection:
                connection.sendall(b"SSH-2.0-OpenSSH\r\n")

        thread = threading.Thread(target=garble, daemon=True)
        thread.start()
        assert health.check(port, OWNER).listener is Listener.SOMETHING_ELSE
        thread.join(10)


def test_a_free_port_is_nobody() -> None:
    port = free_port()
    assert health.check(port, OWNER) == health.HealthCheck(Listener.NOBODY)
    assert health.nobody_listens(port)


# process.status, start and stop with an impostor on the port


@pytest.fixture
def environ(tmp_path: Path) -> dict[str, str]:
    return {"IMGCLI_DATA_DIR": str(tmp_path / "data")}


def write_record(environ: dict[str, str], pid: int, port: int) -> None:
    directory = local_cloud_dir(environ)
    (directory / process.RECORD).write_text(json.dumps({"pid": pid, "port": port}))


def test_status_reports_an_impostor_as_something_else_not_as_running(
    environ: dict[str, str],
) -> None:
    load_or_create(local_cloud_dir(environ))
    dead_pid = 4_000_000  # beyond pid_max: surely not running
    with fake_server(unproved(dead_pid)) as fake:
        write_record(environ, dead_pid, fake.port)
        status = process.status(fake.port, environ)
    assert not status.running and status.pid is None
    assert status.note is not None
    assert status.note.startswith(f"something else listens on 127.0.0.1:{fake.port} (pid 4000000")
    assert status.as_json()["note"] == status.note


def test_status_with_the_proof_is_running(environ: dict[str, str]) -> None:
    owner = load_or_create(local_cloud_dir(environ))
    with fake_server(proving(owner, 4321)) as fake:
        write_record(environ, 4321, fake.port)
        status = process.status(fake.port, environ)
    assert status.running and status.pid == 4321 and status.note is None


def test_start_refuses_to_use_an_impostor_and_starts_nothing(environ: dict[str, str]) -> None:
    load_or_create(local_cloud_dir(environ))
    with fake_server(unproved(4_000_000)) as fake:
        write_record(environ, 4_000_000, fake.port)
        with pytest.raises(process.LocalCloudError, match="something else listens on") as refused:
            process.start(fake.port, environ, timeout_s=5)
    assert "sends it nothing" in refused.value.message
    assert not (local_cloud_dir(environ) / process.LOG).exists()  # no server was started
    assert fake.non_health_requests() == []


@pytest.fixture
def victim() -> Iterator[subprocess.Popen[bytes]]:
    """A process of ours whose pid an impostor names."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield sleeper
    sleeper.kill()
    sleeper.wait(10)


def test_stop_never_signals_a_pid_without_the_proof(
    environ: dict[str, str], victim: subprocess.Popen[bytes]
) -> None:
    owner = load_or_create(local_cloud_dir(environ))
    with fake_server(unproved(victim.pid)) as fake:
        write_record(environ, victim.pid, fake.port)
        assert process.stop(fake.port, environ, timeout_s=5) is False
    assert victim.poll() is None  # still running: never signalled
    # The same pid vouched for by the proof is stopped: the test above can fail.
    with fake_server(proving(owner, victim.pid)) as fake:
        write_record(environ, victim.pid, fake.port)
        assert process.stop(fake.port, environ, timeout_s=10) is True
    victim.wait(10)  # ended (stop reaped it, so its exit status is gone)


# The security review's impostor, on a real local cloud


def test_after_a_crash_an_impostor_on_the_port_gets_nothing(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    (images / "photo.png").write_bytes(image_bytes("PNG"))
    with local_cloud_env(tmp_path, "impostor") as env:
        bootstrap(env)
        directory = local_cloud_dir(env)
        record = json.loads((directory / process.RECORD).read_text())
        os.killpg(record["pid"], signal.SIGKILL)  # a crash: server.json stays behind
        port = int(env["IMGCLI_LOCAL_PORT"])
        deadline = time.monotonic() + 20
        while not health.nobody_listens(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        with fake_server(unproved(record["pid"]), port) as impostor:
            status = run_imgcli(env, "local", "status", "--json")
            assert status.returncode == 0, status.stderr
            assert json.loads(status.stdout)["running"] is False
            assert f"something else listens on 127.0.0.1:{port}" in status.stderr

            upload = run_imgcli(env, "upload", str(images), "--recursive")
            assert upload.returncode != 0
            assert f"something else listens on 127.0.0.1:{port}" in upload.stderr
            assert impostor.requests  # it was asked, and found wanting
            assert impostor.non_health_requests() == []
