"""S3 event notifications for the local cloud, in the shape AWS sends them.

The save function is driven by S3 events, and any client may write to the bucket (the CLI,
the AWS CLI, a browser POST), so every object change must produce the event AWS would send,
to every Lambda function the bucket's notification configuration selects.

**Why hook the backend, not moto's notifier.** moto 5.2.5 has its own sender
(``moto.s3.notifications``), but it sends nothing for a delete marker or for deleting one
version of several, reports a spurious ``ObjectCreated:Put`` before
``CompleteMultipartUpload``, encodes ``/`` in keys, carries no ``versionId`` or
``sequencer``, and can only "invoke" a function through Docker. So this module wraps the
four ``S3Backend`` methods every object change goes through, whatever the client or the
API (DeleteObjects loops over ``delete_object``; POST uploads reach ``put_object`` with
``request_method="POST"``), and turns moto's own Lambda sending off so no event runs twice.
moto's sender still serves queue and topic targets: the stack uses only Lambda targets, so
this module ignores queue, topic and EventBridge configurations. It does reuse moto's
notification configuration objects for *matching* (event-type wildcards, prefix and suffix
rules), so a configuration means the same thing to both. This is the only module that
touches moto's S3 internals for events; ``check_moto_internals`` and its test fail loudly
when an upgrade moves them.

**An event describes a change.** A delete that removed nothing (no such key, no such
version) sends nothing; a versioned delete without a version id sends
``ObjectRemoved:DeleteMarkerCreated`` with the marker's version id; deleting one version
sends ``ObjectRemoved:Delete`` with that version id. Copies and multipart completions
create the object through an inner ``put_object``; a thread-local flag turns that inner call
into a capture, so each sends exactly one event of its own type.

**Sequencer.** S3 promises only that, for one key, a later change has a greater sequencer.
Here one process-wide counter advances to ``max(last + 1, clock())`` nanoseconds, so it
keeps growing across restarts without storing anything, and is written as fixed-width
upper-case hexadecimal (``SEQUENCER_DIGITS``), which ``lambdas.sequencer`` compares
correctly. It is assigned while holding the key's lock, the same lock held around moto's
mutation: otherwise two concurrent PUTs to one key could receive sequencers in the opposite
order to the one moto applied them in, and the index would keep the older object.

**Destination permissions.** With ``may_invoke``, S3 checks each function's resource
policy as AWS does, when the notification is configured and when an event is delivered
(``s3_destinations``).

**Threading.** moto serves requests on many threads and does not lock a key's update
itself. Each wrapped mutation runs under a lock chosen by its (account, bucket, key) from a
fixed set of stripes: memory stays bounded however many keys there are, and unrelated keys
rarely wait for each other. No wrapped call ever takes a second key's lock, so stripes
cannot deadlock. ``deliver`` is called only after the mutation has finished and its lock is
released; it is expected to enqueue (the runtime invokes functions asynchronously), and an
exception from it is logged, never turned into a failed S3 request.
"""

from __future__ import annotations

import functools
import inspect
import logging
import secrets
import threading
import time
from base64 import b64encode
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar
from urllib.parse import quote_plus

from moto.s3 import notifications as moto_notifications
from moto.s3.models import FakeBucket, FakeKey, NotificationConfiguration, S3Backend
from moto.s3.responses import S3Response

from imgcli.localcloud import MotoInternalsChanged
from imgcli.localcloud.s3_destinations import (
    MOTO_NOTIFICATION_PARSER,
    InvokePermission,
    event_permitted,
    missing_notification_parser,
    validating_parser,
)

#: Receives a function ARN and the one-record event to invoke it with.
Deliver = Callable[[str, dict[str, Any]], None]
#: Nanoseconds since the epoch, like ``time.time_ns``.
Clock = Callable[[], int]

#: Width of every sequencer; 20 hex digits hold nanosecond timestamps for millennia.
SEQUENCER_DIGITS: Final = 20
#: No request reaches the local cloud from anywhere but this machine.
SOURCE_IP: Final = "127.0.0.1"

