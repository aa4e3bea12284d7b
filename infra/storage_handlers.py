"""Handlers for the stack's storage: the table, the failed-events queue, the bucket, the
functions' log groups and the bucket's notification to the save function.

``infra.handlers`` defines what the planner asks of a kind (read, create, update one
setting, delete); this module answers it for the kinds that hold data or configure where
data goes. Each class owns every call for its kind, so each AWS quirk sits behind one
intention-named method, and every wait or retry uses the injected ``sleep`` with a bound
(``infra.aws_support.Patience``), after which an ``InfraError`` says what to do.

``read`` returns settings in exactly the canonical form of ``infra.resources``, so an
up-to-date resource compares equal and a second bootstrap plans nothing. What that takes:

* **Tags**: a ``tags`` setting means *imgcli's own tags* (keys ``imgcli:*``, see
  ``infra.aws_support``). Others may tag our resources too; those tags are neither
  reported by ``read`` (they would make every plan differ) nor ever removed. S3's
  PutBucketTagging replaces the whole set, so the bucket's tags are merged with the
  foreign ones before writing.
* **Table**: DynamoDB omits ``BillingModeSummary`` for tables that were always provisioned,
  so a missing summary reads as ``PROVISIONED``. A schema cannot be changed in place (keys,
  indexes): ``update`` refuses rather than silently recreating a table full of records.
  Creation is asynchronous (CREATING → ACTIVE, longer with an index), and UpdateTimeToLive
  fails until the table is ACTIVE, hence the wait. DynamoDB keeps one TTL attribute and
  rejects enabling another while one is active, so a change disables the old one first;
  AWS also allows only one TTL change per hour, reported as such.
* **Queue**: ``read`` only has the queue's name, so the attributes it reports are those
  imgcli manages (``QUEUE_ATTRIBUTES``, which must match the desired resource's keys); SQS
  returns every attribute as a string. After DeleteQueue, SQS refuses a queue of the same
  name for 60 s (``QueueDeletedRecently``): creation retries across that window.
* **Bucket**: CreateBucket in us-east-1 must not send a ``CreateBucketConfiguration``
  (S3 rejects ``LocationConstraint: us-east-1``), every other region must. Bucket names
  are global: ``BucketAlreadyOwnedByYou`` means a previous run got there (carry on), while
  ``BucketAlreadyExists`` and a 403 from HeadBucket mean another account owns the name
  (``BucketNameTaken``). Right after a bucket of that name was deleted, S3 answers
  ``OperationAborted`` for a while: retried. Each missing configuration
  (``NoSuchBucketPolicy``, ``NoSuchLifecycleConfiguration``, ...) reads as ``None``, so the
  planner puts it. The policy is compared as parsed JSON; lifecycle rules are normalised
  (empty values dropped, ``ExpiredObjectDeleteMarker: false`` dropped as the default it
  is, a missing, empty or legacy top-level prefix becomes ``Filter: {"Prefix": ""}``)
  because S3 and moto return them in more than one form.
* **Emptying a bucket**: every object version and delete marker goes, page by page, each
  page re-listed from the start rather than continued from a marker: the listing changes
  under the deletes (moto even ends a marker-continued listing early once the marker's
  version is gone). DeleteObjects answers 200 with per-key ``Errors``; any is raised.
  Incomplete multipart uploads are aborted too, so they stop costing money.
* **Log groups**: Lambda creates ``/aws/lambda/<function>`` itself (without retention) the
  first time a function logs, so "already exists" on create is fine. DescribeLogGroups
  matches by prefix: only the exact name counts. Tags go through the ARN without the
  trailing ``:*`` that DescribeLogGroups' ``arn`` carries.
* **Notification**: a bucket has one notification configuration, possibly holding other
  people's entries (queues, topics, other functions, EventBridge). Only imgcli's Lambda
  entry is ever replaced or removed; the rest is written back as read. S3 reports filter
  rule names as ``Prefix``/``Suffix`` but the API's enum (and moto, which fails with a
  500 otherwise) wants ``prefix``/``suffix``, so they are lower-cased before writing.
  Writing validates every destination in it: on create and update that is wanted (it
  proves the Lambda permission exists), but removing ours skips validation, so someone
  else's stale destination cannot block destroy. Right after AddPermission, S3 may still
  fail to validate ours (``InvalidArgument`` "Unable to validate the following
  destination configurations") until the function's policy has propagated: retried for
  about half a minute. A bucket this account may not read (AccessDenied: someone else's,
  which destroy meets before the bucket handler says so) holds nothing of ours: ``read``
  finds no entry and ``delete`` has nothing to do. The planner's ``read``/``delete`` only
  know the bucket's name, so imgcli's entry is the one whose Id has the shape
  ``StackNames.notification_id`` gives (``imgcli-<stack>-index-images``); a bucket
  belongs to one stack, so there is at most one.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any, Final, TypeVar

from botocore.exceptions import ClientError

from imgcli.infra.aws_support import (
    OWN_TAG_PREFIX,
    RUN_AGAIN,
    ClientFactory,
    Patience,
    absent_on,
    error_message,
    is_error,
    own_tags,
    paginated,
    retry_while,
    settings_of,
    stale_own_tag_keys,
    tag_dict,
    tag_list,
    unknown_setting,
    wait_until,
)
from imgcli.infra.handlers import (
    BucketNameTaken,
    BucketNotEmpty,
    InfraError,
    Observed,
    ResourceHandler,
    Sleep,
)
from imgcli.infra.resources import Kind, Resource

T = TypeVar("T")

#: The queue attributes imgcli sets, hence the ones ``QueueHandler.read`` reports.
QUEUE_ATTRIBUTES: Final = ("MessageRetentionPeriod", "SqsManagedSseEnabled")

#: Ids of imgcli's entries in a bucket notification configuration.
OWN_NOTIFICATION_ID: Final = re.compile(r"imgcli-[a-z0-9-]+-index-images")

#: The most keys one DeleteObjects call (and one ListObjectVersions page) takes.
S3_BATCH_LIMIT: Final = 1000

ANOTHER_STACK_NAME: Final = (
    "choose another stack name with --stack or IMGCLI_STACK: the bucket name follows it"
)

#: An on-demand table with one index is usually ACTIVE within a minute; allow five.
TABLE_PATIENCE: Final = Patience(delay_s=2.0, total_s=300.0)
#: SQS blocks a deleted queue's name for 60 s.
QUEUE_NAME_PATIENCE: Final = Patience(delay_s=10.0, total_s=70.0)
#: S3's "conflicting operation" after a same-named bucket was deleted lasts seconds to minutes.
BUCKET_CONFLICT_PATIENCE: Final = Patience(delay_s=5.0, total_s=120.0)
#: A Lambda permission just added reaches S3's destination check within seconds.
NOTIFICATION_VALIDATION_PATIENCE: Final = Patience(delay_s=1.0, max_delay_s=5.0, total_s=30.0)


# Table ---------------------------------------------------------------------------------

_TABLE_MISSING: Final = ("ResourceNotFoundException",)
_TTL_ON: Final = ("ENABLED", "ENABLING")


def canonical_table_schema(table: Mapping[str, Any]) -> dict[str, Any]:
    """A DescribeTable ``Table`` in the shape of ``infra.resources.table_schema()``."""
    return {
        "AttributeDefinitions": sorted(
            (
                {"AttributeName": a["AttributeName"], "AttributeType": a["AttributeType"]}
                for a in table["AttributeDefinitions"]
            ),
            key=lambda a: a["AttributeName"],
        ),
        "KeySchema": [
            {"AttributeName": k["AttributeName"], "KeyType": k["KeyType"]}
            for k in table["KeySchema"]
        ],
        # Tables that were never on-demand come without a summary.
        "BillingMode": table.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED"),
        "GlobalSecondaryIndexes": [
            {k: index[k] for k in ("IndexName", "KeySchema", "Projection")}
            for index in table.get("GlobalSecondaryIndexes", [])
        ],
    }


class TableHandler:
    """The index table: schema, TTL on the tombstone expiry attribute, tags."""

    def __init__(self, client: Any, *, sleep: Sleep, patience: Patience = TABLE_PATIENCE):
        self._client = client
        self._sleep = sleep
        self._patience = patience

    def read(self, name: str) -> Observed | None:
        table = self._describe(name)
        if table is None:
            return None
        return Observed(
            {
                "schema": canonical_table_schema(table),
                "ttl_attribute": self._ttl_attribute(name),
                "tags": own_tags(self._tags(table["TableArn"])),
            }
        )

    def create(self, resource: Resource, refs: Mapping[str, str]) -> Mapping[str, str]:
        settings = settings_of(resource, refs)
        try:
            self._client.create_table(
                TableName=resource.name, **settings["schema"], Tags=tag_list(settings["tags"])
            )
        except ClientError as error:
            # An earlier run created it and stopped before the TTL: finish that run's job.
            if not is_error(error, ("ResourceInUseException",)):
                raise
        self._wait_until_active(resource.name)
        self._set_ttl(resource.name, settings["ttl_attribute"])
        return {}

    def update(self, resource: Resource, setting: str, refs: Mapping[str, str]) -> None:
        value = settings_of(resource, refs)[setting]
        if setting == "schema":
            raise InfraError(
                f"{resource.label} has a different key schema or index than this version of "
                "imgcli needs, and DynamoDB cannot change that in place",
                hint="back up what you need, then run `imgcli destroy` and `imgcli bootstrap` "
                "to recreate the table",
            )
        self._wait_until_active(resource.name)
        if setting == "ttl_attribute":
            self._set_ttl(resource.name, value)
        elif setting == "tags":
            self._set_tags(resource.name, value)
        else:
            raise unknown_setting(resource, setting)

    def delete(self, name: str, *, delete_images: bool) -> None:
        try:
            self._client.delete_table(TableName=name)
        except ClientError as error:
            if is_error(error, _TABLE_MISSING):
                return
            if not is_error(error, ("ResourceInUseException",)):
                raise
            # Still being created or updated: DynamoDB only deletes a settled table.
            self._wait_until_active(name)
            self._client.delete_table(TableName=name)
        wait_until(
            lambda: self._describe(name) is None,
            patience=self._patience,
            sleep=self._sleep,
            what=f"table {name} to be deleted",
        )

    def _describe(self, name: str) -> dict[str, Any] | None:
        return absent_on(
            _TABLE_MISSING, lambda: self._client.describe_table(TableName=name)["Table"]
        )

    def _is_active(self, name: str) -> bool:
        table = self._describe(name)
        if table is None:
            raise InfraError(
                f"table {name} disappeared while imgcli was waiting for it", hint=RUN_AGAIN
            )
        return bool(table["TableStatus"] == "ACTIVE")

    def _wait_until_active(self, name: str) -> None:
        wait_until(
            lambda: self._is_active(name),
            patience=self._patience,
            sleep=self._sleep,
            what=f"table {name} to become ACTIVE",
        )

    def _ttl_attribute(self, name: str) -> str | None:
        ttl = self._client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        return ttl.get("AttributeName") if ttl.get("TimeToLiveStatus") in _TTL_ON else None

    def _set_ttl(self, name: str, attribute: str | None) -> None:
        current = self._ttl_attribute(name)
        if current == attribute:
            return
        try:
            if current is not None:
                self._switch_ttl(name, current, enabled=False)
            if attribute is not None:
                self._switch_ttl(name, attribute, enabled=True)
        except ClientError as error:
            if not is_error(error, ("ValidationException",)):
                raise
            raise InfraError(
                f"DynamoDB refused to change the TTL of table {name} ({error})",
                hint="DynamoDB allows one TTL change per hour: run bootstrap again later",
            ) from error

    def _switch_ttl(self, name: str, attribute: str, *, enabled: bool) -> None:
        self._client.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": enabled, "AttributeName": attribute},
        )

    def _tags(self, arn: str) -> dict[str, str]:
        tags: dict[str, str] = {}
        request: dict[str, Any] = {"ResourceArn": arn}
        while True:
            page = self._client.list_tags_of_resource(**request)
            tags.update(tag_dict(page.get("Tags", [])))
            if not page.get("NextToken"):
                return tags
            request["NextToken"] = page["NextToken"]

    def _set_tags(self, name: str, wanted: Mapping[str, str]) -> None:
        table = self._describe(name)
        if table is None:
            raise InfraError(f"table {name} does not exist", hint=RUN_AGAIN)
        arn = table["TableArn"]
        stale = stale_own_tag_keys(self._tags(arn), wanted)
        if wanted:
            self._client.tag_resource(ResourceArn=arn, Tags=tag_list(wanted))
        if stale:
            self._client.untag_resource(ResourceArn=arn, TagKeys=stale)


# Queue ---------------------------------------------------------------------------------

_QUEUE_MISSING: Final = ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")
_QUEUE_NAME_BLOCKED: Final = ("AWS.SimpleQueueService.QueueDeletedRecently", "QueueDeletedRecently")
_QUEUE_EXISTS: Final = ("QueueAlreadyExists", "QueueNameExists")


class QueueHandler:
    """The failed-events queue: the save function's on-failure destination."""

    def __init__(
        self,
        client: Any,
        *,
        sleep: Sleep,
        attributes: Collection[str] = QUEUE_ATTRIBUTES,
        patience: Patience = QUEUE_NAME_PATIENCE,
    ):
        self._client = client
        self._sleep = sleep
        self._attributes = tuple(attributes)
        self._patience = patience

    def read(self, name: str) -> Observed | None:
        url = self._url(name)
        if url is None:
            return None
        attributes = self._get_attributes(url, self._attributes)
        tags = self._client.list_queue_tags(QueueUrl=url).get("Tags", {})
        return Observed(
            {
                "attributes": {k: attributes[k] for k in self._attributes if k in attributes},
                "tags": own_tags(tags),
            }
        )

    def create(self, resource: Resource, refs: Mapping[str, str]) -> Mapping[str, str]:
        settings = settings_of(resource, refs)
        try:
            retry_while(
                lambda error: is_error(error, _QUEUE_NAME_BLOCKED),
                lambda: self._client.create_queue(
                    QueueName=resource.name,
                    Attributes=settings["attributes"],
                    tags=settings["tags"],
                ),
                patience=self._patience,
                sleep=self._sleep,
                what=f"creating queue {resource.name} (SQS blocks a deleted queue's name for 60 s)",
                hint=f"wait a minute, then {RUN_AGAIN}",
            )
        except ClientError as error:
            # It exists with other attributes: converge it instead.
            if not is_error(error, _QUEUE_EXISTS):
                raise
            url = self._client.get_queue_url(QueueName=resource.name)["QueueUrl"]
            self._client.set_queue_attributes(QueueUrl=url, Attributes=settings["attributes"])
            self._set_tags(url, settings["tags"])
        return {}

    def update(self, resource: Resource, setting: str, refs: Mapping[str, str]) -> None:
        value = settings_of(resource, refs)[setting]
        url = self._url(resource.name)
        if url is None:
            raise InfraError(f"{resource.label} does not exist", hint=RUN_AGAIN)
        if setting == "attributes":
            self._client.set_queue_attributes(QueueUrl=url, Attributes=value)
        elif setting == "tags":
            self._set_tags(url, value)
        else:
            raise unknown_setting(resource, setting)

    def delete(self, name: str, *, delete_images: bool) -> None:
        url = self._url(name)
        if url is not None:
            absent_on(_QUEUE_MISSING, lambda: self._client.delete_queue(QueueUrl=url))

    def _url(self, name: str) -> str | None:
        return absent_on(
            _QUEUE_MISSING, lambda: self._client.get_queue_url(QueueName=name)["QueueUrl"]
        )

    def _get_attributes(self, url: str, names: Sequence[str]) -> dict[str, str]:
        response = self._client.get_queue_attributes(QueueUrl=url, AttributeNames=list(names))
        return {k: str(v) for k, v in response.get("Attributes", {}).items()}

    def _set_tags(self, url: str, wanted: Mapping[str, str]) -> None:
        current = self._client.list_queue_tags(QueueUrl=url).get("Tags", {})
        stale = stale_own_tag_keys(current, wanted)
        if wanted:
            self._client.tag_queue(QueueUrl=url, Tags=dict(wanted))
        if stale:
            self._client.untag_queue(QueueUrl=url, TagKeys=stale)


