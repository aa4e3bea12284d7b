"""``imgcli list``, ``show`` and ``delete``: read the gallery through the stack's API, delete
from its bucket.

Reading goes through the API (``imgcli.gallery_api``), never straight to the table: the
API is the stack's contract, the same for imgcli, scripts and any other client, and its
IAM authorization is what decides who may read. Deleting goes to S3, the source of truth;
the stack's save/delete function then tombstones each image in the index, which is why
``delete --wait`` watches the API until the images are gone from it.

Output decisions:

* ``list`` streams. NDJSON (``--json``, ``--output json``), CSV and text are written as
  pages arrive, so ``imgcli list | head`` shows the first rows before the last page is
  fetched. A rich table cannot grow once printed, so people get one table per API page
  (the first of 100 rows, then up to 1,000): the first rows show while later pages load,
  and memory stays bounded.
* ``list``'s default is a table on a terminal and ``text`` elsewhere: tab-separated lines
  of raw values (size in bytes, times as recorded), no header, as ``aws --output text``,
  so ``imgcli list | head -1`` is the first image, ``wc -l`` counts images and ``cut -f1``
  gives keys; the columns are fixed and named in ``--help`` (``--output csv`` has the
  header row for anyone who wants one). ``--output table`` keeps the table in a pipe.
* Keys are checked before any request (``imgcli.keys``): ``--prefix`` as a new key (no
  control characters), ``show KEY`` and ``delete KEY`` as existing keys (control characters
  allowed, so such an object stays reachable by naming it); what is printed is escaped by
  ``imgcli.output``.
* ``show`` of a key the API does not list ends with ``ImageNotFound``, exit code 1
  (``SOME_FAILED``: the one item asked for was not there), the same code ``delete`` gives a
  missing key, so a script tests one code for "not there" across commands.
* ``delete`` reports every key as ``imgcli.deletion`` settles it (deleted, missing,
  failed, would_delete), then a summary. Any missing or failed key makes the exit code 1.
  With ``--json`` the summary object is the last line of every run whose arguments were
  accepted, a failure part-way, a declined confirmation or a prefix with no match
  included, so a script always learns how far it got.
* Deleting everything takes ``--all``: an empty ``--prefix`` (``--prefix "$UNSET"``) is a
  usage error here, though other commands accept one, because here it would delete the
  whole gallery. The confirmation names the count.
  The bucket is versioned, so a deleted image stays recoverable as an old version for the
  stack's ``noncurrent-days``.
"""

from __future__ import annotations

import csv
import enum
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer

from imgcli.commands.frame import JsonFlag, YesFlag, command_invocation, reports_failures
from imgcli.deletion import (
    DEFAULT_WAIT_TIMEOUT_S,
    DeleteOutcome,
    DeletionPlan,
    delete_planned,
    dry_run_outcomes,
    plan_deletion,
    summarise,
    wait_until_unlisted,
)
from imgcli.errors import ExitCode, ImgcliError, PartialFailure, RemoteError, UsageError
from imgcli.invocation import Invocation
from imgcli.keys import checked_existing_key, checked_new_key
from imgcli.output import human_size, plural

if TYPE_CHECKING:
    from imgcli.output import Output


LIST_COLUMNS: Final = ("key", "format", "dimensions", "size", "uploaded")
INVALID_COLUMNS: Final = ("key", "size", "uploaded", "reason")
#: ``--output text`` fields, by the API's names (size in bytes): tab-separated, no header.
TEXT_COLUMNS: Final = ("key", "format", "width", "height", "size", "uploaded_at")
TEXT_INVALID_COLUMNS: Final = ("key", "size", "uploaded_at", "reason")
#: CSV columns: every field the API records, in its order (extra future fields follow).
CSV_COLUMNS: Final = (
    "key",
    "status",
    "format",
    "width",
    "height",
    "size",
    "content_type",
    "mode",
    "frames",
    "taken_at",
    "camera_make",
    "camera_model",
    "orientation",
    "uploaded_at",
    "indexed_at",
    "etag",
    "version_id",
    "reason",
    "thumbnail_reason",
    "schema_version",
)