PUT: Final = "ObjectCreated:Put"
POST: Final = "ObjectCreated:Post"
COPY: Final = "ObjectCreated:Copy"
COMPLETE_MULTIPART_UPLOAD: Final = "ObjectCreated:CompleteMultipartUpload"
DELETE: Final = "ObjectRemoved:Delete"
DELETE_MARKER_CREATED: Final = "ObjectRemoved:DeleteMarkerCreated"

#: The moto methods wrapped, with the parameters this module reads from each call.
WRAPPED_METHODS: Final[dict[str, tuple[str, ...]]] = {
    "put_object": ("bucket_name", "key_name", "request_method", "disable_notification"),
    "copy_object": ("dest_bucket_name", "dest_key_name"),
    "complete_multipart_upload": ("bucket_name", "multipart_id"),
    "delete_object": ("bucket_name", "key_name", "version_id"),
}
#: moto's own S3 → Lambda sender, silenced while installed.
MOTO_LAMBDA_SENDER: Final = "_invoke_awslambda"

_LOCK_STRIPES: Final = 256
_logger = logging.getLogger(__name__)
_T = TypeVar("_T")


def install(
    deliver: Deliver, *, clock: Clock = time.time_ns, may_invoke: InvokePermission | None = None
) -> Callable[[], None]:
    """Send an S3 event to ``deliver`` for every object change; return the uninstaller.

    Process-wide (it patches moto's classes), so at most one installation at a time.
    ``clock`` feeds both ``eventTime`` and the sequencer; tests pass a fixed one.
    ``may_invoke`` checks destinations as AWS does (module docstring); without it every
    configured function gets its events.
    """
    check_moto_internals()
    with _installation_lock:
        if _installation is not None:
            raise RuntimeError("S3 event delivery is already installed; uninstall it first")
        installation = _Installation(_EventTap(deliver, clock, may_invoke), may_invoke)
        installation.apply()
        _set_installation(installation)
    return installation.remove


def check_moto_internals() -> None:
    """Fail loudly, naming what moved, if the moto internals used here are not as expected."""
    problems = [
        *_missing_parameters(),
        *_missing_lambda_sender(),
        *_unusable_notification_matching(),
        *missing_notification_parser(),
    ]
    if problems:
        raise MotoInternalsChanged(
            "imgcli's S3 event delivery needs moto internals that moved: " + "; ".join(problems)
        )


def _missing_parameters() -> Iterator[str]:
    for name, parameters in WRAPPED_METHODS.items():
        method = getattr(S3Backend, name, None)
        if not callable(method):
            yield f"S3Backend.{name} is gone"
            continue
        known = inspect.signature(method).parameters
        for parameter in parameters:
            if parameter not in known:
                yield f"S3Backend.{name} has no parameter {parameter!r}"


def _missing_lambda_sender() -> Iterator[str]:
    if not callable(getattr(moto_notifications, MOTO_LAMBDA_SENDER, None)):
        yield f"moto.s3.notifications.{MOTO_LAMBDA_SENDER} is gone"


def _unusable_notification_matching() -> Iterator[str]:
    try:
        config = NotificationConfiguration(
            cloud_function=[
                {
                    "Id": "probe",
                    "CloudFunction": "arn:aws:lambda:us-east-1:123456789012:function:probe",
                    "Event": ["s3:ObjectCreated:*"],
                    "Filter": {"S3Key": {"FilterRule": [{"Name": "prefix", "Value": "a/"}]}},
                }
            ]
        )
        (probe,) = config.cloud_function
        if probe.id != "probe" or not probe.arn.endswith(":probe"):
            yield "notification configurations no longer keep id and arn"
        if not probe.matches("s3:ObjectCreated:Put", "a/b") or probe.matches(
            "s3:ObjectCreated:Put", "b/a"
        ):
            yield "Notification.matches no longer applies wildcards and key filters"
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        yield f"notification configurations changed shape ({type(exc).__name__}: {exc})"


def _not_invoking_lambda(account_id: str, event_body: Any, fn_arn: str, region_name: str) -> None:
    """Stands in for moto's sender: this module delivers every Lambda event itself."""


@dataclass(frozen=True)
class _Stamp:
    """When a change happened and its place in the order of changes to its key."""

    time_ns: int
    sequencer: str


class _SequencerClock:
    """The process-wide sequencer counter; see the module docstring for the scheme."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._last = 0
        self._lock = threading.Lock()

    def stamp(self) -> _Stamp:
        with self._lock:
            now = self._clock()
            self._last = max(self._last + 1, now)
            return _Stamp(now, f"{self._last:0{SEQUENCER_DIGITS}X}")


class _KeyLocks:
    """A bounded set of locks, one chosen per key (lock striping)."""

    def __init__(self, stripes: int = _LOCK_STRIPES) -> None:
        self._locks = [threading.RLock() for _ in range(stripes)]

    def for_key(self, account_id: str, bucket_name: str, key_name: str) -> threading.RLock:
        return self._locks[hash((account_id, bucket_name, key_name)) % len(self._locks)]


@dataclass(frozen=True)
class _Change:
    """One object change, with what its event record reports."""

    event_name: str
    bucket: FakeBucket
    key_name: str
    version_id: str | None
    size: int | None = None
    etag: str | None = None


def _created(event_name: str, bucket: FakeBucket, key: FakeKey) -> _Change:
    return _Change(
        event_name=event_name,
        bucket=bucket,
        key_name=key.name,
        version_id=_reported_version(key.version_id),
        size=key.size,
        etag=key.etag.strip('"'),
    )


def _reported_version(version_id: object) -> str | None:
    """moto writes ``"null"`` for unversioned objects, where AWS's events omit the field."""
    if version_id is None or str(version_id) == "null":
        return None
    return str(version_id)


def _removal(
    bucket: FakeBucket,
    key_name: str,
    requested_version: str | None,
    *,
    was_versioned: bool,
    versions_before: set[str],
    removed: bool,
    response_meta: dict[str, Any],
) -> _Change | None:
    """The change a ``delete_object`` call made, or None if it changed nothing."""
    if not removed:
        return None
    if not was_versioned:
        return _Change(DELETE, bucket, key_name, version_id=_reported_version(requested_version))
    if requested_version is None:
        marker = response_meta.get("version-id")
        return _Change(
            DELETE_MARKER_CREATED, bucket, key_name, version_id=_reported_version(marker)
        )
    # moto reports success for a version id the key never had; S3 changed nothing then.
    if str(requested_version) not in versions_before:
        return None
    return _Change(DELETE, bucket, key_name, version_id=str(requested_version))


def _version_ids(bucket: FakeBucket, key_name: str) -> set[str]:
    return {str(version.version_id) for version in bucket.keys.getlist(key_name, [])}


def _record(change: _Change, stamp: _Stamp, configuration_id: str) -> dict[str, Any]:
    """One record exactly as AWS writes it (event message structure, version 2.1)."""
    s3_object: dict[str, Any] = {"key": quote_plus(change.key_name, safe="/")}
    if change.size is not None:
        s3_object["size"] = change.size
    if change.etag is not None:
        s3_object["eTag"] = change.etag
    if change.version_id is not None:
        s3_object["versionId"] = change.version_id
    s3_object["sequencer"] = stamp.sequencer
    account_id = change.bucket.account_id
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": change.bucket.region_name,
        "eventTime": _iso_millis(stamp.time_ns),
        "eventName": change.event_name,
        # The backend never learns who called; the account is the only identity it knows.
        "userIdentity": {"principalId": f"AWS:{account_id}"},
        "requestParameters": {"sourceIPAddress": SOURCE_IP},
        "responseElements": _response_elements(),
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": configuration_id,
            "bucket": {
                "name": change.bucket.name,
                "ownerIdentity": {"principalId": account_id},
                "arn": change.bucket.arn,
            },
            "object": s3_object,
        },
    }


