"""The one place imgcli makes AWS sessions and clients.

Every client imgcli uses comes from ``AwsClients.client``, so every client gets the same
treatment: the stack's endpoint, region and profile (``None`` lets boto3 apply its standard
chain), retry mode ``standard`` (bounded exponential backoff with jitter on throttling,
transient and connection errors; the attempt count stays botocore's, so ``AWS_MAX_ATTEMPTS``
and ``max_attempts`` in ``~/.aws/config`` still apply), a connection pool sized by the
caller to its concurrency (botocore's default of 10 makes 32 upload threads queue for
sockets), and ``imgcli/<version>`` in the user agent. A local stack also gets its fixed
access key and path-style S3 addressing (``bucket.127.0.0.1`` does not resolve).

Clients are cached per (service, pool size) for the life of one ``AwsClients``, and made
under a lock: sessions are not thread-safe, the clients they make are.

The session is botocore's own, not a boto3 ``Session`` around it: a boto3 client *is* the
botocore client such a session makes (boto3 adds resources and injected transfer methods,
which imgcli does not use), and importing boto3 costs some 15 ms of every command's
start-up. Credentials, profiles, regions and ``AWS_*`` variables resolve exactly as in
boto3, which delegates all of it to this session.

The region follows the AWS CLI v2 and the other SDKs, not this botocore, which reads only
``AWS_DEFAULT_REGION``: the stack's own region if it has one, else ``AWS_REGION``, then
``AWS_DEFAULT_REGION``, then the profile's ``region`` in ``~/.aws/config`` (the AWS CLI's
"Configuration and credential file settings": command line, then environment, then config
file). It is botocore's own chain with one more variable at its head, so ``--profile``
and every other source keep their places.

An error answer botocore cannot read becomes a ``ClientError`` all the same: the query
protocol (STS, IAM) raises ``ResponseParserError`` for an error body that is not XML (a
proxy's page, the local cloud's refusal of a host name it does not answer to), where
botocore's other parsers fall back to the HTTP status. ``_readable_error`` gives the
query protocol that same fallback (code: the status; message: the body's), so the user
is told which call was refused, with what status, in the usual words and exit code.

Timestamps in responses are parsed by ``parse_timestamp``: the ISO 8601 UTC form AWS
sends (``2026-11-27T04:29:39.000Z``, a ``LastModified`` in every S3 listing entry) with
``datetime.fromisoformat``, about 50 times faster than botocore's default (dateutil's
general parser: 45 ms per 1,000-key page, a third of a re-upload's listing pass); every
other form goes to botocore's own parser, so the values are the same aware datetimes.

This is the only imgcli module that makes sessions, and the CLI imports it inside the
commands that need AWS, so ``imgcli --help`` never loads botocore. No client is
made at import time (moto's rule: mocks start before any client exists).
"""

from __future__ import annotations

import datetime
import json
import threading
from collections.abc import Mapping
from typing import Any, Final
from xml.sax.saxutils import escape

import botocore.session
from botocore.config import Config
from botocore.configprovider import ConfigChainFactory
from botocore.utils import parse_timestamp as botocore_parse_timestamp

from imgcli import __version__
from imgcli.config import StackSettings
from imgcli.errors import SERVICE_ID_KEY
from imgcli.terminal_text import visible

# botocore's own default, for callers that make one request at a time.
DEFAULT_MAX_POOL_CONNECTIONS = 10
#: The environment variables that name the region, first match wins (AWS CLI v2's order).
REGION_VARIABLES: Final = ("AWS_REGION", "AWS_DEFAULT_REGION")
# Protocols whose error answers botocore reads only as XML, and raises on otherwise.
_XML_ONLY_ERROR_PROTOCOLS: Final = frozenset({"query", "ec2"})


def client_config(settings: StackSettings, max_pool_connections: int) -> Config:
    """The botocore configuration every imgcli client is made with."""
    s3_options = {"addressing_style": "path"} if settings.target == "local" else None
    return Config(
        retries={"mode": "standard"},
        max_pool_connections=max_pool_connections,
        user_agent_extra=f"imgcli/{__version__}",
        s3=s3_options,
    )


