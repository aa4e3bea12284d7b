"""Deleting images from the stack's bucket, and waiting until the API stops listing them.

Deleting goes to S3, the source of truth; the stack's save/delete function then
tombstones each image in the index, which is why waiting watches the API until the images
are gone from it. ``imgcli delete`` (``imgcli.commands.gallery``) is the command; these
functions take their clients as arguments and know nothing of typer or the terminal.

Every given key is reported: ``deleted``, ``missing`` (no such object: S3's DeleteObjects
would report success, so existence is checked first), ``failed`` (S3's per-key error), or
on a dry run ``would_delete``.

Request budgets, because a user may pass thousands of keys or a prefix holding millions:

* Existence of given keys: per directory (the part up to the last ``/``), one listing of
  that directory's own entries (``Delimiter="/"``), starting just before its first wanted
  key and stopping after its last, for at most as many pages as the directory has wanted
  keys; whatever that leaves unsettled is asked with HeadObject. So never more than about
  two requests per key, and usually one request per directory.
* Deletion: DeleteObjects, 1,000 keys per request (S3's maximum), per-key ``Errors`` read.

A key holding a character an XML 1.0 document cannot carry unchanged (a C0 control
character other than tab and newline: forbidden, or a carriage return the parser turns
into a newline) never goes into an XML request body or a listing's ``StartAfter``: its
existence is asked with HeadObject and it is deleted with DeleteObject, both of which carry
the key in the URL. DeleteObjects would otherwise be refused as malformed, or delete the
key with CR read as LF (S3 reports a key that does not exist as deleted); moto also echoes
``StartAfter`` raw into its XML listing and fails. Such keys are rare; each costs one request.
* A prefix is listed once, and its keys held in memory, so exactly what was counted and
  confirmed is deleted (objects written under it meanwhile are not).
* ``--wait``: one GET per key still listed per round; when a prefix held many keys, two
  listings of the prefix per round instead (active and invalid images).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, Final, Literal, Protocol

from imgcli.keys import key_problem

#: Keys per DeleteObjects request: S3's maximum.
DELETE_BATCH: Final = 1000
#: Above this many keys under a deleted prefix, waiting lists the prefix instead of GETs.
WAIT_PER_KEY_LIMIT: Final = 100
DEFAULT_WAIT_TIMEOUT_S: Final = 60.0

#: What XML 1.0 cannot carry unchanged (see above); tab and newline it can.
_NOT_IN_XML: Final = re.compile("[\x00-\x08\x0b-\x1f\ufffe\uffff]")

DeleteStatus = Literal["deleted", "missing", "failed", "would_delete"]
DELETE_STATUSES: Final[tuple[DeleteStatus, ...]] = ("deleted", "missing", "failed", "would_delete")


class ImageLookup(Protocol):
    """The reads waiting needs; ``imgcli.gallery_api.GalleryApi`` provides them."""

    def get_image(self, key: str) -> dict[str, Any] | None: ...

    def list_images(
        self, *, prefix: str | None = None, invalid: bool = False
    ) -> Iterator[dict[str, Any]]: ...


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
    found: set[str] = set()
    for key in keys:
        if key_problem(key, allow_control=True) is not None:
            continue  # no object can have it
        if not fits_xml(key):
            if _object_exists(s3, bucket, key):
                found.add(key)
            continue
        by_directory.setdefault(key[: key.rfind("/") + 1], []).append(key)
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
    """Delete up to 1,000 keys with one request; S3 answers per key, errors only (quiet).

    A key XML cannot carry is deleted with its own DeleteObject instead (see above).
    """
    in_xml = [key for key in keys if fits_xml(key)]
    errors: dict[str, str] = {}
    if in_xml:
        response = s3.delete_objects(
            Bucket=bucket,
            Delete={"Objects": [{"Key": key} for key in in_xml], "Quiet": True},
        )
        errors = {
            error["Key"]: _reason(error.get("Code"), error.get("Message"))
            for error in response.get("Errors", ())
        }
    for key in keys:
        if not fits_xml(key):
            problem = _delete_one(s3, bucket, key)
            if problem is not None:
                errors[key] = problem
    return [
        DeleteOutcome(key, "failed", errors[key])
        if key in errors
        else DeleteOutcome(key, "deleted")
        for key in keys
    ]


def fits_xml(key: str) -> bool:
    """Whether an XML request body (DeleteObjects) carries ``key`` unchanged."""
    return _NOT_IN_XML.search(key) is None


def _delete_one(s3: Any, bucket: str, key: str) -> str | None:
    """Delete ``key`` with DeleteObject; S3's refusal as a reason, or None."""
    from botocore.exceptions import ClientError

    try:
        s3.delete_object(Bucket=bucket, Key=key)
    except ClientError as error:
        details = error.response.get("Error", {})
        return _reason(details.get("Code"), details.get("Message"))
    return None


def _reason(code: str | None, message: str | None) -> str:
    return f"{code or 'Error'}: {message or 'no message'}"


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


def chunked(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Lists of up to ``size`` consecutive items (``itertools.batched`` is Python 3.12+)."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk
