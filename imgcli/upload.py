"""The upload engine: local files to the stack's bucket, checked, deduplicated, concurrent.

``imgcli upload`` is a batch tool (thousands of files from scripts), so the engine is
built like a transfer library rather than a command: collaborators come in through the
constructor (the S3 client, an ``UploadConfig``, a clock, a file opener), progress goes out
through an ``UploadListener``, and nothing here knows about typer, rich or the terminal.

``Uploader`` is its entry point; the parts are one module each: ``imgcli.upload_types``
(the configuration and the results), ``imgcli.upload_walk`` (the selection, the walk and
the check of each file), ``imgcli.upload_listing`` (the bucket listing and the hashes that
compare with it), ``imgcli.upload_plan`` (the planner's decisions) and
``imgcli.upload_transfer`` (the dispatcher, the workers, Ctrl-C). ``imgcli.index_wait``
waits, afterwards, until the stack has indexed what was sent.

**Pipeline.** One *planner* thread walks the paths, checks each file and decides what to
do with it (one: ``describe_image`` captures Pillow's warnings and log records under a
process-wide lock, so checks on more threads would only queue for it); the caller's
thread (the *dispatcher*) starts transfers, collects their outcomes and calls the
listener, so every listener call, and a Ctrl-C, arrives on the caller's thread; worker
threads only send. Each file is checked before it is queued, so a bad file is never
sent, and the checks overlap the transfers of earlier files instead of delaying the
first one. Memory is bounded for any number of files: the walk is a generator holding
one sorted folder listing per level, at most ``UploadConfig.lookahead`` decided files
wait for a transfer, two pages of the bucket listing are held, and file contents are
streamed, never read whole.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from imgcli.upload_transfer import Batch
from imgcli.upload_types import FileResult, UploadConfig, UploadListener, UploadSummary
from imgcli.upload_walk import Selection, find_roots


class _Silent:
    def queued(self, size: int) -> None:
        return None

    def sent(self, amount: int) -> None:
        return None

    def finished(self, result: FileResult) -> None:
        return None


def _open_binary(path: Path) -> IO[bytes]:
    return path.open("rb")


class Uploader:
    """Uploads a ``Selection`` to ``bucket`` with ``client`` (a boto3 S3 client whose pool
    holds ``config.pool_connections``). ``clock`` times transfers (seconds, monotonic);
    ``open_file`` opens a file for reading (the seam for file-system failures)."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        config: UploadConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        open_file: Callable[[Path], IO[bytes]] = _open_binary,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.config = config if config is not None else UploadConfig()
        self.clock = clock
        self.open_file = open_file

    def upload(
        self,
        selection: Selection,
        *,
        overwrite: bool = False,
        dry_run: bool = False,
        listener: UploadListener | None = None,
    ) -> UploadSummary:
        """Upload what ``selection`` names; returns the summary.

        Raises ``UsageError`` before anything happens if a path does not exist or is a folder
        without ``recursive``; ``UploadInterrupted`` on Ctrl-C; ``UploadStopped``
        (``imgcli.upload_transfer``), holding the failure and the summary so far, when an
        error that concerns the whole batch (listing the bucket, credentials, an unreachable
        endpoint) stopped it, after the transfers in flight have ended.
        """
        roots = find_roots(selection)
        batch = Batch(
            self.client,
            self.bucket,
            self.config,
            selection,
            roots,
            overwrite=overwrite,
            dry_run=dry_run,
            listener=listener or _Silent(),
            clock=self.clock,
            open_file=self.open_file,
        )
        return batch.run()
