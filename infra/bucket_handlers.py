"""The handlers for the stack's two buckets (S3): the gallery, which holds the user's
images, and the thumbnails bucket, which holds what the save function derives from them;
kinds ``infra.storage_handlers`` puts together. The gallery's notification configuration
is a kind of its own (``infra.notification_handlers``).

Both buckets are created, read and configured by the same code (``BucketHandler``); they
differ only at destroy. The gallery is kept, and destroy refused before any step, while it
holds anything, unless images are to be deleted (``holds_objects``). Thumbnails can be made
again from the images, so ``ThumbnailsBucketHandler`` always empties its bucket and never
holds destroy up: it keeps no bucket the gallery's decision would not keep, because that
refusal comes at planning, before any step runs.

What creating it, reading it back canonically and deleting it take:

* **Creating**: CreateBucket in us-east-1 must not send a ``CreateBucketConfiguration``
  (S3 rejects ``LocationConstraint: us-east-1``), every other region must. Bucket names
  are global: ``BucketAlreadyOwnedByYou`` means a previous run got there (carry on), while
  ``BucketAlreadyExists`` and a 403 from HeadBucket mean another account owns the name
  (``BucketNameTaken``). Right after a bucket of that name was deleted, S3 answers
  ``OperationAborted`` for a while: retried.
* **Reading**: each missing configuration (``NoSuchBucketPolicy``,
  ``NoSuchLifecycleConfiguration``, ...) reads as ``None``, so the planner puts it. The
  policy is compared as parsed JSON; lifecycle rules are normalised (empty values dropped,
  ``ExpiredObjectDeleteMarker: false`` dropped as the default it is, a missing, empty or
  legacy top-level prefix becomes ``Filter: {"Prefix": ""}``) because S3 and moto return
  them in more than one form.
* **Tags**: S3's PutBucketTagging replaces the whole set, so imgcli's tags are merged with
  everyone else's before writing.
* **Emptying**: every object version and delete marker goes, page by page, each page
  re-listed from the start rather than continued from a marker: the listing changes under
  the deletes (moto even ends a marker-continued listing early once the marker's version
  is gone). DeleteObjects answers 200 with per-key ``Errors``; any is raised. Incomplete
  multipart uploads are aborted too, so they stop costing money.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final, TypeVar

from botocore.exceptions import ClientError

from imgcli.infra.aws_support import (
    OWN_TAG_PREFIX,
    RUN_AGAIN,
    Patience,
    absent_on,
    is_error,
    own_tags,
    paginated,
    retry_while,
    settings_of,
    tag_dict,
    tag_list,
    unknown_setting,
)
from imgcli.infra.errors import BucketNameTaken, BucketNotEmpty, InfraError
from imgcli.infra.handlers import Observed, Sleep
from imgcli.infra.resources import Resource

T = TypeVar("T")

#: The most keys one DeleteObjects call (and one ListObjectVersions page) takes.
S3_BATCH_LIMIT: Final = 1000

ANOTHER_STACK_NAME: Final = (
    "choose another stack name with --stack or IMGCLI_STACK: the bucket name follows it"
)

#: S3's "conflicting operation" after a same-named bucket was deleted lasts seconds to minutes.
BUCKET_CONFLICT_PATIENCE: Final = Patience(delay_s=5.0, total_s=120.0)

_BUCKET_MISSING: Final = ("404", "NoSuchBucket", "NotFound")
#: What S3 answers about a bucket this account may not read (most likely someone else's).
BUCKET_FORBIDDEN: Final = ("403", "Forbidden", "AccessDenied")
_NO_PUBLIC_ACCESS_BLOCK: Final = ("NoSuchPublicAccessBlockConfiguration",)
_NO_OWNERSHIP: Final = ("OwnershipControlsNotFoundError",)
_NO_ENCRYPTION: Final = ("ServerSideEncryptionConfigurationNotFoundError",)
_NO_POLICY: Final = ("NoSuchBucketPolicy",)
_NO_LIFECYCLE: Final = ("NoSuchLifecycleConfiguration",)
_NO_TAGS: Final = ("NoSuchTagSet",)

_EMPTY: Final[tuple[Any, ...]] = (None, "", {}, [])


def _without_empty(value: Any) -> Any:
    """``value`` without keys whose value is empty, however deep."""
    if isinstance(value, Mapping):
        cleaned = {k: _without_empty(v) for k, v in value.items()}
        return {k: v for k, v in cleaned.items() if v not in _EMPTY}
    if isinstance(value, list):
        return [_without_empty(v) for v in value]
    return value


def canonical_lifecycle_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """One lifecycle rule as ``infra.resources`` writes it, whatever form S3 returned.

    A rule for every object can come back with ``Filter: {"Prefix": ""}``, ``Filter: {}``,
    no filter at all, or the legacy top-level ``Prefix``; all of them mean the same.
    ``Expiration: {"ExpiredObjectDeleteMarker": true}`` is kept exactly; ``false`` is what
    leaving it out means, and goes (with the ``Expiration`` it leaves empty).
    """
    expiration = rule.get("Expiration")
    if isinstance(expiration, Mapping) and expiration.get("ExpiredObjectDeleteMarker") is False:
        expiration = {k: v for k, v in expiration.items() if k != "ExpiredObjectDeleteMarker"}
        rule = {**rule, "Expiration": expiration}
    canonical = _without_empty(rule)
    legacy_prefix = canonical.pop("Prefix", "")
    if "Filter" not in canonical:
        canonical["Filter"] = {"Prefix": legacy_prefix}
    return dict(canonical)


def name_taken(name: str) -> BucketNameTaken:
    return BucketNameTaken(
        f"bucket name {name} belongs to another AWS account (bucket names are global across "
        "all accounts)",
        hint=ANOTHER_STACK_NAME,
    )


def xml_safe(key: str) -> bool:
    """Whether ``key`` survives an XML 1.0 body as it is: no control character (a tab and
    a newline would, but a carriage return becomes a newline, so all go alike), nor the
    noncharacters U+FFFE and U+FFFF or a lone surrogate, which XML 1.0 excludes too."""
    return not any(
        ord(character) < 0x20 or character in "\ufffe\uffff" or "\ud800" <= character <= "\udfff"
        for character in key
    )


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class BucketHandler:
    """A bucket of the stack: created in the right region, locked down (and versioned as its
    resource says), emptied on request.

    ``page_size`` is how many object versions one listing returns while emptying the bucket
    (S3's maximum, also the most one DeleteObjects takes); tests lower it to cross pages.
    """

    def __init__(
        self,
        client: Any,
        *,
        region: str,
        sleep: Sleep,
        patience: Patience = BUCKET_CONFLICT_PATIENCE,
        page_size: int = S3_BATCH_LIMIT,
    ):
        self._client = client
        self._region = region
        self._sleep = sleep
        self._patience = patience
        self._page_size = min(page_size, S3_BATCH_LIMIT)
        self._writers: dict[str, Callable[[str, Any], None]] = {
            "public_access_block": self._put_public_access_block,
            "ownership": self._put_ownership,
            "encryption": self._put_encryption,
            "policy": self._put_policy,
            "versioning": self._put_versioning,
            "lifecycle": self._put_lifecycle,
            "tags": self._put_tags,
        }

    def read(self, name: str) -> Observed | None:
        if not self._exists(name):
            return None
        return Observed(
            {
                "public_access_block": self._public_access_block(name),
                "ownership": self._ownership(name),
                "encryption": self._encryption(name),
                "policy": self._policy(name),
                "versioning": self._client.get_bucket_versioning(Bucket=name).get("Status"),
                "lifecycle": self._lifecycle(name),
                "tags": own_tags(self._tags(name)),
            }
        )

    def create(self, resource: Resource, refs: Mapping[str, str]) -> Mapping[str, str]:
        self._create_bucket(resource.name)
        for setting, value in settings_of(resource, refs).items():
            self._writer(resource, setting)(resource.name, value)
        return {}

    def update(self, resource: Resource, setting: str, refs: Mapping[str, str]) -> None:
        self._writer(resource, setting)(resource.name, settings_of(resource, refs)[setting])

    def holds_objects(self, name: str) -> bool:
        """True if the bucket holds any object version or delete marker."""
        page = absent_on(
            _BUCKET_MISSING, lambda: self._client.list_object_versions(Bucket=name, MaxKeys=1)
        )
        return page is not None and bool(page.get("Versions") or page.get("DeleteMarkers"))

    def delete(self, name: str, *, delete_images: bool) -> None:
        try:
            if delete_images:
                self._delete_every_version(name)
                self._abort_multipart_uploads(name)
            else:
                self._refuse_if_not_empty(name)
            self._client.delete_bucket(Bucket=name)
        except ClientError as error:
            if not is_error(error, _BUCKET_MISSING):
                raise

    # creating ----------------------------------------------------------------------------

    def _create_bucket(self, name: str) -> None:
        request: dict[str, Any] = {"Bucket": name}
        # us-east-1 is S3's default location and rejects being named as a constraint.
        if self._region != "us-east-1":
            request["CreateBucketConfiguration"] = {"LocationConstraint": self._region}
        try:
            retry_while(
                lambda error: is_error(error, ("OperationAborted",)),
                lambda: self._client.create_bucket(**request),
                patience=self._patience,
                sleep=self._sleep,
                what=f"creating bucket {name} (a bucket of that name was deleted moments ago)",
                hint=f"wait a few minutes, then {RUN_AGAIN}",
            )
        except ClientError as error:
            if is_error(error, ("BucketAlreadyExists",)):
                raise name_taken(name) from error
            if not is_error(error, ("BucketAlreadyOwnedByYou",)):
                raise

    def _writer(self, resource: Resource, setting: str) -> Callable[[str, Any], None]:
        writer = self._writers.get(setting)
        if writer is None:
            raise unknown_setting(resource, setting)
        return writer

    def _put_public_access_block(self, name: str, value: Mapping[str, bool]) -> None:
        self._client.put_public_access_block(
            Bucket=name, PublicAccessBlockConfiguration=dict(value)
        )

    def _put_ownership(self, name: str, value: str) -> None:
        self._client.put_bucket_ownership_controls(
            Bucket=name, OwnershipControls={"Rules": [{"ObjectOwnership": value}]}
        )

    def _put_encryption(self, name: str, value: str) -> None:
        self._client.put_bucket_encryption(
            Bucket=name,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": value}}]
            },
        )

    def _put_policy(self, name: str, value: Mapping[str, Any]) -> None:
        self._client.put_bucket_policy(Bucket=name, Policy=json.dumps(value))

    def _put_versioning(self, name: str, value: str) -> None:
        self._client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": value})

    def _put_lifecycle(self, name: str, value: Sequence[Mapping[str, Any]]) -> None:
        self._client.put_bucket_lifecycle_configuration(
            Bucket=name, LifecycleConfiguration={"Rules": list(value)}
        )

    def _put_tags(self, name: str, value: Mapping[str, str]) -> None:
        # PutBucketTagging replaces the whole set: keep everyone else's tags. S3 refuses
        # to write "aws:" keys (AWS services set those themselves), so they cannot be kept.
        foreign = {
            k: v for k, v in self._tags(name).items() if not k.startswith((OWN_TAG_PREFIX, "aws:"))
        }
        self._client.put_bucket_tagging(
            Bucket=name, Tagging={"TagSet": tag_list({**foreign, **value})}
        )

    # reading -----------------------------------------------------------------------------

    def _exists(self, name: str) -> bool:
        try:
            self._client.head_bucket(Bucket=name)
        except ClientError as error:
            if is_error(error, _BUCKET_MISSING):
                return False
            if is_error(error, BUCKET_FORBIDDEN):
                raise BucketNameTaken(
                    f"bucket {name} exists but this account may not read it: the name is "
                    "taken by another AWS account (or your credentials lack s3:ListBucket on it)",
                    hint=ANOTHER_STACK_NAME,
                ) from error
            raise
        return True

    def _public_access_block(self, name: str) -> dict[str, bool] | None:
        return absent_on(
            _NO_PUBLIC_ACCESS_BLOCK,
            lambda: dict(
                self._client.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
            ),
        )

    def _ownership(self, name: str) -> str | None:
        controls = absent_on(
            _NO_OWNERSHIP,
            lambda: self._client.get_bucket_ownership_controls(Bucket=name)["OwnershipControls"],
        )
        rules = (controls or {}).get("Rules", [])
        return rules[0]["ObjectOwnership"] if rules else None

    def _encryption(self, name: str) -> str | None:
        configuration = absent_on(
            _NO_ENCRYPTION,
            lambda: self._client.get_bucket_encryption(Bucket=name)[
                "ServerSideEncryptionConfiguration"
            ],
        )
        rules = (configuration or {}).get("Rules", [])
        if not rules:
            return None
        algorithm = rules[0].get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm")
        return None if algorithm is None else str(algorithm)

    def _policy(self, name: str) -> dict[str, Any] | None:
        text = absent_on(_NO_POLICY, lambda: self._client.get_bucket_policy(Bucket=name)["Policy"])
        return None if text is None else dict(json.loads(text))

    def _lifecycle(self, name: str) -> list[dict[str, Any]] | None:
        rules = absent_on(
            _NO_LIFECYCLE,
            lambda: self._client.get_bucket_lifecycle_configuration(Bucket=name)["Rules"],
        )
        return None if rules is None else [canonical_lifecycle_rule(r) for r in rules]

    def _tags(self, name: str) -> dict[str, str]:
        tag_set = absent_on(
            _NO_TAGS, lambda: self._client.get_bucket_tagging(Bucket=name)["TagSet"]
        )
        return tag_dict(tag_set or [])

    # emptying ----------------------------------------------------------------------------

    def _refuse_if_not_empty(self, name: str) -> None:
        page = self._client.list_object_versions(Bucket=name, MaxKeys=S3_BATCH_LIMIT)
        count = len(page.get("Versions", [])) + len(page.get("DeleteMarkers", []))
        if count == 0:
            return
        how_many = f"at least {count}" if page.get("IsTruncated") else str(count)
        raise BucketNotEmpty(
            f"bucket {name} still holds {how_many} object versions and delete markers (images "
            "and their earlier versions)",
            hint="pass --delete-images to delete every version of every image too",
        )

    def _delete_every_version(self, name: str) -> None:
        previous: list[dict[str, str]] = []
        while True:
            page = self._client.list_object_versions(Bucket=name, MaxKeys=self._page_size)
            entries = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
            ]
            if not entries:
                return
            if entries == previous:  # the deletes changed nothing: never loop for ever
                raise InfraError(
                    f"S3 still lists {len(entries)} object versions of bucket {name} after "
                    f"deleting them, e.g. {entries[0]['Key']!r}; the bucket was kept",
                    hint="check that your credentials may s3:DeleteObjectVersion, then run "
                    "destroy again",
                )
            previous = entries
            # DeleteObjects is an XML body, which cannot carry most control characters:
            # such keys (possible since S3 takes any UTF-8) go one request each.
            lone = [entry for entry in entries if not xml_safe(entry["Key"])]
            for entry in lone:
                self._client.delete_object(Bucket=name, **entry)
            safe = [entry for entry in entries if xml_safe(entry["Key"])]
            for batch in batches(safe, S3_BATCH_LIMIT):
                self._delete_objects(name, batch)

    def _delete_objects(self, name: str, objects: Sequence[Mapping[str, str]]) -> None:
        response = self._client.delete_objects(
            Bucket=name, Delete={"Objects": list(objects), "Quiet": True}
        )
        errors = response.get("Errors", [])
        if errors:
            first = errors[0]
            raise InfraError(
                f"S3 refused to delete {len(errors)} object versions from bucket {name}, e.g. "
                f"{first.get('Key')!r} ({first.get('Code')}: {first.get('Message')}); "
                "the bucket was kept",
                hint="check that your credentials may s3:DeleteObjectVersion, then run destroy "
                "again",
            )

    def _abort_multipart_uploads(self, name: str) -> None:
        for upload in paginated(self._client, "list_multipart_uploads", "Uploads", Bucket=name):
            self._abort_upload(name, upload["Key"], upload["UploadId"])

    def _abort_upload(self, name: str, key: str, upload_id: str) -> None:
        absent_on(
            ("NoSuchUpload",),
            lambda: self._client.abort_multipart_upload(Bucket=name, Key=key, UploadId=upload_id),
        )


class ThumbnailsBucketHandler:
    """The thumbnails bucket: a ``BucketHandler`` whose ``delete`` always empties it first.

    It has no ``holds_objects`` on purpose: derived data never makes destroy refuse
    (``infra.plan.plan_destroy`` asks only the kinds that have it).
    """

    def __init__(self, buckets: BucketHandler) -> None:
        self._buckets = buckets

    def read(self, name: str) -> Observed | None:
        return self._buckets.read(name)

    def create(self, resource: Resource, refs: Mapping[str, str]) -> Mapping[str, str]:
        return self._buckets.create(resource, refs)

    def update(self, resource: Resource, setting: str, refs: Mapping[str, str]) -> None:
        self._buckets.update(resource, setting, refs)

    def delete(self, name: str, *, delete_images: bool) -> None:
        # Thumbnails are derived: emptied whatever destroy was told about the images.
        self._buckets.delete(name, delete_images=True)
