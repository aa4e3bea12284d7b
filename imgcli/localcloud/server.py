"""The local cloud's process: moto's AWS endpoint plus imgcli's runtime, events and API.

One WSGI application on 127.0.0.1, layered from the outside in:

* ``InFlight`` counts requests, so ``local stop`` can let them finish before the last save;
* ``gate.Gatekeeper`` answers the health check (with a proof of the owner's secret:
  ``process`` trusts nothing else), routes each request once on its raw path, and lets
  an AWS request in only when its SigV4 signature verifies with the owner's key or a
  role session's (``role_sessions``), leaving the verified ``Principal`` in the environ;
* ``ExecuteApi`` serves ``/_api/<apiId>/...`` (the stacks' HTTP APIs: ``AWS_IAM`` routes
  checked, and a function invoked only if its policy lets the API invoke it);
* ``journal_layer.Journaling`` journals every request that changes moto's state, and
  its client hears back only once the journal is fsynced (group commit), with the S3
  events it caused; ``journal_durability`` replays the journal onto the last snapshot at
  start and resubmits the events left unsettled, so a killed process loses nothing it
  acknowledged. Snapshots only compact the journal (every minute while things change,
  and at stop);
* ``authorizer.Authorizer`` checks a role session's call against its role's policies as
  they are at that moment (the owner may do anything), so a refused call never reaches
  the journal;
* every other request is moto's, which serves S3, DynamoDB, Lambda, IAM, SQS, API
  Gateway v2, STS and CloudWatch Logs (with ``moto_speedups``: moto's dispatcher
  remembers each host's service, and DynamoDB writes plain values directly).

``local stop`` first lets queued events finish (the server keeps answering the
functions' own calls meanwhile), then stops accepting, waits for requests in flight,
stops the parts and saves last.

moto runs no Lambda code without Docker, so ``moto_lambda.install_invoke`` makes its
Invoke API run the deployed zip in ``LambdaRuntime``'s warm workers, and
``s3_events.install`` turns every object change into the event AWS would send to each
function whose policy lets the bucket invoke it, queued to the ``AsyncInvoker`` (AWS's
async rules: retries, then the on-failure destination). The retry delays are seconds here
rather than AWS's minutes, so a failing event reaches its queue while someone is still
watching. Each function runs with temporary credentials for its execution role; its
on-failure records and its log lines are written with that role.

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
from imgcli.localcloud.execute_api import StartResponse, WsgiApp
from imgcli.localcloud.process import write_record

Environ = dict[str, Any]

ACCOUNT: Final = "123456789012"
#: The journaled call that delivers an invocation record to an on-failure queue.
DESTINATION_CALL: Final = "lambda-destination"
LOCAL_RETRY_DELAYS: Final = (1.0, 2.0)
#: Warm workers per function, and threads delivering events to them. A save invocation
#: mostly waits on calls back into this server, so more than the core count pays off:
#: measured with benchmarks/local_cloud.py (see benchmarks/RESULTS.md).
WORKERS_PER_FUNCTION: Final = 8
#: How long ``local stop`` lets queued S3 events and async calls finish before saving.
DRAIN_TIMEOUT_S: Final = 60.0


class InFlight:
    """Counts requests in flight, so shutdown can let them finish before the last save."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self._count = 0
        self._idle = threading.Condition()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        with self._idle:
            self._count += 1
        try:
            # Responses here are complete lists (moto's and ours), so the work is done
            # when the call returns.
            return list(self.app(environ, start_response))
        finally:
            with self._idle:
                self._count -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._count == 0, timeout)


