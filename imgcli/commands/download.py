"""``imgcli download``: objects of the stack's gallery bucket to local files.

The work is ``imgcli.download`` (the engine: placing keys safely, parallel verified
fetches, Ctrl-C); this module turns the command line into a ``DownloadRequest`` and the
engine's callbacks into output, in upload's shapes (``imgcli.commands.upload``):

* On a terminal, one transient rich progress line (files and bytes done of those queued so
  far, rate); nothing on a pipe or under ``--quiet``.
* Refused and failed objects are named on stderr as they happen, by key, as
  ``KEY: STATUS: REASON`` (``failure_line``; a refusal over a local path adds ``(at PATH)``),
  also under ``--quiet``: they are errors; ``--json`` prints one object per key on stdout
  instead (path, key, status, reason, bytes, seconds, etag, version_id, verified), then
  ``{"summary": {...}}``.
* People get a one-line summary on stderr; ``--dry-run`` also prints a table of what would
  happen to each key on stdout. Once started, every run ends with its summary, also when
  an error or Ctrl-C stops it (``"error": {"message", "exit_code"}`` in JSON).
* KEYs are checked as existing keys (``checked_existing_key``: control characters allowed,
  the object may have them), ``--prefix`` as a new key (``checked_new_key``), before any
  AWS work.

Exit codes: 0 when every object was downloaded or skipped; 1 when any was refused or
failed (the others still came); 130 on Ctrl-C, after the summary; a missing stack or
bucket, refused credentials and an unreachable endpoint keep their own codes (3, 4, 6).
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from imgcli.commands.frame import JsonFlag, command_invocation, reports_failures
from imgcli.errors import ExitCode, Failure, PartialFailure, UsageError
from imgcli.invocation import Invocation
from imgcli.output import TransferProgress, human_size, plural

if TYPE_CHECKING:
    from imgcli.download import DownloadRequest
    from imgcli.download_types import DownloadResult, DownloadSummary
    from imgcli.output import Output, ProgressDisplay


@reports_failures
def download_images(
    ctx: typer.Context,
    keys: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="KEY",
            help="Keys to download; each lands as its file name in --to.",
            show_default=False,
        ),
    ] = None,
    prefix: Annotated[
        str | None,
        typer.Option(
            "--prefix",
            "-p",
            help="Download every object under this prefix, at its path relative to it "
            "(as 'aws s3 cp --recursive'; 'photos' means 'photos/'; '' is the whole bucket).",
            show_default=False,
        ),
    ] = None,
    to: Annotated[
        Path, typer.Option("--to", metavar="DIR", help="The folder to download into.")
    ] = Path(),
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            max=256,
            help="Objects fetched at once. Default: 16.",
            show_default=False,
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace local files that hold different content."),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Show what would be downloaded, skipped and refused; write nothing."
        ),
    ] = False,
    json_output: JsonFlag = False,
    version_id: Annotated[
        str | None,
        typer.Option(
            "--version-id",
            metavar="VERSION",
            help="Download this version of the one KEY given (see 'imgcli versions').",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Download images from the stack's bucket to local files.

    A key that would land outside the folder (a '..' segment, a leading '/', a NUL) is
    refused. Each file is written to a hidden temporary name, verified (the stored
    SHA-256, else the ETag) and only then renamed into place, so Ctrl-C or a failure
    never leaves a partial file. A local file with the same content is skipped, so running
    the same download again fetches nothing; different content is refused unless
    --overwrite.

    Example: imgcli download --prefix trips/2024/ --to ~/Pictures/trip
    """
    from imgcli.download import Downloader
    from imgcli.download_types import DownloadConfig, DownloadInterrupted, DownloadStopped

    run = command_invocation(ctx, json_output)
    request = _request(keys or [], prefix, to, version_id)
    defaults = DownloadConfig()
    config = DownloadConfig(jobs=jobs or defaults.jobs)
    bucket = run.settings.record("bucket")
    client = run.aws().client("s3", max_pool_connections=config.pool_connections)
    reporter = _Reporter(run.output, dry_run=dry_run)
    try:
        with run.output.progress() as display:
            reporter.show_on(display)
            summary = Downloader(client, bucket, config).download(
                request, overwrite=overwrite, dry_run=dry_run, listener=reporter
            )
    except DownloadInterrupted as interrupted:
        _show_summary(run, reporter, interrupted.summary)
        raise
    except DownloadStopped as stopped:
        _show_summary(run, reporter, stopped.summary, error=stopped.cause)
        raise stopped.cause from None  # its own exit code and message
    _show_summary(run, reporter, summary)
    if summary.not_downloaded:
        raise NotAllDownloaded(summary, json_mode=run.output.json_mode)


def register(app: typer.Typer) -> None:
    """Add ``download`` to the imgcli app."""
    app.command("download")(download_images)


