"""``imgcli upload``: send image files to the stack's bucket; the stack indexes them.

The work is ``imgcli.upload`` (the engine: checks, the one-listing skip decision,
concurrent and multipart transfers, Ctrl-C); this module turns the command line into an
``imgcli.upload_walk.Selection`` and an ``UploadConfig``, and the engine's callbacks into
output:

* On a terminal, one transient rich progress line (files and bytes done of those queued so
  far, rate, ETA). Totals grow while the walk runs, because the walk is streamed rather
  than counted first.
* Refused and failed files are named on stderr as they happen, each with its reason, and
  also under ``--quiet`` (they are errors); ``--json`` prints one object per file on stdout
  instead (path, key, status, reason, bytes, seconds, content_type, etag, replaced), then
  ``{"summary": {...}}``, the shape ``delete --json`` uses.
* People get a one-line summary on stderr; ``--dry-run`` also prints a table of what would
  happen to each file on stdout. Once the upload has started, every run ends with its
  summary, also when an error stops it (the bucket gone, credentials refused, the network
  down, Ctrl-C, a failure while waiting): the summary then says what was sent before, with
  the error (``"error": {"message", "exit_code"}`` in JSON), and the exit code stays the
  error's.
* ``--prefix`` names keys to come, so it must be a key S3 and a terminal can take (valid
  UTF-8, no control characters, at most 1,024 bytes: ``imgcli.keys.checked_new_key``); it
  is checked before anything is read or sent.
* ``--wait`` then polls the API (``imgcli.gallery_api``) until it lists every uploaded key
  with the ETag just uploaded, so after an overwrite it waits for the new details.

Exit codes: 0 when every file was uploaded or skipped; 1 when any was refused or failed
(the others still went); 130 on Ctrl-C, after a summary of what finished; 5 when
``--wait`` timed out. Filter order matters (later filters win), and Click keeps each
option's values apart, so ``UploadCommand`` records the order in which ``--include`` and
``--exclude`` were given.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
from typer.core import TyperCommand

from imgcli.commands.frame import JsonFlag, command_invocation, reports_failures
from imgcli.errors import ExitCode, Failure, PartialFailure, RemoteError
from imgcli.invocation import Invocation
from imgcli.output import TransferProgress, human_size, plural

if TYPE_CHECKING:
    from imgcli.index_wait import IndexWait
    from imgcli.output import Output, ProgressDisplay
    from imgcli.upload_types import FileResult, UploadSummary
    from imgcli.upload_walk import PathFilter

#: Where ``UploadCommand`` leaves the order of the filter options, in ``ctx.meta``.
FILTER_ORDER: Final = "imgcli.upload.filter_order"
_FILTER_OPTIONS: Final = ("include", "exclude")
_UNITS: Final = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE: Final = re.compile(r"(\d+)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)


class UploadCommand(TyperCommand):
    """The upload command, also recording the order of ``--include`` and ``--exclude``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        # Click's parser reports every option occurrence in order; its result then groups
        # values per option. A first parse of a copy keeps that order (a bad command line
        # fails here exactly as it would below).
        _, _, order = self.make_parser(ctx).parse_args(args=list(args))
        ctx.meta[FILTER_ORDER] = [param.name for param in order if param.name in _FILTER_OPTIONS]
        return super().parse_args(ctx, args)


def ordered_filters(
    order: Sequence[str], include: Sequence[str], exclude: Sequence[str]
) -> list[PathFilter]:
    """``--include`` and ``--exclude`` values interleaved as they were given."""
    from imgcli.upload_walk import PathFilter

    values = {"include": iter(include), "exclude": iter(exclude)}
    filters = [
        PathFilter(pattern, name == "include")
        for name in order
        for pattern in [next(values[name], None)]
        if pattern is not None
    ]
    # Values whose position is unknown (not parsed by UploadCommand) keep the option order.
    filters += [PathFilter(pattern, True) for pattern in values["include"]]
    filters += [PathFilter(pattern, False) for pattern in values["exclude"]]
    return filters


def parse_size(text: str) -> int:
    """A size in bytes: ``5000000``, ``20M``, ``1.5G`` is not accepted, ``512KiB`` is."""
    match = _SIZE.fullmatch(text.strip())
    if match is None or int(match[1]) == 0:
        raise typer.BadParameter(
            f"{text!r} is not a size: give bytes, or a whole number with K, M or G (1K = 1024)"
        )
    return int(match[1]) * _UNITS[match[2].lower()]


