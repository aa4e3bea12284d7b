"""The local cloud's process: moto's AWS endpoint plus imgcli's runtime, events and API.

One WSGI application on 127.0.0.1, layered from the outside in:

* ``/_imgcli/health`` answers who is listening (``process`` trusts only that answer);
* ``ExecuteApi`` serves ``/_api/<apiId>/...`` (the stacks' HTTP APIs, SigV4-checked);
* every other request is moto's, which serves S3, DynamoDB, Lambda, IAM, SQS, API
  Gateway v2, STS and CloudWatch Logs for any client;
* mutating requests mark the state dirty, and a scheduler snapshots it every few seconds
  and on shutdown, so ``local stop`` + ``local start`` (or a killed process) keeps it.

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

from imgcli.config import LOCAL_ACCESS_KEY, LOCAL_HOST, LOCAL_REGION

ACCOUNT: Final = "123456789012"
SNAPSHOT: Final = "state.pickle"
LOCAL_RETRY_DELAYS: Final = (1.0, 2.0)

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_MUTATING = frozenset({"POST", "PUT", "DELETE", "PATCH"})


class HealthAndChanges:
    """Answers the health check, and tells the snapshot scheduler about every change."""

    def __init__(self, app: WsgiApp, *, mark_dirty: Callable[[], None]) -> None:
        self.app = app
        self.mark_dirty = mark_dirty

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        from imgcli.localcloud.process import HEALTH_PATH

        if environ.get("PATH_INFO") == HEALTH_PATH:
            body = json.dumps({"service": "imgcli-local", "pid": os.getpid()}).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        if environ.get("REQUEST_METHOD") in _MUTATING:
            self.mark_dirty()
        return self.app(environ, start_response)


def build(port: int, data_dir: Path) -> tuple[WsgiApp, Callable[[], None]]:
    """The local cloud's WSGI app, and the function that shuts its parts down."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    from imgcli.localcloud import execute_api, moto_lambda, persistence, s3_events
    from imgcli.localcloud.runtime import AsyncInvoker, LambdaRuntime

    data_dir.mkdir(parents=True, exist_ok=True)
    persistence.load_snapshot(data_dir / SNAPSHOT)
    endpoint = f"http://{LOCAL_HOST}:{port}"
    credentials = (LOCAL_ACCESS_KEY.access_key_id, LOCAL_ACCESS_KEY.secret_access_key)
    runtime = LambdaRuntime(
        workdir=data_dir / "runtime",
        endpoint_url=endpoint,
        region=LOCAL_REGION,
        credentials=credentials,
    )
    invoker = AsyncInvoker(
        runtime,
        lookup=lambda name: moto_lambda.function_spec(ACCOUNT, LOCAL_REGION, name),
        invoke_config=lambda name: moto_lambda.async_config(ACCOUNT, LOCAL_REGION, name),
        send_to_destination=lambda arn, record: moto_lambda.send_to_queue(
            ACCOUNT, LOCAL_REGION, arn, json.dumps(record)
        ),
        retry_delays=LOCAL_RETRY_DELAYS,
    )
    uninstall_invoke = moto_lambda.install_invoke(runtime, invoker)
    uninstall_events = s3_events.install(
        lambda function_arn, event: invoker.submit(function_arn, json.dumps(event).encode())
    )
    scheduler = persistence.SnapshotScheduler(data_dir / SNAPSHOT)

    def invoke_for_api(function_arn: str, event: dict[str, Any]) -> Any:
        spec = moto_lambda.function_spec(ACCOUNT, LOCAL_REGION, function_arn)
        if spec is None:
            return execute_api.FunctionFailed(f"no function {function_arn}")
        result = runtime.invoke(spec, json.dumps(event).encode())
        if result.function_error:
            return execute_api.FunctionFailed(result.payload.decode(errors="replace"))
        return json.loads(result.payload or b"null")

    app: WsgiApp = DomainDispatcherApplication(create_backend_app)
    app = execute_api.ExecuteApi(
        app,
        invoke=invoke_for_api,
        apis=execute_api.moto_api_lookup(ACCOUNT, LOCAL_REGION),
        credentials=credentials,
        region=LOCAL_REGION,
    )
    app = HealthAndChanges(app, mark_dirty=scheduler.mark_dirty)

    def shutdown() -> None:
        uninstall_events()
        invoker.shutdown()
        uninstall_invoke()
        runtime.shutdown()
        scheduler.stop()  # the last save, after everything that could change state

    return app, shutdown


def serve(port: int, data_dir: Path) -> None:
    """Serve until SIGTERM or SIGINT; then save state and exit."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server

    from imgcli.localcloud.process import write_record

    app, shutdown = build(port, data_dir)
    server = make_server(LOCAL_HOST, port, app, threaded=True, request_handler=MotoRequestHandler)

    def stop(signum: int, frame: object) -> None:
        # shutdown() blocks until serve_forever returns: never call it on that thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    write_record(data_dir, port)
    logging.getLogger(__name__).info("local cloud listening on %s:%d", LOCAL_HOST, port)
    try:
        server.serve_forever()
    finally:
        shutdown()


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