def _request(
    keys: list[str],
    prefix: str | None,
    to: Path,
    version_id: str | None,
) -> DownloadRequest:
    """The request the command line makes; ``UsageError`` before any AWS work."""
    from imgcli.download import DownloadRequest
    from imgcli.keys import checked_existing_key, checked_new_key

    if keys and prefix is not None:
        raise UsageError("give KEYs or --prefix, not both")
    if not keys and prefix is None:
        raise UsageError("nothing to download", hint="give KEYs, or --prefix for a folder")
    if version_id is not None and len(keys) != 1:
        raise UsageError("--version-id needs exactly one KEY (and no --prefix)")
    for key in keys:
        checked_existing_key(key, "KEY")
        if key.endswith("/"):
            raise UsageError(
                f"KEY {key!r} ends in '/': a folder, not an object",
                hint=f"use --prefix {shlex.quote(key)} to download what is under it",
            )
    if prefix is not None:
        checked_new_key(prefix, "--prefix")
    if to.exists() and not to.is_dir():
        raise UsageError(f"--to {str(to)!r} is not a folder")
    return DownloadRequest(to, tuple(keys), prefix, version_id)


class NotAllDownloaded(PartialFailure):
    """Some objects were refused or failed (exit code 1); the others came."""

    def __init__(self, summary: DownloadSummary, *, json_mode: bool) -> None:
        where = "the records with status refused or failed" if json_mode else "the lines above"
        super().__init__(
            summary.not_downloaded, summary.files, "files", hint=f"{where} say which and why"
        )
        self.message = (
            f"{summary.not_downloaded} of {plural(summary.files, 'file')} not downloaded: "
            f"{summary.refused} refused, {summary.failed} failed"
        )
        self.args = (self.message,)


class _Reporter:
    """The engine's listener: progress, and per-key lines or records."""

    def __init__(self, output: Output, *, dry_run: bool, clock: Any = time.monotonic) -> None:
        self.output = output
        self.dry_run = dry_run
        #: What a dry run shows people at the end.
        self.rows: list[dict[str, Any]] = []
        self.progress = TransferProgress(clock)

    def show_on(self, display: ProgressDisplay) -> None:
        self.progress.show_on(display, "listing")

    def queued(self, size: int) -> None:
        self.progress.queued(size)

    def received(self, amount: int) -> None:
        self.progress.moved(amount)

    def finished(self, result: DownloadResult) -> None:
        if result.status in ("downloaded", "failed", "skipped", "would_download"):
            self.progress.file_done()
        if self.output.json_mode:
            self.output.document(result.as_json(), columns=(), rows=())
        elif self.dry_run:
            self.rows.append(result.as_json())
        elif result.status in ("refused", "failed"):
            self.output.failure(Failure(failure_line(result), ExitCode.SOME_FAILED))


def failure_line(result: DownloadResult) -> str:
    """``KEY: STATUS: REASON`` for a refused or failed object: always named by its key, so
    one run names things one way; the local path is added only to a refusal it caused (a
    file or folder in the way, two keys landing on one file)."""
    line = f"{result.key}: {result.status}: {result.reason}"
    if result.status == "refused" and result.path is not None:
        line += f" (at {result.path})"
    return line


def _show_summary(
    run: Invocation,
    reporter: _Reporter,
    summary: DownloadSummary,
    *,
    error: Exception | None = None,
) -> None:
    data = summary.as_json()
    if error is not None:
        failure = run.describe_failure(error)
        data["error"] = {"message": failure.message, "exit_code": int(failure.exit_code)}
    if run.output.json_mode:
        run.output.document({"summary": data}, columns=(), rows=())
        return
    if reporter.rows:
        run.output.records(
            reporter.rows, columns=("key", "path", "status", "reason"), title="dry run"
        )
    run.output.info(summary_line(summary, stopped=error is not None))


def summary_line(summary: DownloadSummary, *, stopped: bool = False) -> str:
    """The summary people read: what was received, how fast, and what was not."""
    others = [
        f"{count} {what}"
        for count, what in (
            (summary.skipped, "skipped (same content)"),
            (summary.refused, "refused"),
            (summary.failed, "failed"),
        )
        if count
    ]
    rest = f"; {', '.join(others)}" if others else ""
    received = f"{plural(summary.downloaded, 'file')} ({human_size(summary.bytes_received)})"
    if summary.dry_run:
        return (
            f"dry run: would download {plural(summary.would_download, 'file')}{rest}; "
            "nothing written"
        )
    if summary.interrupted:
        return f"interrupted: {received} downloaded before Ctrl-C{rest}; no partial file was left"
    if stopped:
        return f"stopped by an error: {received} downloaded before it{rest}"
    if not summary.downloaded:
        return "nothing to download: " + (", ".join(others) if others else "no objects found")
    seconds = max(summary.seconds, 1e-3)
    return (
        f"downloaded {received} in {summary.seconds:.1f} s "
        f"({summary.downloaded / seconds:.0f} files/s, "
        f"{human_size(int(summary.bytes_received / seconds))}/s){rest}"
    )
