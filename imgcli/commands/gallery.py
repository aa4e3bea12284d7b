"""``imgcli list``, ``show`` and ``delete``: read the gallery through the stack's API, delete
from its bucket.

Reading goes through the API (``imgcli.gallery_api``), never straight to the table: the
API is the stack's contract, the same for imgcli, scripts and any other client, and its
IAM authorization is what decides who may read. Deleting goes to S3, the source of truth;
the stack's save/delete function then tombstones each image in the index, which is why
``delete --wait`` watches the API until the images are gone from it.

Output decisions:

* ``list`` streams. NDJSON (``--json``, ``--output json``) and CSV are written as pages
  arrive, so ``imgcli list | head`` shows the first rows before the last page is fetched.
  A rich table cannot grow once printed, so people get one table per API page (the
  first of 100 rows, then up to 1,000): the first rows show while later pages load, and
  memory stays bounded.
* ``show`` of a key the API does not list ends with ``ImageNotFound``, exit code 1
  (``SOME_FAILED``: the one item asked for was not there), the same code ``delete`` gives a
  missing key, so a script tests one code for "not there" across commands.
* ``delete`` reports every key as ``imgcli.deletion`` settles it (deleted, missing,
  failed, would_delete), then a summary. Any missing or failed key makes the exit code 1.
  The bucket is versioned, so a deleted image stays recoverable as an old version for the
  stack's ``noncurrent-days``.
"""

from __future__ import annotations

import csv
import enum
from collections.abc import Iterable, Iterator, Mapping, Sequence
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
from imgcli.output import human_size, plural

if TYPE_CHECKING:
    from imgcli.output import Output


LIST_COLUMNS: Final = ("key", "format", "dimensions", "size", "uploaded")
INVALID_COLUMNS: Final = ("key", "size", "uploaded", "reason")
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
)


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


class OutputFormat(enum.StrEnum):
    table = "table"
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
            help="table (default), json (one object per line, every field) or csv.",
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """List the gallery's images in key order, as the stack's API serves them.

    Rows print as pages arrive. The table shows key, format, dimensions, size and upload
    time; --json prints one JSON object per line with every recorded field; --output csv
    writes a spreadsheet with a header row.

    Example: imgcli list --prefix holiday/ --output csv > holiday.csv
    """
    from imgcli.gallery_api import gallery_api_for

    run = command_invocation(ctx, json_output)
    chosen = _listing_format(run.output.json_mode, output_format)
    pages = gallery_api_for(run).list_pages(prefix=prefix, invalid=invalid, limit=limit)
    if chosen is OutputFormat.json:
        run.output.json_mode = True
        run.output.records(chain.from_iterable(pages), columns=CSV_COLUMNS)
    elif chosen is OutputFormat.csv:
        write_csv(run.output, chain.from_iterable(pages))
    else:
        _print_tables(run, pages, invalid=invalid, prefix=prefix)