@reports_failures
def upload_images(
    ctx: typer.Context,
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="PATH",
            help="Image files, or folders with --recursive.",
            show_default=False,
        ),
    ],
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="Upload the images in folders and below.")
    ] = False,
    include: Annotated[
        list[str] | None,
        typer.Option(
            "--include",
            metavar="GLOB",
            help="Upload files whose path (relative to the folder given) matches. "
            "Filters apply in the order given and the last one matching a file decides; "
            "'*' also matches '/'. If the first filter is --include, files no filter "
            "matches are left out.",
            show_default=False,
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude",
            metavar="GLOB",
            help="Leave out files whose relative path matches (see --include for the order).",
            show_default=False,
        ),
    ] = None,
    prefix: Annotated[
        str,
        typer.Option(
            "--prefix",
            "-p",
            help="Put this before every key, as is: end it with '/' for a folder.",
        ),
    ] = "",
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace objects that exist with different content."),
    ] = False,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            max=256,
            help="Concurrent requests. Default: 16.",
            show_default=False,
        ),
    ] = None,
    max_size: Annotated[
        int | None,
        typer.Option(
            "--max-size",
            metavar="SIZE",
            parser=parse_size,
            help="Refuse larger files: bytes, or with K, M, G (1K = 1024). Default: 256M.",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Show what would be sent, skipped and refused; send nothing."
        ),
    ] = False,
    json_output: JsonFlag = False,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Return only when the API lists every uploaded image as the version just "
            "uploaded.",
        ),
    ] = False,
    wait_timeout: Annotated[
        float, typer.Option("--wait-timeout", min=0, help="Seconds --wait waits at most.")
    ] = 60.0,
) -> None:
    """Upload images to the stack's bucket; the stack then indexes them.

    Every file is checked before it is sent (an image in an accepted format, complete,
    under the pixel limit and --max-size); the others still go when one is refused.
    A key that already holds the same content is skipped, so running the same upload
    again sends nothing; different content is refused unless --overwrite. A file's key
    is --prefix plus its path relative to the folder given, or plus its name.

    Example: imgcli upload ~/Pictures/trip --recursive --prefix trips/2024/ --wait
    """
    from imgcli.keys import checked_new_key
    from imgcli.upload import Uploader
    from imgcli.upload_transfer import UploadStopped
    from imgcli.upload_types import UploadConfig, UploadInterrupted
    from imgcli.upload_walk import Selection, check_paths

    run = command_invocation(ctx, json_output)
    checked_new_key(prefix, "--prefix")  # a usage error before any file is read or sent
    selection = Selection(
        tuple(paths),
        prefix=prefix,
        recursive=recursive,
        filters=tuple(
            ordered_filters(ctx.meta.get(FILTER_ORDER, ()), include or (), exclude or ())
        ),
    )
    check_paths(selection)  # a usage error before any AWS work
    defaults = UploadConfig()
    config = UploadConfig(jobs=jobs or defaults.jobs, max_size=max_size or defaults.max_size)
    bucket = run.settings.record("bucket")
    client = run.aws().client("s3", max_pool_connections=config.pool_connections)
    reporter = _Reporter(run.output, dry_run=dry_run, keep_uploaded=wait and not dry_run)
    try:
        with run.output.progress() as display:
            reporter.show_on(display)
            summary = Uploader(client, bucket, config).upload(
                selection, overwrite=overwrite, dry_run=dry_run, listener=reporter
            )
    except UploadInterrupted as interrupted:
        _show_summary(run, reporter, interrupted.summary, None)
        raise
    except UploadStopped as stopped:
        _show_summary(run, reporter, stopped.summary, None, error=stopped.cause)
        raise stopped.cause from None  # its own exit code and message
    waited = None
    if reporter.uploaded:
        try:
            waited = _wait_for_index(run, reporter.uploaded, wait_timeout)
        except KeyboardInterrupt:
            _show_summary(run, reporter, summary, None)
            raise
        except Exception as failed:
            _show_summary(run, reporter, summary, None, error=failed)
            raise
    _show_summary(run, reporter, summary, waited)
    if waited is not None and waited.pending:
        example = min(waited.pending)
        raise RemoteError(
            f"the API does not list {plural(len(waited.pending), 'uploaded image')} as "
            f"uploaded after {wait_timeout:g} s (e.g. {example!r})",
            hint="the stack's save function may be failing or slow: look at its "
            "failed-events queue, or raise --wait-timeout",
        )
    if summary.not_uploaded or (waited is not None and waited.invalid):
        raise NotAllUploaded(summary, waited, json_mode=run.output.json_mode)


def register(app: typer.Typer) -> None:
    """Add ``upload`` to the imgcli app."""
    app.command("upload", cls=UploadCommand)(upload_images)


class NotAllUploaded(PartialFailure):
    """Some files were refused or failed (exit code 1); the others went."""

    def __init__(
        self, summary: UploadSummary, waited: IndexWait | None, *, json_mode: bool
    ) -> None:
        invalid = len(waited.invalid) if waited is not None else 0
        failed = summary.not_uploaded + invalid
        where = "the records with status refused or failed" if json_mode else "the lines above"
        super().__init__(failed, summary.files, "files", hint=f"{where} say which and why")
        parts = [f"{summary.refused} refused", f"{summary.failed} failed"]
        if invalid:
            parts.append(f"{invalid} found invalid by the stack")
        self.message = (
            f"{failed} of {plural(summary.files, 'file')} not uploaded: {', '.join(parts)}"
        )
        self.args = (self.message,)


