"""The table handler: a schema change refused on moto, and on a Stubber the waits for the
table to become ACTIVE or to be gone, each with a recorded sleep and a bound."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from imgcli.infra.aws_support import Patience
from imgcli.infra.errors import InfraError
from imgcli.infra.resources import Kind
from imgcli.infra.storage_handlers import storage_handlers
from imgcli.infra.table_handlers import TableHandler
from tests.storagedata import REGION, Clients, changed, clients_in, desired


@pytest.fixture
def clients(moto_aws: None) -> Clients:
    return clients_in(REGION)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def handlers(clients: Clients, sleeps: list[float]) -> Any:
    return storage_handlers(clients, region=REGION, sleep=sleeps.append)


def test_table_schema_change_is_refused_not_recreated(handlers: Any) -> None:
    resource = desired(Kind.TABLE)
    handlers[Kind.TABLE].create(resource, {})
    other = changed(resource, "schema", {**resource.settings["schema"], "BillingMode": "X"})

    with pytest.raises(InfraError, match="cannot change that in place") as refused:
        handlers[Kind.TABLE].update(other, "schema", {})
    assert "recreate the table" in str(refused.value.hint)
    assert handlers[Kind.TABLE].read(resource.name) is not None


# Stubbed requests, conflicts and waits -------------------------------------------------


def table_status(status: str) -> dict[str, Any]:
    return {"Table": {"TableStatus": status}}


def test_table_creation_waits_for_active_before_setting_ttl(sleeps: list[float]) -> None:
    resource = desired(Kind.TABLE)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    with Stubber(dynamodb) as stubber:
        stubber.add_response("create_table", {})
        for status in ("CREATING", "CREATING", "ACTIVE"):
            stubber.add_response(
                "describe_table", table_status(status), {"TableName": resource.name}
            )
        stubber.add_response(
            "describe_time_to_live", {"TimeToLiveDescription": {"TimeToLiveStatus": "DISABLED"}}
        )
        stubber.add_response(
            "update_time_to_live",
            {},
            {
                "TableName": resource.name,
                "TimeToLiveSpecification": {"Enabled": True, "AttributeName": "expires_at"},
            },
        )
        TableHandler(dynamodb, sleep=sleeps.append).create(resource, {})
        stubber.assert_no_pending_responses()
    assert sleeps == [2.0, 2.0]


def test_table_creation_gives_up_after_its_bound(sleeps: list[float]) -> None:
    resource = desired(Kind.TABLE)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    handler = TableHandler(dynamodb, sleep=sleeps.append, patience=Patience(1.0, total_s=2.0))
    with Stubber(dynamodb) as stubber:
        stubber.add_response("create_table", {})
        for _ in range(3):
            stubber.add_response("describe_table", table_status("CREATING"))
        with pytest.raises(
            InfraError, match=r"gave up after 2 s waiting for table .* to become ACTIVE"
        ):
            handler.create(resource, {})
        stubber.assert_no_pending_responses()
    assert sleeps == [1.0, 1.0]


def test_table_deletion_waits_until_the_table_is_gone(sleeps: list[float]) -> None:
    name = desired(Kind.TABLE).name
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    with Stubber(dynamodb) as stubber:
        stubber.add_response("delete_table", {}, {"TableName": name})
        for _ in range(2):
            stubber.add_response("describe_table", table_status("DELETING"), {"TableName": name})
        stubber.add_client_error(
            "describe_table", "ResourceNotFoundException", http_status_code=400
        )
        TableHandler(dynamodb, sleep=sleeps.append).delete(name, delete_images=False)
        stubber.assert_no_pending_responses()
    assert sleeps == [2.0, 2.0]


def test_table_deletion_wait_is_bounded(sleeps: list[float]) -> None:
    name = desired(Kind.TABLE).name
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    handler = TableHandler(dynamodb, sleep=sleeps.append, patience=Patience(1.0, total_s=2.0))
    with Stubber(dynamodb) as stubber:
        stubber.add_response("delete_table", {}, {"TableName": name})
        for _ in range(3):
            stubber.add_response("describe_table", table_status("DELETING"))
        with pytest.raises(InfraError, match=r"gave up after 2 s waiting for table .* deleted"):
            handler.delete(name, delete_images=False)
        stubber.assert_no_pending_responses()
    assert sleeps == [1.0, 1.0]