@reports_failures
def show_image(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(metavar="KEY", help="The image's key.", show_default=False)],
    json_output: JsonFlag = False,
) -> None:
    """Show one image's recorded details: format, dimensions, size, EXIF basics, times.

    Exit code 1 when the API lists no image with that key.

    Example: imgcli show "holiday/beach 1.jpg" --json
    """
    from imgcli.gallery_api import gallery_api_for

    run = command_invocation(ctx, json_output)
    if not key:
        raise UsageError("the image key must not be empty")
    image = gallery_api_for(run).get_image(key)
    if image is None:
        raise ImageNotFound(
            f"no image with key {key!r} in stack '{run.settings.name}'",
            hint="'imgcli list' shows the keys; 'imgcli list --invalid' the unreadable ones",
        )
    rows = [(name, _detail(name, value)) for name, value in image.items() if value is not None]
    run.output.document(image, columns=("field", "value"), rows=rows, title=key)


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
            "--prefix", "-p", help="Delete every object whose key starts with this, after asking."
        ),
    ] = None,
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
    answer). Deleted images stay recoverable as old versions for the stack's
    noncurrent-days. --json prints one object per key, then a summary.

    Example: imgcli delete "holiday/beach 1.jpg" old/a.png --wait
    """
    run = command_invocation(ctx, json_output)
    wanted = _distinct(keys or [])
    if not wanted and prefix is None:
        raise UsageError(
            "nothing to delete", hint="give the keys to delete, or --prefix to delete by prefix"
        )
    if "" in wanted:
        raise UsageError("an image key must not be empty")
    bucket = run.settings.record("bucket")
    s3 = run.aws().client("s3")
    plan = plan_deletion(s3, bucket, wanted, prefix)
    if prefix is not None:
        run.output.info(f"{plural(plan.under_prefix, 'object')} under {prefix!r} in {bucket}")
        if plan.under_prefix and not dry_run and not _confirmed(run, plan, prefix, yes=yes):
            run.output.info("nothing was deleted")
            return
    if not plan.to_delete and not plan.missing:
        return  # an empty prefix, already said
    outcomes: list[DeleteOutcome] = []
    results = dry_run_outcomes(plan) if dry_run else delete_planned(s3, bucket, plan)
    run.output.records(
        (outcome.as_json() for outcome in _collected(results, outcomes)),
        columns=("key", "status", "reason"),
    )
    summary = summarise(outcomes, dry_run=dry_run)
    if run.output.json_mode:
        run.output.document({"summary": summary}, columns=(), rows=())
    else:
        run.output.info(_summary_line(summary))
    deleted = [outcome.key for outcome in outcomes if outcome.status == "deleted"]
    if wait and deleted:
        _wait_for_index(run, deleted, prefix, wait_timeout)
    if summary["missing"] or summary["failed"]:
        raise NotAllDeleted(summary["missing"], summary["failed"], summary["total"])


def register(app: typer.Typer) -> None:
    """Add ``list``, ``show`` and ``delete`` to the imgcli app."""
    app.command("list")(list_gallery)
    app.command("show")(show_image)
    app.command("delete")(delete_images)


# Rendering


def _listing_format(json_requested: bool, chosen: OutputFormat | None) -> OutputFormat:
    if json_requested and chosen not in (None, OutputFormat.json):
        raise UsageError(f"--json and --output {chosen} ask for different formats: pick one")
    if json_requested:
        return OutputFormat.json
    return chosen or OutputFormat.table


def _print_tables(
    run: Invocation,
    pages: Iterable[Sequence[Mapping[str, Any]]],
    *,
    invalid: bool,
    prefix: str | None,
) -> None:
    columns = INVALID_COLUMNS if invalid else LIST_COLUMNS
    shown = 0
    for page in pages:
        run.output.records([listing_row(image) for image in page], columns=columns)
        shown += len(page)
    if not shown:
        kind = "unreadable objects" if invalid else "images"
        run.output.info(f"no {kind}" + (f" under {prefix!r}" if prefix else ""))


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


def _detail(name: str, value: object) -> object:
    if name == "size" and isinstance(value, int) and value >= 1024:
        return f"{human_size(value)} ({value} bytes)"
    return value


def write_csv(output: Output, images: Iterable[Mapping[str, Any]]) -> None:
    """Images as CSV with a header row on stdout, written as they arrive.

    The header is known before the first page: the API's fields, plus any new field the
    first image carries (a newer stack). ``--quiet`` writes nothing, as for every result.
    """
    stream = output.streams.stdout
    iterator = iter(images)
    first = next(iterator, None)
    if output.quiet:
        for _ in iterator:
            pass  # still fetch: errors must surface
        return
    extra = [name for name in (first or {}) if name not in CSV_COLUMNS]
    writer = csv.DictWriter(
        stream, fieldnames=[*CSV_COLUMNS, *extra], extrasaction="ignore", lineterminator="\n"
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
    return run.output.confirm(
        f"Delete {plural(plan.under_prefix, 'object')} under {prefix!r}{extra} from stack "
        f"'{run.settings.name}'?",
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
            f"{timeout_s:g} s (e.g. {example!r})",
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
