"""The local cloud's process: moto's AWS endpoint plus imgcli's runtime, events and API.

One WSGI application on 127.0.0.1, layered from the outside in:

* ``Gatekeeper`` answers the health check (``process`` trusts only that answer), lets in
  only this machine's signed requests, and notes what changed;
* ``ExecuteApi`` serves ``/_api/<apiId>/...`` (the stacks' HTTP APIs, SigV4-checked);
* every other request is moto's, which serves S3, DynamoDB, Lambda, IAM, SQS, API
  Gateway v2, STS and CloudWatch Logs for any client (with ``moto_speedups``: moto's
  dispatcher remembers each host's service, and DynamoDB writes plain values directly);
* mutating requests mark the state dirty, and a scheduler snapshots it every few seconds
  and on shutdown, so ``local stop`` + ``local start`` (or a killed process) keeps it.
  ``local stop`` first lets queued events finish (the server keeps answering the
  functions' own calls meanwhile), then stops accepting, waits for requests in flight,
  stops the parts and saves last. A killed process loses events still queued: their
  objects are there after a restart, but not indexed until they change again.

moto runs no Lambda code without Docker, so ``moto_lambda.install_invoke`` makes its
Invoke API run the deployed zip in ``LambdaRuntime``'s warm workers, and
``s3_events.install`` turns every object change into the event AWS would send, queued to
the ``AsyncInvoker`` (AWS's async rules: retries, then the on-failure destination). The
retry delays are seconds here rather than AWS's minutes, so a failing event reaches its
queue while someone is still watching.

Run as ``python -m imgcli.localcloud.server --port N --data-dir D``; ``process.start``
does that in the background.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final

from imgcli.config import LOCAL_HOST, LOCAL_REGION
from imgcli.localcloud import API_PATH_PREFIX
from imgcli.localcloud.execute_api import StartResponse, WsgiApp
from imgcli.localcloud.process import HEALTH_PATH, write_record

Environ = dict[str, Any]

ACCOUNT: Final = "123456789012"
SNAPSHOT: Final = "state.pickle"
LOCAL_RETRY_DELAYS: Final = (1.0, 2.0)
#: Warm workers per function, and threads delivering events to them. A save invocation
#: mostly waits on calls back into this server, so more than the core count pays off:
#: measured with benchmarks/local_cloud.py (see benchmarks/RESULTS.md).
WORKERS_PER_FUNCTION: Final = 8
#: How long ``local stop`` lets queued S3 events and async calls finish before saving.
DRAIN_TIMEOUT_S: Final = 60.0

_MUTATING = frozenset({"POST", "PUT", "DELETE", "PATCH"})
# JSON-protocol APIs (DynamoDB, Lambda's control plane via X-Amz-Target, Logs) send reads
# as POST too; these operation name prefixes change nothing, so they need no snapshot.
_READ_ONLY_TARGETS = ("Get", "Describe", "List", "Query", "Scan", "BatchGet")


class Gatekeeper:
    """The local cloud's front door: health check, who may call, and what changed.

    * ``/_imgcli/health`` says who is listening (``process`` trusts only that answer).
    * Only this machine's own clients get in. The Host must be 127.0.0.1 or localhost on
      our port (a web page using DNS rebinding sends its own host name), a browser's
      cross-origin request is refused, and AWS requests must be signed with the local
      access key, so a web page cannot make the local cloud run code or write objects.
      (The signature itself is checked for the HTTP API; moto checks none for its APIs.)
    * Mutating requests mark the state dirty for the snapshot scheduler, and requests in
      flight are counted so shutdown can wait for them.
    """

    def __init__(
        self, app: WsgiApp, *, port: int, access_key_id: str, mark_dirty: Callable[[], None]
    ) -> None:
        self.app = app
        self.mark_dirty = mark_dirty
        self.access_key_id = access_key_id
        self.hosts = {f"{LOCAL_HOST}:{port}", f"localhost:{port}"}
        self.origins = {f"http://{host}" for host in self.hosts}
        self._in_flight = 0
        self._idle = threading.Condition()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == HEALTH_PATH:
            return _json(start_response, "200 OK", {"service": "imgcli-local", "pid": os.getpid()})
        refusal = self._refusal(environ)
        if refusal is not None:
            return _json(start_response, "403 Forbidden", {"message": refusal})
        if self._changes_state(environ):
            self.mark_dirty()
        with self._idle:
            self._in_flight += 1
        try:
            # Responses here are complete lists (moto's and ours), so the work is done
            # when the call returns.
            return list(self.app(environ, start_response))
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def _refusal(self, environ: Environ) -> str | None:
        if environ.get("HTTP_HOST", "") not in self.hosts:
            return "the local cloud answers only requests addressed to 127.0.0.1 or localhost"
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None and origin not in self.origins:
            return "cross-origin requests are not accepted"
        if environ.get("PATH_INFO", "").startswith(API_PATH_PREFIX):
            return None  # the HTTP API verifies the whole SigV4 signature itself
        credential = environ.get("HTTP_AUTHORIZATION", "") + "&" + environ.get("QUERY_STRING", "")
        if f"Credential={self.access_key_id}/" in credential or (
            f"Credential={self.access_key_id}%2F" in credential
        ):
            return None
        return (
            "sign requests with the local cloud's access key "
            f"({self.access_key_id}; see imgcli local status)"
        )

    @staticmethod
    def _changes_state(environ: Environ) -> bool:
        if environ.get("REQUEST_METHOD") not in _MUTATING:
            return False
        operation = str(environ.get("HTTP_X_AMZ_TARGET", "")).rpartition(".")[2]
        return not (operation and operation.startswith(_READ_ONLY_TARGETS))


def _json(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


class LocalCloud:
    """The composed parts of one local cloud, and the order they stop in."""

    def __init__(self, port: int, data_dir: Path) -> None:
        from moto.moto_server.werkzeug_app import create_backend_app

        from imgcli.localcloud import (
            api_routes,
            execute_api,
            moto_lambda,
            moto_speedups,
            persistence,
            s3_events,
            secret,
        )
        from imgcli.localcloud.async_invoke import AsyncInvoker
        from imgcli.localcloud.runtime import LambdaRuntime

        owner = secret.load_or_create(data_dir)
        persistence.load_snapshot(data_dir / SNAPSHOT)
        credentials = (owner.access_key_id, owner.secret_access_key)
        self.runtime = LambdaRuntime(
            workdir=data_dir / "runtime",
            endpoint_url=f"http://{LOCAL_HOST}:{port}",
            region=LOCAL_REGION,
            credentials=credentials,
            max_workers_per_function=WORKERS_PER_FUNCTION,
        )
        self.invoker = AsyncInvoker(
            self.runtime,
            lookup=lambda name: moto_lambda.function_spec(ACCOUNT, LOCAL_REGION, name),
            invoke_config=lambda name: moto_lambda.async_config(ACCOUNT, LOCAL_REGION, name),
            send_to_destination=lambda arn, record: moto_lambda.send_to_queue(
                ACCOUNT, LOCAL_REGION, arn, json.dumps(record)
            ),
            retry_delays=LOCAL_RETRY_DELAYS,
            threads=WORKERS_PER_FUNCTION,
        )
        self._uninstall_invoke = moto_lambda.install_invoke(self.runtime, self.invoker)
        self._uninstall_events = s3_events.install(
            lambda arn, event: self.invoker.submit(arn, json.dumps(event).encode())
        )
        self.scheduler = persistence.SnapshotScheduler(data_dir / SNAPSHOT)

        def invoke_for_api(function_arn: str, event: dict[str, Any]) -> Any:
            spec = moto_lambda.function_spec(ACCOUNT, LOCAL_REGION, function_arn)
            if spec is None:
                return execute_api.FunctionFailed(f"no function {function_arn}")
            result = self.runtime.invoke(spec, json.dumps(event).encode())
            if result.function_error:
                return execute_api.FunctionFailed(result.payload.decode(errors="replace"))
            return json.loads(result.payload or b"null")

        self._uninstall_speedups = moto_speedups.install()
        aws: WsgiApp = moto_speedups.CachingDispatcher(create_backend_app)
        with_api = execute_api.ExecuteApi(
            aws,
            invoke=invoke_for_api,
            apis=api_routes.moto_api_lookup(ACCOUNT, LOCAL_REGION),
            credentials=credentials,
            region=LOCAL_REGION,
        )
        self.gate = Gatekeeper(
            with_api,
            port=port,
            access_key_id=owner.access_key_id,
            mark_dirty=self.scheduler.mark_dirty,
        )

    def finish_pending_events(self) -> None:
        """Let queued S3 events and async calls run while the server still answers them."""
        if not self.invoker.drain(DRAIN_TIMEOUT_S):
            logging.getLogger(__name__).warning(
                "events still pending after %.0f s are dropped", DRAIN_TIMEOUT_S
            )

    def close(self) -> None:
        """After the server stopped accepting: finish requests, stop parts, save last."""
        self.gate.wait_idle(30.0)
        self._uninstall_events()
        self.invoker.shutdown()
        self._uninstall_invoke()
        self.runtime.shutdown()
        self._uninstall_speedups()
        self.scheduler.stop()  # the last save, after everything that could change state


def serve(port: int, data_dir: Path) -> None:
    """Serve until SIGTERM or SIGINT; then finish pending events, save state and exit."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server

    cloud = LocalCloud(port, data_dir)
    server = make_server(
        LOCAL_HOST, port, cloud.gate, threaded=True, request_handler=MotoRequestHandler
    )

    def stop_gracefully() -> None:
        cloud.finish_pending_events()
        server.shutdown()

    def on_signal(signum: int, frame: object) -> None:
        # shutdown() blocks until serve_forever returns: never call it on that thread.
        threading.Thread(target=stop_gracefully, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    write_record(data_dir, port)
    logging.getLogger(__name__).info("local cloud listening on %s:%d", LOCAL_HOST, port)
    try:
        server.serve_forever()
    finally:
        cloud.close()
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m imgcli.localcloud.server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    arguments = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    # One line per request would grow the log without bound; errors still show.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    serve(arguments.port, arguments.data_dir)


if __name__ == "__main__":
    main()