class LocalCloud:
    """The composed parts of one local cloud, and the order they stop in."""

    def __init__(self, port: int, data_dir: Path) -> None:
        from moto.moto_server.werkzeug_app import create_backend_app

        from imgcli.localcloud import (
            api_routes,
            authorizer,
            execute_api,
            function_logs,
            health,
            moto_lambda,
            moto_lambda_policy,
            moto_s3_keys,
            moto_speedups,
            s3_events,
            secret,
        )
        from imgcli.localcloud.async_invoke import AsyncInvoker
        from imgcli.localcloud.gate import FixedIdentities, Gatekeeper
        from imgcli.localcloud.identity import Principal
        from imgcli.localcloud.journal_durability import DurableState
        from imgcli.localcloud.role_sessions import IdentityChain, RoleSessions
        from imgcli.localcloud.runtime import LambdaRuntime

        owner = secret.load_or_create(data_dir)
        self.durable = DurableState(data_dir, owner)
        self.sessions = RoleSessions()
        # The owner's key first, then the functions' role sessions and STS's.
        identities = IdentityChain(
            FixedIdentities([Principal(owner.access_key_id, owner.secret_access_key)]),
            self.sessions,
        )

        def under_mutation_lock(change: Callable[[], None]) -> None:
            with self.durable.lock:  # never while a snapshot pickles the state
                change()

        self.runtime = LambdaRuntime(
            workdir=data_dir / "runtime",
            endpoint_url=f"http://{LOCAL_HOST}:{port}",
            region=LOCAL_REGION,
            credentials=self.sessions.for_function,
            max_workers_per_function=WORKERS_PER_FUNCTION,
            log_sink=function_logs.FunctionLogWriter(
                ACCOUNT, LOCAL_REGION, mutate=under_mutation_lock
            ),
        )
        send_as_role = moto_lambda.destination_sender(ACCOUNT, LOCAL_REGION)
        self.invoker = AsyncInvoker(
            self.runtime,
            lookup=lambda name: moto_lambda.function_spec(ACCOUNT, LOCAL_REGION, name),
            invoke_config=lambda name: moto_lambda.async_config(ACCOUNT, LOCAL_REGION, name),
            send_to_destination=lambda arn, record: self.durable.call(
                DESTINATION_CALL,
                {"arn": arn, "record": record},
                lambda: send_to_destination({"arn": arn, "record": record}),
            ),
            retry_delays=LOCAL_RETRY_DELAYS,
            threads=WORKERS_PER_FUNCTION,
            journal=self.durable.ledger,
        )
        self._uninstall_invoke = moto_lambda.install_invoke(self.runtime, self.invoker)

        def send_to_destination(arguments: dict[str, Any]) -> None:
            # As on AWS, with the function's role: denied, the record is dropped (logged).
            send_as_role(arguments["arn"], arguments["record"])

        def deliver(function_arn: str, event: dict[str, Any]) -> None:
            if not self.durable.replaying:  # a replayed change's events are in its record
                self.invoker.submit(function_arn, json.dumps(event).encode())

        self._uninstall_events = s3_events.install(deliver, may_invoke=moto_lambda.s3_may_invoke)

        def invoke_for_api(function_arn: str, event: dict[str, Any]) -> Any:
            context = event.get("requestContext", {})
            if not moto_lambda.api_may_invoke(
                ACCOUNT,
                LOCAL_REGION,
                str(context.get("apiId", "")),
                str(context.get("routeKey", "")),
                function_arn,
                str(context.get("stage", "$default")),
            ):
                return execute_api.FunctionFailed(
                    f"the API may not invoke {function_arn}: its policy grants "
                    "apigateway.amazonaws.com no lambda:InvokeFunction"
                )
            spec = moto_lambda.function_spec(ACCOUNT, LOCAL_REGION, function_arn)
            if spec is None:
                return execute_api.FunctionFailed(f"no function {function_arn}")
            result = self.runtime.invoke(spec, json.dumps(event).encode())
            if result.function_error:
                return execute_api.FunctionFailed(result.payload.decode(errors="replace"))
            return json.loads(result.payload or b"null")

        self._uninstall_speedups = moto_speedups.install()
        moto_lambda_policy.install()  # for the process's life: replays obey it too
        moto_s3_keys.install()  # every key S3 takes, before moto builds its S3 routes
        aws: WsgiApp = moto_speedups.CachingDispatcher(create_backend_app)
        self.durable.recover(aws, {DESTINATION_CALL: send_to_destination})
        api = execute_api.ExecuteApi(
            invoke=invoke_for_api,
            apis=api_routes.moto_api_lookup(ACCOUNT, LOCAL_REGION),
            identities=identities,
            region=LOCAL_REGION,
            authorize=lambda principal, route_arn: authorizer.principal_allows(
                principal, "execute-api:Invoke", route_arn, LOCAL_REGION
            ),
        )
        # A refused call never reaches the journal; a replay goes to bare moto.
        authorized = authorizer.Authorizer(aws, account=ACCOUNT, default_region=LOCAL_REGION)
        pid = os.getpid()
        self.gate = InFlight(
            Gatekeeper(
                self.durable.journaling(authorized),
                api,
                port=port,
                identities=identities,
                region=LOCAL_REGION,
                health=lambda raw_query: health.answer(raw_query, owner, pid),
            )
        )
        self.durable.resubmit(self.invoker)

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
        self.durable.close()  # the last save, after everything that could change state


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
    problems = cloud.durable.problems()
    for problem in problems:
        logging.getLogger(__name__).warning("%s", problem)
    write_record(data_dir, port, problems)
    logging.getLogger(__name__).info("local cloud listening on %s:%d", LOCAL_HOST, port)
    try:
        server.serve_forever()
    finally:
        cloud.close()
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    from imgcli.localcloud import server_env

    server_env.scrub()  # function code must not find the owner's variables in our environ
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