def _iso_millis(time_ns: int) -> str:
    seconds, nanoseconds = divmod(time_ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{moment}.{nanoseconds // 1_000_000:03d}Z"


def _response_elements() -> dict[str, str]:
    """Request ids shaped like S3's; the backend never sees the real ones."""
    return {
        "x-amz-request-id": secrets.token_hex(8).upper(),
        "x-amz-id-2": b64encode(secrets.token_bytes(48)).decode("ascii"),
    }


_Delivery = tuple[str, dict[str, Any]]
_Mutation = Callable[[], Any]


class _EventTap:
    """Runs each wrapped moto mutation under its key's lock and sends what it changed."""

    def __init__(
        self, deliver: Deliver, clock: Clock, may_invoke: InvokePermission | None = None
    ) -> None:
        self._deliver = deliver
        self._may_invoke = may_invoke
        self._sequencer = _SequencerClock(clock)
        self._locks = _KeyLocks()
        self._inner = threading.local()

    def on_put_object(
        self, backend: S3Backend, arguments: dict[str, Any], mutate: _Mutation
    ) -> Any:
        captured: list[FakeKey] | None = getattr(self._inner, "captured", None)
        if captured is not None:
            key = mutate()
            captured.append(key)
            return key
        bucket_name, key_name = arguments["bucket_name"], arguments["key_name"]
        event_name = POST if arguments["request_method"] == "POST" else PUT
        notify = not arguments["disable_notification"]

        def put() -> tuple[FakeKey, _Change | None]:
            key = mutate()
            change = _created(event_name, backend.get_bucket(bucket_name), key) if notify else None
            return key, change

        return self._observe(backend, bucket_name, key_name, put)

    def on_copy_object(
        self, backend: S3Backend, arguments: dict[str, Any], mutate: _Mutation
    ) -> Any:
        bucket_name, key_name = arguments["dest_bucket_name"], arguments["dest_key_name"]

        def copy() -> tuple[Any, _Change | None]:
            with self._capturing_inner_put() as created:
                result = mutate()
            bucket = backend.get_bucket(bucket_name)
            return result, (_created(COPY, bucket, created[-1]) if created else None)

        return self._observe(backend, bucket_name, key_name, copy)

    def on_complete_multipart_upload(
        self, backend: S3Backend, arguments: dict[str, Any], mutate: _Mutation
    ) -> Any:
        bucket_name = arguments["bucket_name"]
        key_name = _multipart_key_name(backend, bucket_name, arguments["multipart_id"])
        if key_name is None:
            return mutate()  # moto raises its own error for an unknown upload

        def complete() -> tuple[FakeKey | None, _Change | None]:
            with self._capturing_inner_put():
                key = mutate()
            if key is None:  # moto's answer to parts that do not fit together
                return None, None
            bucket = backend.get_bucket(bucket_name)
            return key, _created(COMPLETE_MULTIPART_UPLOAD, bucket, key)

        return self._observe(backend, bucket_name, key_name, complete)

    def on_delete_object(
        self, backend: S3Backend, arguments: dict[str, Any], mutate: _Mutation
    ) -> Any:
        bucket_name, key_name = arguments["bucket_name"], arguments["key_name"]
        requested_version = arguments["version_id"]

        def delete() -> tuple[Any, _Change | None]:
            bucket = backend.get_bucket(bucket_name)
            was_versioned = bucket.is_versioned
            versions_before = _version_ids(bucket, key_name)
            result = mutate()
            removed, response_meta = result
            change = _removal(
                bucket,
                key_name,
                requested_version,
                was_versioned=was_versioned,
                versions_before=versions_before,
                removed=removed,
                response_meta=response_meta,
            )
            return result, change

        return self._observe(backend, bucket_name, key_name, delete)

    def _observe(
        self,
        backend: S3Backend,
        bucket_name: str,
        key_name: str,
        mutation: Callable[[], tuple[_T, _Change | None]],
    ) -> _T:
        """Run ``mutation`` and stamp its change under the key's lock; deliver after both."""
        with self._locks.for_key(backend.account_id, bucket_name, key_name):
            result, change = mutation()
            deliveries = self._deliveries(change) if change is not None else []
        self._hand_over(deliveries)
        return result

    def _deliveries(self, change: _Change) -> list[_Delivery]:
        config = change.bucket.notification_configuration
        if config is None:
            return []
        qualified = f"s3:{change.event_name}"
        targets = [fn for fn in config.cloud_function if fn.matches(qualified, change.key_name)]
        if not targets:
            return []
        stamp = self._sequencer.stamp()
        return [(fn.arn, {"Records": [_record(change, stamp, fn.id)]}) for fn in targets]

    def _hand_over(self, deliveries: list[_Delivery]) -> None:
        for function_arn, event in deliveries:
            try:
                if self._may_invoke is not None and not event_permitted(
                    self._may_invoke, function_arn, event
                ):
                    continue
                self._deliver(function_arn, event)
            except Exception:
                # The object is already changed: failing the S3 request would mislead the
                # client, and S3 itself never reports event delivery to the writer.
                _logger.exception("could not hand an S3 event to %s", function_arn)

    @contextmanager
    def _capturing_inner_put(self) -> Iterator[list[FakeKey]]:
        """Make ``put_object`` calls on this thread record their key instead of notifying."""
        previous = getattr(self._inner, "captured", None)
        created: list[FakeKey] = []
        self._inner.captured = created
        try:
            yield created
        finally:
            self._inner.captured = previous


def _multipart_key_name(backend: S3Backend, bucket_name: str, multipart_id: str) -> str | None:
    try:
        key_name: str = backend.get_bucket(bucket_name).multiparts[multipart_id].key_name
    except Exception:  # noqa: BLE001 - any failure here is moto's to report, in its own call
        return None
    return key_name


_Handler = Callable[[S3Backend, dict[str, Any], _Mutation], Any]


def _wrapped(original: Callable[..., Any], handler: _Handler) -> Callable[..., Any]:
    """``original`` with its arguments bound by name, so positional and keyword calls agree."""
    signature = inspect.signature(original)

    @functools.wraps(original)
    def wrapper(backend: S3Backend, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(backend, *args, **kwargs)
        bound.apply_defaults()
        return handler(backend, bound.arguments, lambda: original(backend, *args, **kwargs))

    return wrapper


@dataclass(frozen=True)
class _Patch:
    """One attribute of moto replaced, with what to put back."""

    owner: object
    name: str
    original: Any
    replacement: Any

    def is_in_place(self) -> bool:
        return getattr(self.owner, self.name) is self.replacement


class _Installation:
    """The patches one ``install`` applied, and how to take them back."""

    def __init__(self, tap: _EventTap, may_invoke: InvokePermission | None) -> None:
        handlers: dict[str, _Handler] = {
            "put_object": tap.on_put_object,
            "copy_object": tap.on_copy_object,
            "complete_multipart_upload": tap.on_complete_multipart_upload,
            "delete_object": tap.on_delete_object,
        }
        self._patches = [
            _Patch(S3Backend, name, original, _wrapped(original, handler))
            for name, handler in handlers.items()
            for original in [getattr(S3Backend, name)]
        ]
        self._patches.append(
            _Patch(
                moto_notifications,
                MOTO_LAMBDA_SENDER,
                getattr(moto_notifications, MOTO_LAMBDA_SENDER),
                _not_invoking_lambda,
            )
        )
        if may_invoke is not None:
            parser = getattr(S3Response, MOTO_NOTIFICATION_PARSER)
            self._patches.append(
                _Patch(
                    S3Response,
                    MOTO_NOTIFICATION_PARSER,
                    parser,
                    validating_parser(parser, may_invoke),
                )
            )

    def apply(self) -> None:
        for patch in self._patches:
            setattr(patch.owner, patch.name, patch.replacement)

    def remove(self) -> None:
        """Restore moto; safe to call twice. Refuses if someone patched over this module."""
        with _installation_lock:
            if _installation is not self:
                return
            foreign = [patch.name for patch in self._patches if not patch.is_in_place()]
            if foreign:
                raise RuntimeError(
                    f"cannot uninstall S3 event delivery: {', '.join(foreign)} were patched "
                    "again after it was installed; uninstall in reverse order"
                )
            for patch in self._patches:
                setattr(patch.owner, patch.name, patch.original)
            _set_installation(None)


_installation_lock = threading.Lock()
_installation: _Installation | None = None


def _set_installation(installation: _Installation | None) -> None:
    global _installation  # patching moto's classes is process-wide state anyway
    _installation = installation