#: Fields CSV leaves out: nested objects (a cell holds one value) and the short-lived links
#: that come with them. ``--json`` has them all.
CSV_LEFT_OUT: Final = frozenset({"thumbnails", "urls", "urls_expire_at"})
#: Fields ``show``'s table folds into one line of its own (``_detail_rows``).
LINK_FIELDS: Final = frozenset({"urls", "urls_expire_at"})


class ImageNotFound(ImgcliError):
    """The API lists no image under the key asked for (exit code 1, as a missing key in
    ``delete``)."""

    exit_code = ExitCode.SOME_FAILED


class NotAllDeleted(PartialFailure):
    """Some keys given to ``delete`` did not exist or could not be deleted (exit code 1)."""

    def __init__(self, missing: int, failed: int, total: int) -> None:
        super().__init__(
            missing + failed,
            total,
            "keys",
            hint="the per-key report above says which and why",
        )
        self.message = (
            f"{missing + failed} of {plural(total, 'key')} not deleted: "
            f"{missing} missing, {failed} failed"
        )
        self.args = (self.message,)


@dataclass
class DeleteProgress:
    """How far a ``delete`` got: each key's outcome so far, and whether keys were being
    reported (people get a summary line only then)."""

    outcomes: list[DeleteOutcome] = field(default_factory=list)
    reporting: bool = False


class OutputFormat(enum.StrEnum):
    table = "table"
    text = "text"
    json = "json"
    csv = "csv"


# Commands


