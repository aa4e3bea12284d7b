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
* ``delete`` reports every key: ``deleted``, ``missing`` (no such object: S3's
  DeleteObjects would report success, so existence is checked first), ``failed`` (S3's
  per-key error), or with ``--dry-run`` ``would_delete``; then a summary. Any missing or
  failed key makes the exit code 1. The bucket is versioned, so a deleted image stays
  recoverable as an old version for the stack's ``noncurrent-days``.

The service functions below the commands (planning, batch deletion, waiting) take their
clients as arguments and know nothing of typer or the terminal.

Request budgets, because a user may pass thousands of keys or a prefix holding millions:

* Existence of given keys: per directory (the part up to the last ``/``), one listing of
  that directory's own entries (``Delimiter="/"``), starting just before its first wanted
  key and stopping after its last, for at most as many pages as the directory has wanted
  keys; whatever that leaves unsettled is asked with HeadObject. So never more than about
  two requests per key, and usually one request per directory.
* Deletion: DeleteObjects, 1,000 keys per request (S3's maximum), per-key ``Errors`` read.
* A prefix is listed once, and its keys held in memory, so exactly what was counted and
  confirmed is deleted (objects written under it meanwhile are not).
* ``--wait``: one GET per key still listed per round; when a prefix held many keys, two
  listings of the prefix per round instead (active and invalid images).
"""

from __future__ import annotations

import csv
import enum
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, islice
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, Protocol

import typer

from imgcli.cli import (
    Invocation,
    JsonFlag,
    _command_invocation,
    reports_failures,
)
from imgcli.errors import ExitCode, ImgcliError, PartialFailure, RemoteError, UsageError

if TYPE_CHECKING:
    from imgcli.output import Output

#: Keys per DeleteObjects request: S3's maximum.
DELETE_BATCH: Final = 1000
#: S3's longest key, in UTF-8 bytes; a longer "key" cannot exist.
MAX_KEY_BYTES: Final = 1024
#: Above this many keys under a deleted prefix, --wait lists the prefix instead of GETs.
WAIT_PER_KEY_LIMIT: Final = 100
DEFAULT_WAIT_TIMEOUT_S: Final = 60.0

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

DeleteStatus = Literal["deleted", "missing", "failed", "would_delete"]
DELETE_STATUSES: Final[tuple[DeleteStatus, ...]] = ("deleted", "missing", "failed", "would_delete")


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


class ImageLookup(Protocol):
    """The reads ``--wait`` needs; ``imgcli.gallery_api.GalleryApi`` provides them."""

    def get_image(self, key: str) -> dict[str, Any] | None: ...

    def list_images(
        self, *, prefix: str | None = None, invalid: bool = False
    ) -> Iterator[dict[str, Any]]: ...


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

    run = _command_invocation(ctx, json_output)
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

    run = _command_invocation(ctx, json_output)
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
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
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
    run = _command_invocation(ctx, json_output)
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


def human_size(size: int) -> str:
    """``size`` bytes in binary units, as ``ls -lh`` would (``1.2 MiB``)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


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


# Services: no typer, no terminal


@dataclass(frozen=True)
class DeleteOutcome:
    """What happened to one key."""

    key: str
    status: DeleteStatus
    reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"key": self.key, "status": self.status, "reason": self.reason}


@dataclass(frozen=True)
class DeletionPlan:
    """What a delete will do: the keys that exist (given ones, then the prefix's), and the
    given keys that do not."""

    to_delete: tuple[str, ...]
    missing: tuple[str, ...]
    under_prefix: int = 0


def plan_deletion(
    s3: Any, bucket: str, keys: Sequence[str], prefix: str | None, *, page_size: int = 1000
) -> DeletionPlan:
    """Check the given keys exist and list the prefix (read-only calls only)."""
    present = existing_keys(s3, bucket, keys, page_size=page_size)
    given = [key for key in keys if key in present]
    missing = tuple(key for key in keys if key not in present)
    under: list[str] = []
    if prefix is not None:
        chosen = set(given)
        under = [key for key in keys_under(s3, bucket, prefix) if key not in chosen]
    return DeletionPlan(tuple(given + under), missing, under_prefix=len(under))


def existing_keys(s3: Any, bucket: str, keys: Iterable[str], *, page_size: int = 1000) -> set[str]:
    """Which of ``keys`` name an object in ``bucket`` (see the request budget above)."""
    by_directory: dict[str, list[str]] = {}
    for key in keys:
        if len(key.encode("utf-8")) <= MAX_KEY_BYTES:
            by_directory.setdefault(key[: key.rfind("/") + 1], []).append(key)
    found: set[str] = set()
    for directory, group in by_directory.items():
        listed, unsettled = _listed_in_directory(s3, bucket, directory, group, page_size)
        found |= listed
        found |= {key for key in unsettled if _object_exists(s3, bucket, key)}
    return found


def _listed_in_directory(
    s3: Any, bucket: str, directory: str, group: Sequence[str], page_size: int
) -> tuple[set[str], set[str]]:
    """(found, unsettled): list ``directory``'s own entries over the range of ``group``.

    S3 lists in UTF-8 byte order, which is Python's order of ``str``. ``StartAfter`` is the
    first wanted key minus its last character: sorts just before it, so it is included.
    """
    wanted = sorted(set(group))
    pending = set(wanted)
    found: set[str] = set()
    request: dict[str, Any] = {
        "Bucket": bucket,
        "Prefix": directory,
        "Delimiter": "/",
        "StartAfter": wanted[0][:-1],
        "MaxKeys": page_size,
    }
    for _ in range(len(wanted)):  # HeadObject for each would cost as many requests
        page = s3.list_objects_v2(**request)
        names = [item["Key"] for item in page.get("Contents", ())]
        names += [item["Prefix"] for item in page.get("CommonPrefixes", ())]
        found |= pending.intersection(names)
        if not page.get("IsTruncated"):
            return found, set()  # the directory's listing ended: the rest do not exist
        reached = max(names, default=None)
        if reached is not None:
            pending = {key for key in pending if key > reached}
            if not pending:
                return found, set()
        request["ContinuationToken"] = page["NextContinuationToken"]
    return found, pending


def _object_exists(s3: Any, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def keys_under(s3: Any, bucket: str, prefix: str) -> Iterator[str]:
    """Every key in ``bucket`` that starts with ``prefix``, in key order."""
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", ()):
            yield item["Key"]


def dry_run_outcomes(plan: DeletionPlan) -> Iterator[DeleteOutcome]:
    """What ``delete_planned`` would report, without deleting."""
    yield from _missing_outcomes(plan)
    for key in plan.to_delete:
        yield DeleteOutcome(key, "would_delete")


def delete_planned(s3: Any, bucket: str, plan: DeletionPlan) -> Iterator[DeleteOutcome]:
    """Report the missing keys, then delete the rest, one DeleteObjects per 1,000 keys,
    yielding each batch's outcomes as it completes."""
    yield from _missing_outcomes(plan)
    for batch in chunked(plan.to_delete, DELETE_BATCH):
        yield from delete_batch(s3, bucket, batch)


def delete_batch(s3: Any, bucket: str, keys: Sequence[str]) -> list[DeleteOutcome]:
    """Delete up to 1,000 keys with one request; S3 answers per key, errors only (quiet)."""
    response = s3.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True},
    )
    errors = {
        error["Key"]: f"{error.get('Code', 'Error')}: {error.get('Message', 'no message')}"
        for error in response.get("Errors", ())
    }
    return [
        DeleteOutcome(key, "failed", errors[key])
        if key in errors
        else DeleteOutcome(key, "deleted")
        for key in keys
    ]


def _missing_outcomes(plan: DeletionPlan) -> Iterator[DeleteOutcome]:
    for key in plan.missing:
        yield DeleteOutcome(key, "missing", "no such key in the bucket")


def summarise(outcomes: Iterable[DeleteOutcome], *, dry_run: bool) -> dict[str, Any]:
    """Counts per status, for the summary object and the exit code."""
    counts: dict[str, Any] = dict.fromkeys(DELETE_STATUSES, 0)
    total = 0
    for outcome in outcomes:
        counts[outcome.status] += 1
        total += 1
    return {"total": total, **counts, "dry_run": dry_run}


def wait_until_unlisted(
    api: ImageLookup,
    keys: Iterable[str],
    *,
    prefix: str | None = None,
    timeout_s: float = DEFAULT_WAIT_TIMEOUT_S,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    first_delay_s: float = 0.2,
    max_delay_s: float = 2.0,
) -> set[str]:
    """Poll the API until it lists none of ``keys``; returns those still listed at the
    deadline (empty: all gone). The delay between rounds doubles up to ``max_delay_s``."""
    pending = set(keys)
    deadline = clock() + timeout_s
    delay = first_delay_s
    while True:
        pending = still_listed(api, pending, prefix)
        remaining_s = deadline - clock()
        if not pending or remaining_s <= 0:
            return pending
        sleep(min(delay, remaining_s))
        delay = min(delay * 2, max_delay_s)


def still_listed(api: ImageLookup, keys: set[str], prefix: str | None) -> set[str]:
    """Which of ``keys`` the API still serves (as active or invalid images)."""
    under = {key for key in keys if prefix is not None and key.startswith(prefix)}
    listed: set[str] = set()
    if prefix is not None and len(under) > WAIT_PER_KEY_LIMIT:
        for invalid in (False, True):
            listed |= {image["key"] for image in api.list_images(prefix=prefix, invalid=invalid)}
        listed &= under
    else:
        under = set()
    return listed | {key for key in keys - under if api.get_image(key) is not None}


# Small helpers


def chunked(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Lists of up to ``size`` consecutive items (``itertools.batched`` is Python 3.12+)."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _distinct(keys: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(keys))


def _collected(
    outcomes: Iterable[DeleteOutcome], into: list[DeleteOutcome]
) -> Iterator[DeleteOutcome]:
    # Reported as they happen, and kept for the summary, --wait and the exit code.
    for outcome in outcomes:
        into.append(outcome)
        yield outcome
