"""The health check, and the proof that the answer comes from this data dir's local cloud.

``process`` decides whether the local cloud runs from this answer alone, and then sends it
the user's listings and images; ``stop`` signals the pid it names. Anyone on the machine
may listen on a free port, though (after a crash, the very port ``server.json`` names) and
answer ``{"service": "imgcli-local", "pid": N}`` with the dead server's pid. So the
client sends a fresh random nonce (``GET /_imgcli/health?nonce=<hex>``) and the server
answers with ``proof``: HMAC-SHA256, keyed with ``OwnerKey.derived("health")``, of
``"<nonce>:<pid>"``. Only a process that can read the owner's secret can compute it, a
fresh nonce makes an old answer worthless, and the pid inside the MAC means ``stop`` only
signals a pid the server vouched for. Anything else that answers on the port, or accepts
the connection and says nothing sensible, is "something else".

``answer`` is the server's side (the gate calls it for the health path with the raw query
string); ``check`` is the client's.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import http.client
import json
import re
import secrets
import socket
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final
from urllib.parse import parse_qs

from imgcli.config import LOCAL_HOST
from imgcli.localcloud.secret import OwnerKey

HEALTH_PATH: Final = "/_imgcli/health"
SERVICE: Final = "imgcli-local"
#: The purpose ``OwnerKey.derived`` keys the proof with.
PURPOSE: Final = "health"
#: 128 random bits: a nonce is never reused, so no recorded answer can be replayed.
NONCE_BYTES: Final = 16
# A nonce the server signs: hex, of a sensible length (clients send 32 digits).
_NONCE = re.compile(r"[0-9a-f]{32,128}")
# A health answer is a few dozen bytes; anything listening could send much more.
_MAX_ANSWER_BYTES: Final = 4096


class Listener(Enum):
    """Who answered on the port."""

    NOBODY = "nobody"  # the connection was refused: the port is free
    OURS = "ours"  # proved it holds this data dir's secret
    SOMETHING_ELSE = "something else"  # anything else that holds the port


@dataclass(frozen=True)
class HealthCheck:
    listener: Listener
    #: The pid the server vouched for; only for ``Listener.OURS``.
    pid: int | None = None
    #: For ``SOMETHING_ELSE``: the pid it claimed as an imgcli local cloud without the
    #: proof (an older imgcli's server, another data dir's, or an impostor). Only for
    #: telling people what to look at: never signalled, never trusted.
    claimed_pid: int | None = None


def new_nonce() -> str:
    return secrets.token_hex(NONCE_BYTES)


def proof(owner: OwnerKey, nonce: str, pid: int) -> str:
    """What only a holder of the owner's secret can answer to ``nonce``, for ``pid``."""
    message = f"{nonce}:{pid}".encode()
    return hmac.new(owner.derived(PURPOSE), message, hashlib.sha256).hexdigest()


def answer(raw_query: str, owner: OwnerKey, pid: int) -> dict[str, Any]:
    """The server's answer to ``GET /_imgcli/health?<raw_query>``.

    Without a well-formed ``nonce`` (one, lower-case hex, 32-128 digits) the answer has no
    proof, and no client of this version trusts it.
    """
    body: dict[str, Any] = {"service": SERVICE, "pid": pid}
    nonces = parse_qs(raw_query, keep_blank_values=True).get("nonce", [])
    if len(nonces) == 1 and _NONCE.fullmatch(nonces[0]):
        body["proof"] = proof(owner, nonces[0], pid)
    return body


def check(port: int, owner: OwnerKey, *, timeout_s: float = 2.0) -> HealthCheck:
    """Who listens on ``127.0.0.1:port``: nobody, this data dir's local cloud, or else."""
    nonce = new_nonce()
    # http.client, not urllib: urllib would send a loopback request to an HTTP proxy
    # named in the environment.
    connection = http.client.HTTPConnection(LOCAL_HOST, port, timeout=timeout_s)
    try:
        connection.request("GET", f"{HEALTH_PATH}?nonce={nonce}")
        response = connection.getresponse()
        status = response.status
        body = response.read(_MAX_ANSWER_BYTES)
    except ConnectionRefusedError:
        return HealthCheck(Listener.NOBODY)
    except (OSError, http.client.HTTPException):
        return HealthCheck(Listener.SOMETHING_ELSE)
    finally:
        connection.close()
    return _judge(status, body, owner, nonce)


def nobody_listens(port: int, *, timeout_s: float = 2.0) -> bool:
    """Whether a connection to ``127.0.0.1:port`` is refused (no answer is asked for)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(timeout_s)
        return probe.connect_ex((LOCAL_HOST, port)) == errno.ECONNREFUSED


def _judge(status: int, body: bytes, owner: OwnerKey, nonce: str) -> HealthCheck:
    try:
        fields = json.loads(body) if status == 200 else None
    except ValueError:
        fields = None
    if not isinstance(fields, dict) or fields.get("service") != SERVICE:
        return HealthCheck(Listener.SOMETHING_ELSE)
    pid, claimed = fields.get("pid"), fields.get("proof")
    if type(pid) is not int or pid <= 0:
        return HealthCheck(Listener.SOMETHING_ELSE)
    expected = proof(owner, nonce, pid).encode()
    if not isinstance(claimed, str) or not hmac.compare_digest(
        claimed.encode(errors="replace"), expected
    ):
        return HealthCheck(Listener.SOMETHING_ELSE, claimed_pid=pid)
    return HealthCheck(Listener.OURS, pid)