class _Reporter:
    """The engine's listener: progress, per-file lines or records, and what --wait needs."""

    def __init__(
        self,
        output: Output,
        *,
        dry_run: bool,
        keep_uploaded: bool,
        clock: Any = time.monotonic,
    ) -> None:
        self.output = output
        self.dry_run = dry_run
        self.keep_uploaded = keep_uploaded
        #: key -> ETag of every uploaded file, for --wait.
        self.uploaded: dict[str, str] = {}
        #: What a dry run shows people at the end.
        self.rows: list[dict[str, Any]] = []
        self.progress = TransferProgress(clock)

    def show_on(self, display: ProgressDisplay) -> None:
        self.progress.show_on(display, "checking files")

    def queued(self, size: int) -> None:
        self.progress.queued(size)

    def sent(self, amount: int) -> None:
        self.progress.moved(amount)

    def finished(self, result: FileResult) -> None:
        if result.status in ("uploaded", "failed"):
            self.progress.file_done()
        if result.status == "uploaded" and self.keep_uploaded and result.etag and result.key:
            self.uploaded[result.key] = result.etag
        if self.output.json_mode:
            self.output.document(result.as_json(), columns=(), rows=())
        elif self.dry_run:
            self.rows.append(result.as_json())
        elif result.status in ("refused", "failed"):
            self.output.failure(
                Failure(f"{result.path}: {result.status}: {result.reason}", ExitCode.SOME_FAILED)
            )


def _wait_for_index(run: Invocation, uploaded: Mapping[str, str], timeout_s: float) -> IndexWait:
    from imgcli.gallery_api import gallery_api_for
    from imgcli.index_wait import wait_until_indexed

    run.output.info(
        f"waiting until the API lists {plural(len(uploaded), 'uploaded image')} "
        f"(at most {timeout_s:g} s)"
    )
    waited = wait_until_indexed(gallery_api_for(run), uploaded, timeout_s=timeout_s)
    for key, reason in sorted(waited.invalid.items()):
        run.output.failure(
            Failure(f"{key}: the stack could not read it: {reason}", ExitCode.SOME_FAILED)
        )
    return waited


def _show_summary(
    run: Invocation,
    reporter: _Reporter,
    summary: UploadSummary,
    waited: IndexWait | None,
    *,
    error: Exception | None = None,
) -> None:
    """The summary every run ends with; ``error`` is what stopped it, if anything but
    Ctrl-C did (it is reported on its own line afterwards, by the command's frame)."""
    data = summary.as_json()
    if waited is not None:
        data.update(
            listed=waited.listed, invalid=len(waited.invalid), not_listed=len(waited.pending)
        )
    if error is not None:
        failure = run.describe_failure(error)
        data["error"] = {"message": failure.message, "exit_code": int(failure.exit_code)}
    if run.output.json_mode:
        run.output.document({"summary": data}, columns=(), rows=())
        return
    if reporter.rows:
        run.output.records(
            reporter.rows, columns=("path", "key", "status", "reason"), title="dry run"
        )
    run.output.info(summary_line(summary, waited, stopped=error is not None))


def summary_line(
    summary: UploadSummary, waited: IndexWait | None = None, *, stopped: bool = False
) -> str:
    """The summary people read: what was sent, how fast, and what was not; ``stopped``
    when an error (reported next) cut the run short."""
    others = [
        f"{count} {what}"
        for count, what in (
            (summary.skipped, "skipped (already uploaded)"),
            (summary.refused, "refused"),
            (summary.failed, "failed"),
            (summary.excluded, "excluded by filters"),
        )
        if count
    ]
    rest = f"; {', '.join(others)}" if others else ""
    if summary.dry_run:
        return f"dry run: would upload {plural(summary.would_upload, 'file')}{rest}; nothing sent"
    if summary.interrupted:
        return (
            f"interrupted: {plural(summary.uploaded, 'file')} uploaded before Ctrl-C{rest}; "
            "multipart uploads in progress were aborted"
        )
    if stopped:
        sent = f"{plural(summary.uploaded, 'file')} ({human_size(summary.bytes_sent)})"
        return f"stopped by an error: {sent} uploaded before it{rest}"
    if not summary.uploaded:
        return "nothing to upload: " + (", ".join(others) if others else "no files found")
    seconds = max(summary.seconds, 1e-3)
    line = (
        f"uploaded {plural(summary.uploaded, 'file')} ({human_size(summary.bytes_sent)}) in "
        f"{summary.seconds:.1f} s ({summary.uploaded / seconds:.0f} files/s, "
        f"{human_size(int(summary.bytes_sent / seconds))}/s)"
    )
    if summary.replaced:
        line += f", {summary.replaced} replacing different content"
    if waited is not None:
        line += f"; the API lists {waited.listed} of them"
    return line + rest
