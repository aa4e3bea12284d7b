"""The gate on a real loopback server, for the gate's and the HTTP API's test files.

``serving_gate`` runs moto's WSGI app and an ``ExecuteApi`` behind ``gate.Gatekeeper`` on
a werkzeug server in a thread (moto's request handler, as the local cloud serves them),
with the identities of ``IDENTITIES`` (the owner, a role session, an expired one) and a
clock the tests can move. Requests go out byte for byte with ``http.client`` (``send``) so
nothing re-encodes a path, or through boto3 clients (``client``) and botocore's signers.

``aws_chunked`` writes S3's signed streaming bodies (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``
and its trailer form). It is written from AWS's description, independently of
``sigv4_chunked``, and a test shows it reproduces the signatures of AWS's published
example, so what it writes is what an SDK would send.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from imgcli.config import LOCAL_REGION
from imgcli.localcloud.api_routes import moto_api_lookup
from imgcli.localcloud.execute_api import ExecuteApi, Invoke, WsgiApp
from imgcli.localcloud.gate import FixedIdentities, Gatekeeper
from imgcli.localcloud.identity import Identities, Principal

REGION = LOCAL_REGION
KEY, SECRET = "LKIATESTGATE00000000", "gate-test-secret"
ROLE_KEY, ROLE_SECRET, ROLE_TOKEN = "ASIATESTGATEROLE0000", "gate-role-secret", "gate-role-token"
ROLE_ARN = f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/gate-test"
OLD_KEY, OLD_SECRET, OLD_TOKEN = "ASIATESTGATEOLD00000", "gate-old-secret", "gate-old-token"
HEALTH = {"service": "imgcli-local", "test": True}


class Clock:
    """The gate's clock, movable (or stopped at ``fixed``) so a signature or a session
    can be made to expire."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.fixed: float | None = None

    def __call__(self) -> float:
        return self.fixed if self.fixed is not None else time.time() + self.offset


def identities(clock: Clock) -> FixedIdentities:
    """The owner, a live role session, and one that expired an hour before ``clock``."""
    return FixedIdentities(
        [
            Principal(KEY, SECRET),
            Principal(ROLE_KEY, ROLE_SECRET, ROLE_TOKEN, ROLE_ARN, expires_at=clock() + 3600),
            Principal(OLD_KEY, OLD_SECRET, OLD_TOKEN, ROLE_ARN, expires_at=clock() - 3600),
        ]
    )


@dataclass
class Recorder:
    """Inside the gate: notes the principal of each request that reached moto."""

    app: Any
    principals: list[Principal | None] = field(default_factory=list)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        self.principals.append(environ.get("imgcli.principal"))
        return self.app(environ, start_response)


@dataclass
class Server:
    endpoint: str
    clock: Clock
    moto: Recorder
    health_queries: list[str]

    @property
    def netloc(self) -> str:
        return urlsplit(self.endpoint).netloc

    @property
    def port(self) -> int:
        return int(self.netloc.rpartition(":")[2])

    def reset(self) -> Server:
        self.clock.offset = 0.0
        self.clock.fixed = None
        self.moto.principals.clear()
        self.health_queries.clear()
        return self


@contextmanager
def gate_on_loopback(
    aws: WsgiApp,
    api: ExecuteApi,
    identities: Identities,
    *,
    health: Callable[[str], Mapping[str, Any]] = lambda raw_query: {},
    clock: Callable[[], float] = time.time,
) -> Iterator[int]:
    """A ``Gatekeeper`` in front of ``aws`` and ``api`` on a free loopback port (yielded),
    served by werkzeug in a thread as the local cloud serves it, until the block ends."""
    late: dict[str, Gatekeeper] = {}
    server = make_server(
        "127.0.0.1",
        0,
        lambda environ, start: late["gate"](environ, start),
        threaded=True,
        request_handler=MotoRequestHandler,
    )
    late["gate"] = Gatekeeper(
        aws,
        api,
        port=server.server_port,
        identities=identities,
        region=REGION,
        health=health,
        clock=clock,
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        thread.join(timeout=5)


@contextmanager
def serving_gate(invoke: Invoke | None = None) -> Iterator[Server]:
    """moto and the HTTP API behind the gate on a loopback port, as the local cloud serves
    them; ``invoke`` answers the HTTP API's function calls."""
    clock = Clock()
    moto = Recorder(DomainDispatcherApplication(create_backend_app))
    known = identities(clock)
    queries: list[str] = []

    def health(raw_query: str) -> dict[str, Any]:
        queries.append(raw_query)
        return HEALTH

    api = ExecuteApi(
        invoke=invoke or (lambda arn, event: {"statusCode": 200, "body": "ok"}),
        apis=moto_api_lookup(DEFAULT_ACCOUNT_ID, REGION),
        identities=known,
        region=REGION,
        clock=clock,
    )
    with gate_on_loopback(moto, api, known, health=health, clock=clock) as port:
        yield Server(f"http://127.0.0.1:{port}", clock, moto, queries)


def client(
    server: Server,
    service: str,
    *,
    key: str = KEY,
    secret: str = SECRET,
    token: str | None = None,
    **config: Any,
) -> Any:
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=server.endpoint,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=Config(retries={"max_attempts": 1}, **config),
    )


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def code(self) -> str:
        """The error code, wherever the service's format puts it."""
        text = self.body.decode(errors="replace")
        if "<Code>" in text:
            return text.split("<Code>", 1)[1].split("</Code>", 1)[0]
        return str(self.json().get("__type", ""))


