"""The handler for the index table, the DynamoDB table of image records: one of the
storage kinds ``infra.storage_handlers`` puts together.

What reading it back canonically and changing it safely take:

* DynamoDB omits ``BillingModeSummary`` for tables that were always provisioned, so a
  missing summary reads as ``PROVISIONED``.
* A schema cannot be changed in place (keys, indexes): ``update`` refuses rather than
  silently recreating a table full of records.
* Creation is asynchronous (CREATING → ACTIVE, longer with an index), and UpdateTimeToLive
  fails until the table is ACTIVE, hence the wait.
* DynamoDB keeps one TTL attribute and rejects enabling another while one is active, so a
  change disables the old one first; AWS also allows only one TTL change per hour,
  reported as such.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from botocore.exceptions import ClientError

from imgcli.infra.aws_support import (
    RUN_AGAIN,
    Patience,
    absent_on,
    is_error,
    own_tags,
    settings_of,
    stale_own_tag_keys,
    tag_dict,
    tag_list,
    unknown_setting,
    wait_until,
)
from imgcli.infra.errors import InfraError
from imgcli.infra.handlers import Observed, Sleep
from imgcli.infra.resources import Resource

#: An on-demand table with one index is usually ACTIVE within a minute; allow five.
TABLE_PATIENCE: Final = Patience(delay_s=2.0, total_s=300.0)

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
