"""The queue handler: the attributes it reads, and creation waiting out a name SQS still
blocks after a delete (on a Stubber, with the sleeps recorded)."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from imgcli.infra.errors import InfraError
from imgcli.infra.queue_handlers import QUEUE_ATTRIBUTES, QueueHandler
from imgcli.infra.resources import Kind
from tests.storagedata import ACCOUNT, REGION, desired


@pytest.fixture
def sleeps() -> list[float]:
    return []


def test_queue_reads_exactly_the_attributes_the_stack_sets() -> None:
    # read() only knows the name, so this list must follow infra.resources.
    assert set(QUEUE_ATTRIBUTES) == set(desired(Kind.QUEUE).settings["attributes"])


# Stubbed requests, conflicts and waits -------------------------------------------------


def test_queue_creation_waits_out_a_recently_deleted_name(sleeps: list[float]) -> None:
    resource = desired(Kind.QUEUE)
    sqs = boto3.client("sqs", region_name=REGION)
    url = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{resource.name}"
    with Stubber(sqs) as stubber:
        for _ in range(2):
            stubber.add_client_error("create_queue", "AWS.SimpleQueueService.QueueDeletedRecently")
        stubber.add_response("create_queue", {"QueueUrl": url})
        assert QueueHandler(sqs, sleep=sleeps.append).create(resource, {}) == {}
        stubber.assert_no_pending_responses()
    assert sleeps == [10.0, 10.0]


def test_queue_creation_gives_up_once_the_name_stays_blocked(sleeps: list[float]) -> None:
    resource = desired(Kind.QUEUE)
    sqs = boto3.client("sqs", region_name=REGION)
    with Stubber(sqs) as stubber:
        for _ in range(8):
            stubber.add_client_error("create_queue", "AWS.SimpleQueueService.QueueDeletedRecently")
        with pytest.raises(
            InfraError, match=r"creating queue .*: AWS still refuses after 70 s .*DeletedRecently"
        ) as gave_up:
            QueueHandler(sqs, sleep=sleeps.append).create(resource, {})
        stubber.assert_no_pending_responses()
    assert sleeps == [10.0] * 7  # longer than the 60 s SQS blocks the name for
    assert "wait a minute" in str(gave_up.value.hint)
