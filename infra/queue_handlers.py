"""The handler for the failed-events queue (SQS), where the save function's failed
invocations go: one of the storage kinds ``infra.storage_handlers`` puts together.

``read`` only has the queue's name, so the attributes it reports are those imgcli manages
(``QUEUE_ATTRIBUTES``, which must match the desired resource's keys); SQS returns every
attribute as a string. After DeleteQueue, SQS refuses a queue of the same name for 60 s
(``QueueDeletedRecently``): creation retries across that window.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final

from botocore.exceptions import ClientError

from imgcli.infra.aws_support import (
    RUN_AGAIN,
    Patience,
    absent_on,
    is_error,
    own_tags,
    retry_while,
    settings_of,
    stale_own_tag_keys,
    unknown_setting,
)
from imgcli.infra.errors import InfraError
from imgcli.infra.handlers import Observed, Sleep
from imgcli.infra.resources import Resource

#: The queue attributes imgcli sets, hence the ones ``QueueHandler.read`` reports.
QUEUE_ATTRIBUTES: Final = ("MessageRetentionPeriod", "SqsManagedSseEnabled")

#: SQS blocks a deleted queue's name for 60 s.
QUEUE_NAME_PATIENCE: Final = Patience(delay_s=10.0, total_s=70.0)

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