@reports_failures
def list_gallery(
    ctx: typer.Context,
    prefix: Annotated[
        str | None, typer.Option("--prefix", "-p", help="Only keys that start with this.")
    ] = None,
    invalid: Annotated[
        bool,
        typer.Option("--invalid", help="List the objects the stack could not read as images."),
    ] = False,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=1, help="Stop after this many images.")
    ] = None,
    output_format: Annotated[
        OutputFormat | None,
        typer.Option(
            "--output",
            "-o",
            help="table (the default on a terminal), text (the default elsewhere: "
            "tab-separated key, format, width, height, size in bytes, uploaded_at; with "
            "--invalid key, size, uploaded_at, reason), json (one object per line, every "
            "field) or csv.",
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """List the gallery's images in key order, as the stack's API serves them.

    Rows print as pages arrive. On a terminal a table shows key, format, dimensions, size
    and upload time; piped, each image is one tab-separated line with no header (see
    --output); --json prints one JSON object per line with every recorded field; --output
    csv writes a spreadsheet with a header row.

    Example: imgcli list --prefix holiday/ --output csv > holiday.csv
    """
    from imgcli.gallery_api import gallery_api_for

    if prefix is not None:
        checked_new_key(prefix, "--prefix")
    run = command_invocation(ctx, json_output)
    chosen = _listing_format(run.output.json_mode, output_format, run.output.streams.stdout_isatty)
    pages = gallery_api_for(run).list_pages(prefix=prefix, invalid=invalid, limit=limit)
    if chosen is OutputFormat.json:
        run.output.json_mode = True
        run.output.records(chain.from_iterable(pages), columns=CSV_COLUMNS)
    elif chosen is OutputFormat.csv:
        write_csv(run.output, chain.from_iterable(pages))
    else:
        _print_pages(run, pages, invalid=invalid, prefix=prefix, text=chosen is OutputFormat.text)


@reports_failures
def show_image(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(metavar="KEY", help="The image's key.", show_default=False)],
    json_output: JsonFlag = False,
    preview: Annotated[
        bool,
        typer.Option("--preview", help="After the details, draw the thumbnail in the terminal."),
    ] = False,
) -> None:
    """Show one image's recorded details: format, dimensions, size, EXIF basics, times.

    Exit code 1 when the API lists no image with that key. --preview then draws its
    thumbnail (coloured half-blocks, or the terminal's inline images in kitty and iTerm2);
    an image without one says why on stderr and still exits 0. --preview and --json
    cannot go together.

    Example: imgcli show "holiday/beach 1.jpg" --preview
    """
    from imgcli.gallery_api import gallery_api_for

    if not key:
        raise UsageError("the image key must not be empty")
    checked_existing_key(key, "the image key")
    run = command_invocation(ctx, json_output)
    if preview and run.output.json_mode:
        raise UsageError("--preview draws on the terminal; --json writes JSON: pick one")
    image = gallery_api_for(run).get_image(key)
    if image is None:
        raise ImageNotFound(
            f"no image with key '{key}' in stack '{run.settings.name}'",
            hint="'imgcli list' shows the keys; 'imgcli list --invalid' the unreadable ones",
        )
    run.output.document(image, columns=("field", "value"), rows=_detail_rows(image), title=key)
    if preview and not run.output.quiet:
        from imgcli.preview import show_preview

        show_preview(run, image)


@reports_failures
def delete_images(
    ctx: typer.Context,
    keys: Annotated[
        list[str] | None,
        typer.Argument(metavar="KEY", help="Keys of the images to delete.", show_default=False),
    ] = None,
    prefix: Annotated[
        str | None,
        typer.Option(
            "--prefix",
            "-p",
            help="Delete every object whose key starts with this, after asking; not empty.",
        ),
    ] = None,
    everything: Annotated[
        bool, typer.Option("--all", help="Delete every object of the stack, after asking.")
    ] = False,
    yes: YesFlag = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be deleted; delete nothing.")
    ] = False,
    json_output: JsonFlag = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="Return only when the API no longer lists them.")
    ] = False,
    wait_timeout: Annotated[
        float,
        typer.Option("--wait-timeout", min=0, help="Seconds --wait waits at most."),
    ] = DEFAULT_WAIT_TIMEOUT_S,
) -> None:
    """Delete images from the stack's bucket; the stack removes them from the index.

    A key that does not exist is reported and makes the exit code 1. --prefix shows how
    many objects it holds and asks before deleting them (pass --yes where nobody can
    answer); deleting everything takes --all, and an empty --prefix is refused. Deleted
    images stay recoverable as old versions for the stack's noncurrent-days. --json prints
    one object per key, then a summary object, which ends every run, failed ones too.

    Example: imgcli delete "holiday/beach 1.jpg" old/a.png --wait
    """
    wanted, prefix = _deletion_request(keys or [], prefix, everything=everything)
    run = command_invocation(ctx, json_output)
    done = DeleteProgress()
    try:
        _delete(run, wanted, prefix, yes=yes, dry_run=dry_run, done=done)
    finally:
        # Also on the way out of a failure: a script learns how far the run got.
        summary = summarise(done.outcomes, dry_run=dry_run)
        if run.output.json_mode:
            run.output.document({"summary": summary}, columns=(), rows=())
        elif done.reporting:
            run.output.info(_summary_line(summary))
    deleted = [outcome.key for outcome in done.outcomes if outcome.status == "deleted"]
    if wait and deleted:
        _wait_for_index(run, deleted, prefix, wait_timeout)
    if summary["missing"] or summary["failed"]:
        raise NotAllDeleted(summary["missing"], summary["failed"], summary["total"])


def _deletion_request(
    keys: Sequence[str], prefix: str | None, *, everything: bool
) -> tuple[list[str], str | None]:
    """The keys and prefix ``delete`` was asked for, checked before any request; ``--all``
    is the empty prefix."""
    if everything and (keys or prefix is not None):
        raise UsageError(
            "--all deletes every object of the stack: give it no keys and no --prefix",
        )
    if prefix == "":
        raise UsageError(
            "an empty --prefix would delete every object of the stack",
            hint="pass --all to delete everything; if the prefix came from a variable, it is empty",
        )
    if prefix is not None:
        checked_new_key(prefix, "--prefix")
    wanted = _distinct(keys)
    for key in wanted:
        if not key:
            raise UsageError("an image key must not be empty")
        checked_existing_key(key)
    if not wanted and prefix is None and not everything:
        raise UsageError(
            "nothing to delete",
            hint="give the keys to delete, --prefix to delete by prefix, or --all",
        )
    return wanted, "" if everything else prefix


