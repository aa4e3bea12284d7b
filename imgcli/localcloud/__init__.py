"""The local cloud: the whole stack on 127.0.0.1, with no AWS account and no Docker.

moto (pinned exactly) serves the AWS APIs; this package adds what moto lacks:

- a Lambda runtime that runs the deployed code (``runtime``, on the warm worker processes
  of ``worker_pool`` and ``worker``), with AWS's asynchronous retries and destinations
  (``async_invoke``), wired into moto's Invoke (``moto_lambda``);
- S3 event delivery to the functions a bucket's notification configuration names
  (``s3_events``);
- the HTTP API's execute-api calls with SigV4 checking (``execute_api`` on ``api_routes``,
  ``api_events`` and ``sigv4``);
- state that survives restarts (``persistence``, with ``snapshot_bodies`` and
  ``snapshot_pickling``);
- a faster path through two of moto's hot spots (``moto_speedups``).

``server`` composes them into one process; ``process`` starts, stops and finds that
process for the CLI. Every dependency on a moto internal lives in these modules, each
covered by a test that fails loudly when a moto upgrade breaks it. What moto does and does
not do, and why each piece is built as it is: ``docs/local-cloud.md``.
"""

#: Where the local cloud serves a stack's HTTP API: ``<endpoint>/_api/<apiId>/...``
#: (a ``$default`` stage, so no stage segment; no S3 bucket can be named ``_api``).
API_PATH_PREFIX = "/_api"


def api_url(endpoint: str, api_id: str) -> str:
    """The base URL of HTTP API ``api_id`` on the local cloud at ``endpoint``."""
    return f"{endpoint.rstrip('/')}{API_PATH_PREFIX}/{api_id}"


class MotoInternalsChanged(RuntimeError):
    """A moto internal the local cloud relies on is not where moto 5.2.5 kept it.

    Raised by the modules that touch moto's internals (each says what moved), so a moto
    upgrade fails loudly at start-up and in the tests instead of misbehaving later.
    """