class AwsClients:
    """AWS clients for one stack, made once per (service, pool size) and then reused."""

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._session: botocore.session.Session | None = None
        self._clients: dict[tuple[str, int], Any] = {}

    @property
    def session(self) -> botocore.session.Session:
        """The botocore session (for credentials, e.g. to sign API calls)."""
        with self._lock:
            return self._session_unlocked()

    @property
    def region(self) -> str | None:
        """The region clients are made for: the stack's, else boto3's standard chain."""
        region: str | None = self.session.get_config_variable("region")
        return region

    def client(
        self, service: str, *, max_pool_connections: int = DEFAULT_MAX_POOL_CONNECTIONS
    ) -> Any:
        """A client for ``service``; pass the number of threads that will share it."""
        key = (service, max_pool_connections)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._session_unlocked().create_client(
                    service,
                    endpoint_url=self.settings.endpoint_url,
                    config=client_config(self.settings, max_pool_connections),
                )
                self._clients[key] = client
            return client

    def _session_unlocked(self) -> botocore.session.Session:
        if self._session is None:
            self._session = _new_session(self.settings)
        return self._session


def region_in_use(settings: StackSettings, environ: Mapping[str, str]) -> tuple[str | None, str]:
    """The region an aws stack's clients use when imgcli's own settings name none, and
    where it comes from, read as ``AwsClients`` reads it (no AWS call)."""
    for name in REGION_VARIABLES:
        if environ.get(name):
            return environ[name], f"env {name}"
    region = AwsClients(settings).region
    if region is None:
        return None, "not set (--region, AWS_REGION or the profile's region)"
    return region, f"profile '{settings.profile or 'default'}' in the AWS config file"


def parse_timestamp(value: Any) -> datetime.datetime:
    """A response timestamp as an aware datetime, as botocore's parser gives it, but fast
    for the ISO 8601 UTC form AWS sends."""
    if isinstance(value, str) and value.endswith("Z"):
        try:
            fast = datetime.datetime.fromisoformat(value)
        except ValueError:
            fast = None  # not ISO 8601 after all: botocore's parser decides
        if fast is not None and fast.tzinfo is not None:
            return fast
    parsed: datetime.datetime = botocore_parse_timestamp(value)
    return parsed


def _new_session(settings: StackSettings) -> botocore.session.Session:
    session = botocore.session.Session(profile=settings.profile)
    # botocore's region chain (instance value, environment, profile), AWS_REGION first.
    region_chain = ConfigChainFactory(session=session).create_config_chain(
        instance_name="region",
        env_var_names=list(REGION_VARIABLES),
        config_property_names="region",
    )
    session.get_component("config_store").set_config_provider("region", region_chain)
    if settings.region is not None:
        session.set_config_variable("region", settings.region)
    credentials = settings.credentials
    if credentials is not None:
        session.set_credentials(credentials.access_key_id, credentials.secret_access_key)
    session.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=parse_timestamp
    )
    session.register("before-parse", _readable_error)
    session.register("after-call", _name_service_in_error)
    return session


def _readable_error(response_dict: dict[str, Any], operation_model: Any, **_: Any) -> None:
    # Module docstring: an error answer that is not XML, for a protocol that reads only
    # XML, is rewritten as the error botocore's other parsers would make of it.
    status = response_dict["status_code"]
    protocol = operation_model.service_model.resolved_protocol
    if status < 300 or protocol not in _XML_ONLY_ERROR_PROTOCOLS:
        return
    body = response_dict.get("body") or b""
    if status >= 500 and not body.strip():
        return  # botocore's own generic error already covers an empty 5xx
    if body.lstrip().startswith(b"<"):
        return
    message = _message_of(body) or f"HTTP {status}"
    response_dict["body"] = (
        f"<ErrorResponse><Error><Code>{status}</Code><Message>{escape(message)}</Message>"
        "</Error></ErrorResponse>"
    ).encode()


def _message_of(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("message"), str):
        text = document["message"]
    # Escaped: XML 1.0 cannot carry most control characters, and a person reads it.
    return visible(text[:300])


def _name_service_in_error(http_response: Any, parsed: Any, model: Any, **_: Any) -> None:
    # botocore's ClientError names the operation but not the service; the error line should
    # say "S3 PutObject", so error responses carry the service id to imgcli.errors.
    if http_response.status_code >= 300 and isinstance(parsed, dict):
        metadata = parsed.setdefault("ResponseMetadata", {})
        metadata[SERVICE_ID_KEY] = str(model.service_model.service_id)