def _delete(
    run: Invocation,
    wanted: Sequence[str],
    prefix: str | None,
    *,
    yes: bool,
    dry_run: bool,
    done: DeleteProgress,
) -> None:
    """Plan, confirm and delete, keeping in ``done`` what has happened so far."""
    bucket = run.settings.record("bucket")
    s3 = run.aws().client("s3")
    plan = plan_deletion(s3, bucket, wanted, prefix)
    if prefix is not None:
        scope = f"under '{prefix}' " if prefix else ""
        run.output.info(f"{plural(plan.under_prefix, 'object')} {scope}in {bucket}")
        if plan.under_prefix and not dry_run and not _confirmed(run, plan, prefix, yes=yes):
            run.output.info("nothing was deleted")
            return
    if not plan.to_delete and not plan.missing:
        return  # an empty prefix, already said
    done.reporting = True
    results = dry_run_outcomes(plan) if dry_run else delete_planned(s3, bucket, plan)
    run.output.records(
        (outcome.as_json() for outcome in _collected(results, done.outcomes)),
        columns=("key", "status", "reason"),
    )


def register(app: typer.Typer) -> None:
    """Add ``list``, ``show`` and ``delete`` to the imgcli app."""
    app.command("list")(list_gallery)
    app.command("show")(show_image)
    app.command("delete")(delete_images)


# Rendering


def _listing_format(
    json_requested: bool, chosen: OutputFormat | None, on_terminal: bool
) -> OutputFormat:
    if json_requested and chosen not in (None, OutputFormat.json):
        raise UsageError(f"--json and --output {chosen} ask for different formats: pick one")
    if json_requested:
        return OutputFormat.json
    if chosen is not None:
        return chosen
    return OutputFormat.table if on_terminal else OutputFormat.text


def _print_pages(
    run: Invocation,
    pages: Iterable[Sequence[Mapping[str, Any]]],
    *,
    invalid: bool,
    prefix: str | None,
    text: bool,
) -> None:
    """A table per page for people, or tab-separated lines (``text``) for scripts."""
    shown = 0
    for page in pages:
        if text:
            columns = TEXT_INVALID_COLUMNS if invalid else TEXT_COLUMNS
            run.output.lines([image.get(column) for column in columns] for image in page)
        else:
            rows = [listing_row(image) for image in page]
            run.output.records(rows, columns=INVALID_COLUMNS if invalid else LIST_COLUMNS)
        shown += len(page)
    if not shown:
        kind = "unreadable objects" if invalid else "images"
        run.output.info(f"no {kind}" + (f" under '{prefix}'" if prefix else ""))


def listing_row(image: Mapping[str, Any]) -> dict[str, Any]:
    """What a person reads about one image in ``list``'s table."""
    width, height = image.get("width"), image.get("height")
    size = image.get("size")
    return {
        "key": image.get("key"),
        "format": image.get("format"),
        "dimensions": f"{width}x{height}" if width is not None and height is not None else None,
        "size": human_size(size) if isinstance(size, int) else None,
        "uploaded": image.get("uploaded_at"),
        "reason": image.get("reason"),
    }


def _detail_rows(image: Mapping[str, Any]) -> list[tuple[str, object]]:
    """``show``'s table: every recorded field but the links, which are long and short-lived
    (one line says until when they work; ``--json`` has them)."""
    rows = [
        (name, _detail(name, value))
        for name, value in image.items()
        if value is not None and name not in LINK_FIELDS
    ]
    if image.get("urls"):
        until = image.get("urls_expire_at") or "soon"
        rows.append(("links", f"{len(image['urls'])} presigned, until {until} (--json shows them)"))
    return rows


