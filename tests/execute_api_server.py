"""An ``ExecuteApi`` server for the HTTP API's test files, and the requests they send it.

A real werkzeug server on 127.0.0.1 runs the gate with ``ExecuteApi`` and moto's WSGI app
behind it, as the local cloud does; the API is created with boto3 through that same
server, so the tests also prove that requests outside ``/_api/`` still reach moto.
``invoke`` is a recording double (``Functions``) that answers per function ARN. Requests
are signed by botocore (``SigV4Auth``) and sent byte for byte with ``http.client`` so that
nothing re-encodes the path on the way.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    create_backend_app,
)

from imgcli.config import LOCAL_REGION
from imgcli.localcloud import api_url
from imgcli.localcloud.api_routes import moto_api_lookup
from imgcli.localcloud.execute_api import ExecuteApi
from imgcli.localcloud.gate import FixedIdentities
from imgcli.localcloud.identity import Principal
from tests.gate_harness import gate_on_loopback
from tests.localstack import create_http_api

REGION = LOCAL_REGION
KEY, SECRET = "LKIATESTEXECUTEAPI00", "execute-api-test-secret"
ROLE_KEY, ROLE_SECRET, ROLE_TOKEN = "ASIATESTEXECUTEAPI00", "execute-api-role", "role-token"
ROLE_ARN = f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/api-caller"
RECORDER_ARN = f"arn:aws:lambda:{REGION}:{DEFAULT_ACCOUNT_ID}:function:recorder"
RETRIEVE_ARN = f"arn:aws:lambda:{REGION}:{DEFAULT_ACCOUNT_ID}:function:retrieve"
CANNED = {
    "statusCode": 200,
    "headers": {"content-type": "application/json", "x-canned": "yes"},
    "body": '{"ok":true}',
    "isBase64Encoded": False,
}


Behaviour = Callable[[dict[str, Any]], Any]


def canned(_event: dict[str, Any]) -> dict[str, Any]:
    return CANNED


class Functions:
    """The ``invoke`` seam: records each call; answers with the behaviour set for the ARN."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.behaviours: dict[str, Behaviour] = {}

    def __call__(self, function_arn: str, event: dict[str, Any]) -> Any:
        self.calls.append((function_arn, event))
        behaviour: Behaviour = self.behaviours.get(function_arn, canned)
        return behaviour(event)

    @property
    def last_event(self) -> dict[str, Any]:
        return self.calls[-1][1]


class Clock:
    """The server's clock, movable so a signature can be made to expire."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class Authorizations:
    """The ``authorize`` seam: records each check; refuses the role in ``denied``."""

    def __init__(self) -> None:
        self.checked: list[tuple[str, str]] = []
        self.denied: set[str] = set()

    def __call__(self, principal: Principal, route_arn: str) -> bool:
        self.checked.append((principal.access_key_id, route_arn))
        return principal.role_arn not in self.denied


@dataclass
class Server:
    endpoint: str
    functions: Functions
    clock: Clock
    authorizations: Authorizations

    @property
    def netloc(self) -> str:
        return urlsplit(self.endpoint).netloc

    def reset(self) -> Server:
        """Forgets the calls and behaviours of the last test, and puts the clock back."""
        self.functions.calls.clear()
        self.functions.behaviours.clear()
        self.clock.offset = 0.0
        self.authorizations.checked.clear()
        self.authorizations.denied.clear()
        return self


@contextmanager
def serving_execute_api() -> Iterator[Server]:
    """``ExecuteApi`` and moto behind the gate on a loopback port, as the local cloud
    serves them."""
    functions = Functions()
    clock = Clock()
    authorizations = Authorizations()
    identities = FixedIdentities(
        [Principal(KEY, SECRET), Principal(ROLE_KEY, ROLE_SECRET, ROLE_TOKEN, ROLE_ARN)]
    )
    api = ExecuteApi(
        invoke=functions,
        apis=moto_api_lookup(DEFAULT_ACCOUNT_ID, REGION),
        identities=identities,
        region=REGION,
        authorize=authorizations,
        clock=clock,
    )
    aws = DomainDispatcherApplication(create_backend_app)
    with gate_on_loopback(aws, api, identities, clock=clock) as port:
        yield Server(f"http://127.0.0.1:{port}", functions, clock, authorizations)


def client(server: Server, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=server.endpoint,
        region_name=REGION,
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
    )


@dataclass
class Api:
    api_id: str
    base: str
    path: str


#: The stack's two routes, and two more for what they cannot show.
ROUTES = {
    "GET /images": "AWS_IAM",
    "GET /images/{key+}": "AWS_IAM",
    "POST /uploads": "AWS_IAM",
    "GET /public": "NONE",
}


def create_api(server: Server, function_arn: str, routes: Mapping[str, str]) -> Api:
    """An HTTP API with a ``$default`` stage whose ``routes`` (route key: authorization)
    all call ``function_arn``, created through the server (that is, in moto)."""
    api_id = create_http_api(
        client(server, "apigatewayv2"), "imgcli-test", function_arn, dict(routes)
    )
    base = api_url(server.endpoint, api_id)
    return Api(api_id, base, urlsplit(base).path)


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


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
        connection.request(method, target, body=body or None, headers=dict(headers or {}))
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
    key: str = KEY,
    secret: str = SECRET,
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
) -> dict[str, str]:
    """The headers botocore's SigV4 adds for this request, as imgcli's API client signs."""
    request = AWSRequest(
        method=method, url=server.endpoint + target, data=body, headers=dict(headers or {})
    )
    SigV4Auth(Credentials(key, secret, token), "execute-api", REGION).add_auth(request)
    return dict(request.headers.items())


def signed_send(server: Server, method: str, target: str, **options: Any) -> Reply:
    headers = signed(server, method, target, **options)
    return send(server, method, target, headers, options.get("body", b""))


def image_path(api: Api, key: str) -> str:
    return f"{api.path}/images/{quote(key, safe='/')}"
