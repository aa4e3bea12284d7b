"""The local cloud: the whole stack on 127.0.0.1, with no AWS account and no Docker.

moto (pinned exactly) serves the AWS APIs; this package adds what moto lacks:

- a Lambda runtime that runs the deployed code (``runtime``, on the warm worker processes
  of ``worker_pool`` and ``worker``), with AWS's asynchronous retries and destinations
  (``async_invoke``), wired into moto's Invoke (``moto_lambda``);
- S3 event delivery to the functions a bucket's notification configuration names
  (``s3_events``);
- a front door that lets in only requests signed with the owner's key or a role session's
  (``gate``, routing once on the raw path in ``gate_routing``; SigV4 in ``sigv4`` and
  ``sigv4_chunked``; limits in ``gate_services``; refusals in ``gate_errors``);
- the HTTP API's execute-api calls (``execute_api`` on ``api_routes`` and ``api_events``);
- functions that run as their roles: temporary credentials per worker
  (``role_sessions``), every such call authorised against the role's policies
  (``authorizer``, ``iam_policy``, ``iam_requests`` and its ``iam_requests_*``), their
  logs in their log groups (``function_logs``);
- state that survives a killed process: a journal fsynced before a change is acknowledged
  (``journal``, ``journal_layer``, ``journal_recovery``, ``journal_durability``,
  ``replay_determinism``) on top of snapshots (``persistence``, with ``snapshot_bodies``
  and ``snapshot_pickling``), all authenticated with the owner's secret;
- privacy: the owner's key pair and a private data dir (``secret``), a health check that
  proves the secret (``health``), an allow-listed server environment (``server_env``);
- AWS's answers where moto differs: keys with control characters taken and listed as S3
  does (``moto_s3_keys``), a taken Lambda statement id refused (``moto_lambda_policy``);
- a faster path through two of moto's hot spots (``moto_speedups``).

``server`` composes them into one process; ``process`` starts, stops and finds that
process for the CLI. Every dependency on a moto internal lives in these modules, each
covered by a test that fails loudly when a moto upgrade breaks it. What moto does and does
not do, and why each piece is built as it is: ``docs/local-cloud.md``.
"""

#: Where the local cloud serves a stack's HTTP API: ``<endpoint>/_api/<apiId>/...``
#: (a ``$default`` stage, so no stage segment; no S3 bucket can be named ``_api``). The
#: gate routes a request there when its raw path starts with exactly ``/_api/``.
API_PATH_PREFIX = "/_api"


def api_url(endpoint: str, api_id: str) -> str:
    """The base URL of HTTP API ``api_id`` on the local cloud at ``endpoint``."""
    return f"{endpoint.rstrip('/')}{API_PATH_PREFIX}/{api_id}"


class MotoInternalsChanged(RuntimeError):
    """A moto internal the local cloud relies on is not where moto 5.2.5 kept it.

    Raised by the modules that touch moto's internals (each says what moved), so a moto
    upgrade fails loudly at start-up and in the tests instead of misbehaving later.
    """
