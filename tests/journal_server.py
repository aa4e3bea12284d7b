"""What the journal's tests share: moto served over HTTP in this process, journaled or not.

The journal records requests as a WSGI server hands them over, so these tests send real
HTTP requests (plain boto3) to a werkzeug server on 127.0.0.1, as the local cloud does;
``wipe_moto`` stands for a crash (moto's state gone), and ``recover`` brings it back.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from moto.core.base_backend import BackendDict
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from imgcli.localcloud.journal import Fsync, JournalWriter
from imgcli.localcloud.journal_layer import EventLedger, Journaling, WsgiApp
from imgcli.localcloud.journal_recovery import Recovery, Replayer, recover

REGION = "us-east-1"
JOURNAL_KEY = b"j" * 32
SNAPSHOT_KEY = b"s" * 32


def moto_app() -> WsgiApp:
    """moto's WSGI application, as the server builds it (without the dispatch cache)."""
    app: WsgiApp = DomainDispatcherApplication(create_backend_app)
    return app


def wipe_moto() -> None:
    """What a killed process leaves in memory: nothing."""
    BackendDict.reset()


@contextmanager
def serving(app: WsgiApp) -> Iterator[str]:
    """``app`` on a free port of 127.0.0.1; its endpoint URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def client(service: str, endpoint: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        config=Config(retries={"total_max_attempts": 1}),
    )


@dataclass
class Journaled:
    """A journaled moto: its endpoint, and the journal's writer and ledger."""

    endpoint: str
    writer: JournalWriter
    ledger: EventLedger
    layer: Journaling


@contextmanager
def journaled_moto(
    directory: Path, *, generation: int = 1, fresh: bool = True, fsync: Fsync = os.fsync
) -> Iterator[Journaled]:
    """moto behind the journal layer, journaling into ``directory``."""
    writer = JournalWriter(directory, JOURNAL_KEY, generation, fresh=fresh, fsync=fsync)
    ledger = EventLedger()
    ledger.attach(writer)
    layer = Journaling(moto_app(), writer=writer, ledger=ledger, lock=threading.Lock())
    with serving(layer) as endpoint:
        yield Journaled(endpoint, writer, ledger, layer)


def recovered(
    directory: Path, snapshot: Path, replayers: dict[str, Replayer] | None = None
) -> Recovery:
    """After ``wipe_moto``: the snapshot and the journal in ``directory`` back in moto."""
    return recover(
        directory,
        snapshot=snapshot,
        snapshot_key=SNAPSHOT_KEY,
        journal_key=JOURNAL_KEY,
        app=moto_app(),
        replayers=replayers or {},
    )