def send(
    server: Server,
    method: str,
    target: str,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
) -> Reply:
    """One request with exactly this target (path and query) and these headers."""
    connection = http.client.HTTPConnection(server.netloc, timeout=10)
    try:
        connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        sent = {"host": server.netloc, **{k.lower(): v for k, v in (headers or {}).items()}}
        if body or method in ("PUT", "POST"):
            sent.setdefault("content-length", str(len(body)))
        for name, value in sent.items():
            connection.putheader(name, value)
        connection.endheaders(body or None)
        response = connection.getresponse()
        return Reply(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        connection.close()


def signed(
    server: Server,
    method: str,
    target: str,
    *,
    service: str = "s3",
    key: str = KEY,
    secret: str = SECRET,
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
) -> dict[str, str]:
    """The headers botocore's SigV4 (S3's for ``s3``) adds to this request."""
    request = AWSRequest(
        method=method, url=server.endpoint + target, data=body, headers=dict(headers or {})
    )
    signer_class = S3SigV4Auth if service == "s3" else SigV4Auth
    signer_class(Credentials(key, secret, token), service, REGION).add_auth(request)
    return dict(request.headers.items())


def signed_send(server: Server, method: str, target: str, **options: Any) -> Reply:
    headers = signed(server, method, target, **options)
    return send(server, method, target, headers, options.get("body", b""))


# --- S3's signed streaming bodies ------------------------------------------------------


def signing_key(secret: str, date: str, service: str = "s3") -> bytes:
    key = hmac.new(f"AWS4{secret}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (REGION, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _hmac_hex(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def aws_chunked(
    data: bytes,
    *,
    seed_signature: str,
    timestamp: str,
    secret: str,
    chunk_size: int = 65536,
    trailer: tuple[str, str] | None = None,
) -> bytes:
    """``data`` as ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` (``-TRAILER`` with ``trailer``)."""
    key = signing_key(secret, timestamp[:8])
    scope = f"{timestamp[:8]}/{REGION}/s3/aws4_request"
    empty = hashlib.sha256(b"").hexdigest()
    previous, out = seed_signature, b""
    chunks = [data[at : at + chunk_size] for at in range(0, len(data), chunk_size)] + [b""]
    for chunk in chunks:
        text = "\n".join(
            (
                "AWS4-HMAC-SHA256-PAYLOAD",
                timestamp,
                scope,
                previous,
                empty,
                hashlib.sha256(chunk).hexdigest(),
            )
        )
        previous = _hmac_hex(key, text)
        out += f"{len(chunk):x};chunk-signature={previous}\r\n".encode() + chunk
        if chunk:
            out += b"\r\n"
    if trailer is None:
        return out + b"\r\n"
    name, value = trailer
    canonical = f"{name}:{value}\n".encode()
    text = "\n".join(
        (
            "AWS4-HMAC-SHA256-TRAILER",
            timestamp,
            scope,
            previous,
            hashlib.sha256(canonical).hexdigest(),
        )
    )
    signature = _hmac_hex(key, text)
    return out + f"{name}:{value}\r\nx-amz-trailer-signature:{signature}\r\n\r\n".encode()


def crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


Sender = Callable[..., Reply]
