"""The handler for the functions' log groups (CloudWatch Logs), created before the
functions so their logs have a retention period: one of the storage kinds
``infra.storage_handlers`` puts together.

Lambda creates ``/aws/lambda/<function>`` itself (without retention) the first time a
function logs, so "already exists" on create is fine. DescribeLogGroups matches by prefix:
only the exact name counts. Tags go through the ARN without the trailing ``:*`` that
DescribeLogGroups' ``arn`` carries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from botocore.exceptions import ClientError

from imgcli.infra.aws_support import (
    RUN_AGAIN,
    absent_on,
    is_error,
    own_tags,
    paginated,
    settings_of,
    stale_own_tag_keys,
    unknown_setting,
)
from imgcli.infra.errors import InfraError
from imgcli.infra.handlers import Observed
from imgcli.infra.resources import Resource

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