# Bucket --------------------------------------------------------------------------------

_BUCKET_MISSING: Final = ("404", "NoSuchBucket", "NotFound")
_BUCKET_FORBIDDEN: Final = ("403", "Forbidden", "AccessDenied")
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


def lowercase_filter_rules(configuration: Mapping[str, Any]) -> dict[str, Any]:
    """A notification configuration whose filter rule names use the API's ``prefix``/``suffix``."""
    result = dict(configuration)
    for kind in ("LambdaFunctionConfigurations", "QueueConfigurations", "TopicConfigurations"):
        entries = []
        for entry in result.get(kind, []):
            rules = entry.get("Filter", {}).get("Key", {}).get("FilterRules")
            if rules is not None:
                lowered = [{**r, "Name": r["Name"].lower()} for r in rules]
                entry = {**entry, "Filter": {"Key": {"FilterRules": lowered}}}
            entries.append(entry)
        if kind in result:
            result[kind] = entries
    return result


def name_taken(name: str) -> BucketNameTaken:
    return BucketNameTaken(
        f"bucket name {name} belongs to another AWS account (bucket names are global across "
        "all accounts)",
        hint=ANOTHER_STACK_NAME,
    )


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class BucketHandler:
    """The image bucket: created in the right region, locked down, versioned, emptied on request.

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
            if is_error(error, _BUCKET_FORBIDDEN):
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
        while True:
            page = self._client.list_object_versions(Bucket=name, MaxKeys=self._page_size)
            entries = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
            ]
            if not entries:
                return
            for batch in batches(entries, S3_BATCH_LIMIT):
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


# Log group -----------------------------------------------------------------------------

_LOG_GROUP_MISSING: Final = ("ResourceNotFoundException",)


class LogGroupHandler:
    """A function's log group, created before the function so it has a retention period."""

    def __init__(self, client: Any):
        self._client = client

    def read(self, name: str) -> Observed | None:
        group = self._find(name)
        if group is None:
            return None
        tags = self._client.list_tags_for_resource(resourceArn=self._arn(group)).get("tags", {})
        return Observed({"retention_days": group.get("retentionInDays"), "tags": own_tags(tags)})

    def create(self, resource: Resource, refs: Mapping[str, str]) -> Mapping[str, str]:
        settings = settings_of(resource, refs)
        try:
            self._client.create_log_group(logGroupName=resource.name, tags=settings["tags"])
        except ClientError as error:
            # Lambda made it when the function first logged: adopt it.
            if not is_error(error, ("ResourceAlreadyExistsException",)):
                raise
            self._set_tags(resource.name, settings["tags"])
        self._set_retention(resource.name, settings["retention_days"])
        return {}

    def update(self, resource: Resource, setting: str, refs: Mapping[str, str]) -> None:
        value = settings_of(resource, refs)[setting]
        if setting == "retention_days":
            self._set_retention(resource.name, value)
        elif setting == "tags":
            self._set_tags(resource.name, value)
        else:
            raise unknown_setting(resource, setting)

    def delete(self, name: str, *, delete_images: bool) -> None:
        absent_on(_LOG_GROUP_MISSING, lambda: self._client.delete_log_group(logGroupName=name))

    def _find(self, name: str) -> dict[str, Any] | None:
        for group in paginated(
            self._client, "describe_log_groups", "logGroups", logGroupNamePrefix=name
        ):
            if group["logGroupName"] == name:
                return dict(group)
        return None

    @staticmethod
    def _arn(group: Mapping[str, Any]) -> str:
        # The tagging API wants the ARN without the ":*" that "arn" ends with.
        return str(group.get("logGroupArn") or group["arn"].removesuffix(":*"))

    def _set_retention(self, name: str, days: int | None) -> None:
        if days is None:
            self._client.delete_retention_policy(logGroupName=name)
        else:
            self._client.put_retention_policy(logGroupName=name, retentionInDays=days)

    def _set_tags(self, name: str, wanted: Mapping[str, str]) -> None:
        group = self._find(name)
        if group is None:
            raise InfraError(f"log group {name} does not exist", hint=RUN_AGAIN)
        arn = self._arn(group)
        current = self._client.list_tags_for_resource(resourceArn=arn).get("tags", {})
        stale = stale_own_tag_keys(current, wanted)
        if wanted:
            self._client.tag_resource(resourceArn=arn, tags=dict(wanted))
        if stale:
            self._client.untag_resource(resourceArn=arn, tagKeys=stale)


