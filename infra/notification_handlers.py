"""The handler for the bucket's notification to the save function (S3 event
notifications): one of the storage kinds ``infra.storage_handlers`` puts together, kept
apart from the bucket because it edits a configuration others share.

* A bucket has one notification configuration, possibly holding other people's entries
  (queues, topics, other functions, EventBridge). Only imgcli's Lambda entry is ever
  replaced or removed; the rest is written back as read.
* S3 reports filter rule names as ``Prefix``/``Suffix`` but the API's enum (and moto,
  which fails with a 500 otherwise) wants ``prefix``/``suffix``, so they are lower-cased
  before writing.
* Writing validates every destination in it: on create and update that is wanted (it
  proves the Lambda permission exists), but removing ours skips validation, so someone
  else's stale destination cannot block destroy. Right after AddPermission, S3 may still
  fail to validate ours (``InvalidArgument`` "Unable to validate the following
  destination configurations") until the function's policy has propagated: retried for
  about half a minute.
* A bucket this account may not read (AccessDenied: someone else's, which destroy meets
  before the bucket handler says so) holds nothing of ours: ``read`` finds no entry and
  ``delete`` has nothing to do.
* The planner's ``read``/``delete`` only know the bucket's name, so imgcli's entry is the
  one whose Id has the shape ``StackNames.notification_id`` gives
  (``imgcli-<stack>-index-images``); a bucket belongs to one stack, so there is at most
  one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from botocore.exceptions import ClientError

from imgcli.infra.aws_support import (
    RUN_AGAIN,
    Patience,
    absent_on,
    error_message,
    is_error,
    retry_while,
    settings_of,
)
from imgcli.infra.bucket_handlers import BUCKET_FORBIDDEN
from imgcli.infra.errors import InfraError
from imgcli.infra.handlers import Observed, Sleep
from imgcli.infra.resources import Resource

#: Ids of imgcli's entries in a bucket notification configuration.
OWN_NOTIFICATION_ID: Final = re.compile(r"imgcli-[a-z0-9-]+-index-images")

#: A Lambda permission just added reaches S3's destination check within seconds.
NOTIFICATION_VALIDATION_PATIENCE: Final = Patience(delay_s=1.0, max_delay_s=5.0, total_s=30.0)

_LAMBDA_CONFIGURATIONS: Final = "LambdaFunctionConfigurations"
_UNVALIDATED_DESTINATION: Final = "Unable to validate the following destination configurations"


def is_own_notification(entry: Mapping[str, Any]) -> bool:
    return OWN_NOTIFICATION_ID.fullmatch(str(entry.get("Id", ""))) is not None


def is_unvalidated_destination(error: ClientError) -> bool:
    """S3 could not (yet) check a destination: for ours, the permission is still propagating."""
    invalid = is_error(error, ("InvalidArgument",))
    return invalid and _UNVALIDATED_DESTINATION in error_message(error)


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
        return absent_on(BUCKET_FORBIDDEN, lambda: self._configuration(bucket))

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