def _detail(name: str, value: object) -> object:
    if name == "size" and isinstance(value, int) and value >= 1024:
        return f"{human_size(value)} ({value} bytes)"
    if name == "thumbnails" and isinstance(value, Mapping):
        return "; ".join(_thumbnail_detail(box, entry) for box, entry in value.items())
    return value


def _thumbnail_detail(box: str, entry: object) -> str:
    if not isinstance(entry, Mapping):
        return f"{box}: ?"
    size = entry.get("size")
    amount = human_size(size) if isinstance(size, int) else "?"
    return f"{box}: {entry.get('width')}x{entry.get('height')} ({amount})"


def write_csv(output: Output, images: Iterable[Mapping[str, Any]]) -> None:
    """Images as CSV with a header row on stdout, written as they arrive.

    The header is known before the first page: the API's fields, plus any new field the
    first image carries (a newer stack), but not the nested ``thumbnails`` and the links
    (``CSV_LEFT_OUT``). ``--quiet`` writes nothing, as for every result.
    Values go out unchanged, in RFC 4180's form: CRLF ends a record, so a value holding a
    carriage return or a newline is quoted (with ``\n`` alone, Python's writer leaves a
    lone CR unquoted, and readers split the record there).
    """
    stream = output.streams.stdout
    iterator = iter(images)
    first = next(iterator, None)
    if output.quiet:
        for _ in iterator:
            pass  # still fetch: errors must surface
        return
    left_out = CSV_LEFT_OUT.union(CSV_COLUMNS)
    extra = [name for name in (first or {}) if name not in left_out]
    writer = csv.DictWriter(
        stream, fieldnames=[*CSV_COLUMNS, *extra], extrasaction="ignore", lineterminator="\r\n"
    )
    writer.writeheader()
    if first is not None:
        writer.writerow(first)
    for image in iterator:
        writer.writerow(image)
    stream.flush()


def _confirmed(run: Invocation, plan: DeletionPlan, prefix: str, *, yes: bool) -> bool:
    given = len(plan.to_delete) - plan.under_prefix
    extra = f" and {plural(given, 'given key')}" if given else ""
    count = plural(plan.under_prefix, "image")
    what = f"{count} under '{prefix}'" if prefix else f"all {count}"
    return run.output.confirm(
        f"Delete {what}{extra} from stack '{run.settings.name}'?",
        yes=yes,
    )


def _summary_line(summary: Mapping[str, Any]) -> str:
    if summary["dry_run"]:
        return f"dry run: would delete {summary['would_delete']}, {summary['missing']} missing"
    return f"deleted {summary['deleted']}, {summary['missing']} missing, {summary['failed']} failed"


def _wait_for_index(
    run: Invocation, keys: Sequence[str], prefix: str | None, timeout_s: float
) -> None:
    from imgcli.gallery_api import gallery_api_for

    run.output.info(f"waiting until the API no longer lists {plural(len(keys), 'image')}")
    remaining = wait_until_unlisted(gallery_api_for(run), keys, prefix=prefix, timeout_s=timeout_s)
    if remaining:
        example = min(remaining)
        raise RemoteError(
            f"the API still lists {plural(len(remaining), 'deleted image')} after "
            f"{timeout_s:g} s (e.g. '{example}')",
            hint="the stack's save/delete function may be failing or slow: look at its "
            "failed-events queue, or raise --wait-timeout",
        )


def _distinct(keys: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(keys))


def _collected(
    outcomes: Iterable[DeleteOutcome], into: list[DeleteOutcome]
) -> Iterator[DeleteOutcome]:
    # Reported as they happen, and kept for the summary, --wait and the exit code.
    for outcome in outcomes:
        into.append(outcome)
        yield outcome