# Notification --------------------------------------------------------------------------

_LAMBDA_CONFIGURATIONS: Final = "LambdaFunctionConfigurations"
_UNVALIDATED_DESTINATION: Final = "Unable to validate the following destination configurations"


def is_own_notification(entry: Mapping[str, Any]) -> bool:
    return OWN_NOTIFICATION_ID.fullmatch(str(entry.get("Id", ""))) is not None


def is_unvalidated_destination(error: ClientError) -> bool:
    """S3 could not (yet) check a destination: for ours, the permission is still propagating."""
    invalid = is_error(error, ("InvalidArgument",))
    return invalid and _UNVALIDATED_DESTINATION in error_message(error)


class NotificationHandler:
    """imgcli's entry in the bucket's notification configuration, and nothing else of it."""

    def __init__(
        self,
        client: Any,
        *,
        sleep: Sleep,
        patience: Patience = NOTIFICATION_VALIDATION_PATIENCE,
    ):
        self._client = client
        self._sleep = sleep
        self._patience = patience

    def read(self, name: str) -> Observed | None:
        configuration = self._configuration_if_ours(name)
        ours = [
            e
            for e in (configuration or {}).get(_LAMBDA_CONFIGURATIONS, [])
            if is_own_notification(e)
        ]
        if not ours:
            return None
        entry = ours[0]
        return Observed(
            {
                "id": entry["Id"],
                "function_arn": entry["LambdaFunctionArn"],
                "events": sorted(entry["Events"]),
            }
        )

    def create(self, resource: Resource, refs: Mapping[str, str]) -> Mapping[str, str]:
        self._put_ours(resource, settings_of(resource, refs))
        return {}

    def update(self, resource: Resource, setting: str, refs: Mapping[str, str]) -> None:
        # The entry is written whole: S3 has no call for one of its fields.
        self._put_ours(resource, settings_of(resource, refs))

    def delete(self, name: str, *, delete_images: bool) -> None:
        configuration = self._configuration_if_ours(name)
        if configuration is None:
            return
        entries = configuration.get(_LAMBDA_CONFIGURATIONS, [])
        others = [e for e in entries if not is_own_notification(e)]
        if len(others) == len(entries):
            return
        # Removing our entry adds no destination, so a stale foreign one must not block it.
        remaining = {**configuration, _LAMBDA_CONFIGURATIONS: others}
        absent_on(
            ("NoSuchBucket",),
            lambda: self._put(name, remaining, skip_destination_validation=True),
        )

    def _configuration(self, bucket: str) -> dict[str, Any] | None:
        """The bucket's whole notification configuration; ``None`` if there is no bucket."""
        response = absent_on(
            ("NoSuchBucket",),
            lambda: self._client.get_bucket_notification_configuration(Bucket=bucket),
        )
        if response is None:
            return None
        return {k: v for k, v in response.items() if k != "ResponseMetadata"}

    def _configuration_if_ours(self, bucket: str) -> dict[str, Any] | None:
        """As ``_configuration``, but ``None`` too for a bucket this account may not read:
        someone else's bucket holds no entry of ours, and destroy must not stop there."""
        return absent_on(_BUCKET_FORBIDDEN, lambda: self._configuration(bucket))

    def _put_ours(self, resource: Resource, settings: Mapping[str, Any]) -> None:
        configuration = self._configuration(resource.name)
        if configuration is None:
            raise InfraError(
                f"bucket {resource.name} does not exist, so it cannot notify the save function",
                hint=RUN_AGAIN,
            )
        ours = {
            "Id": settings["id"],
            "LambdaFunctionArn": settings["function_arn"],
            "Events": list(settings["events"]),
        }
        entries: list[Mapping[str, Any]] = []
        placed = False
        for entry in configuration.get(_LAMBDA_CONFIGURATIONS, []):
            if not is_own_notification(entry):
                entries.append(entry)
            elif not placed:
                entries.append(ours)  # where ours was, so the order others see is kept
                placed = True
        if not placed:
            entries.append(ours)
        configuration[_LAMBDA_CONFIGURATIONS] = entries
        # S3 validates every destination here, ours included: that proves the Lambda
        # permission for S3 exists before the bucket relies on it.
        retry_while(
            is_unvalidated_destination,
            lambda: self._put(resource.name, configuration, skip_destination_validation=False),
            patience=self._patience,
            sleep=self._sleep,
            what=f"saving the notification of bucket {resource.name} to {settings['function_arn']}",
            hint="check that the function exists and its resource policy lets S3 invoke it, "
            f"and that every other destination of the bucket still exists; then {RUN_AGAIN}",
        )

    def _put(
        self, bucket: str, configuration: Mapping[str, Any], *, skip_destination_validation: bool
    ) -> None:
        self._client.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration=lowercase_filter_rules(configuration),
            SkipDestinationValidation=skip_destination_validation,
        )


# Factory -------------------------------------------------------------------------------


def storage_handlers(
    client: ClientFactory, *, region: str, sleep: Sleep = time.sleep
) -> dict[Kind, ResourceHandler]:
    """The handlers for the storage kinds, each with its client and the shared ``sleep``."""
    s3 = client("s3")
    return {
        Kind.TABLE: TableHandler(client("dynamodb"), sleep=sleep),
        Kind.QUEUE: QueueHandler(client("sqs"), sleep=sleep),
        Kind.BUCKET: BucketHandler(s3, region=region, sleep=sleep),
        Kind.LOG_GROUP: LogGroupHandler(client("logs")),
        Kind.NOTIFICATION: NotificationHandler(s3, sleep=sleep),
    }
