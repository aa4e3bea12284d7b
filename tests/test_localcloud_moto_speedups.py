"""moto's dispatcher with a host cache, and the DynamoDB attribute value shortcut."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core.serialize import (
    BaseJSONSerializer,
    ResponseSerializer,
    XFormedAttributePicker,
    get_serializer_class,
)
from moto.core.utils import get_service_model
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from imgcli.localcloud import moto_speedups

#: One attribute of every kind DynamoDB has, nested ones included, and awkward scalars.
EVERY_KIND: dict[str, Any] = {
    "key": {"S": "photos/a+b é.jpg"},
    "empty": {"S": ""},
    "number": {"N": "-12.50"},
    "yes": {"BOOL": True},
    "no": {"BOOL": False},
    "nothing": {"NULL": True},
    "blob": {"B": "aGVsbG8="},
    "strings": {"SS": ["a", "b"]},
    "numbers": {"NS": ["1", "2.5"]},
    "blobs": {"BS": ["aGVsbG8=", "d29ybGQ="]},
    "list": {"L": [{"S": "x"}, {"N": "1"}, {"M": {"deep": {"BOOL": False}}}]},
    "map": {"M": {"inner": {"S": "y"}, "set": {"SS": ["z"]}, "null": {"NULL": True}}},
}


def serialized_body(operation: str, result: dict[str, Any]) -> str:
    """``result`` as moto's server writes the response to a DynamoDB ``operation``."""
    operation_model = get_service_model("dynamodb").operation_model(operation)
    serializer = get_serializer_class("dynamodb", "json")(
        operation_model=operation_model, value_picker=XFormedAttributePicker()
    )
    return str(serializer.serialize(result)["body"])


def test_the_moto_internals_used_are_where_moto_keeps_them() -> None:
    moto_speedups.check_moto_internals()


@pytest.mark.parametrize(
    ("operation", "result"),
    [
        ("GetItem", {"Item": EVERY_KIND}),
        ("Query", {"Items": [EVERY_KIND, {"key": {"S": "b"}}], "Count": 2, "ScannedCount": 5}),
        (
            "Query",
            {"Items": [], "Count": 0, "ScannedCount": 0, "LastEvaluatedKey": {"k": {"S": "a"}}},
        ),
        ("PutItem", {"Attributes": EVERY_KIND}),
    ],
    ids=["get-item", "query", "empty-query", "put-item-old-values"],
)
def test_the_shortcut_writes_exactly_what_moto_writes(
    operation: str, result: dict[str, Any]
) -> None:
    expected = serialized_body(operation, json.loads(json.dumps(result)))
    uninstall = moto_speedups.install()
    try:
        actual = serialized_body(operation, json.loads(json.dumps(result)))
    finally:
        uninstall()
    assert actual == expected
    assert json.loads(actual)  # and it is a real body, not an empty one


#: The members of DynamoDB's ``AttributeValue`` structure.
ATTRIBUTE_VALUE_MEMBERS = {"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"}


def walked_members(result: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ``AttributeValue`` members moto's generic path looks up to write ``result``."""
    walked: list[str] = []
    original = ResponseSerializer._serialize_structure_member

    def recording(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if key in ATTRIBUTE_VALUE_MEMBERS:
            walked.append(key)
        original(self, serialized, value, shape, key)

    with monkeypatch.context() as patch:
        patch.setattr(ResponseSerializer, "_serialize_structure_member", recording)
        serialized_body("GetItem", result)
    return walked


def test_plain_scalars_skip_the_member_walk_and_the_rest_take_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scalars = {"Item": {name: EVERY_KIND[name] for name in ("key", "number", "yes", "nothing")}}
    nested = {"Item": {"map": EVERY_KIND["map"]}}
    assert len(walked_members(scalars, monkeypatch)) == 4 * len(ATTRIBUTE_VALUE_MEMBERS)
    uninstall = moto_speedups.install()
    try:
        assert walked_members(scalars, monkeypatch) == []
        # The map itself goes moto's way; its scalar members are shortcut again.
        assert set(walked_members(nested, monkeypatch)) == ATTRIBUTE_VALUE_MEMBERS
        assert len(walked_members(nested, monkeypatch)) == len(ATTRIBUTE_VALUE_MEMBERS) + 10
    finally:
        uninstall()


def round_trip() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """EVERY_KIND stored in moto through boto3, then read back with GetItem and Scan."""
    item = dict(EVERY_KIND, blob={"B": b"hello"}, blobs={"BS": [b"hello", b"world"]})
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="t",
            AttributeDefinitions=[{"AttributeName": "key", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        client.put_item(TableName="t", Item=item)
        got = client.get_item(TableName="t", Key={"key": item["key"]})["Item"]
        return got, client.scan(TableName="t")["Items"]


def test_dynamodb_answers_the_same_through_the_shortcut() -> None:
    expected = round_trip()
    uninstall = moto_speedups.install()
    try:
        actual = round_trip()
    finally:
        uninstall()
    assert actual == expected
    item, scanned = actual
    assert item["blob"] == {"B": b"hello"} and item["map"]["M"]["set"] == {"SS": ["z"]}
    assert scanned == [item]


def test_install_twice_is_refused_and_uninstall_restores_moto() -> None:
    original = vars(BaseJSONSerializer)["_serialize_type_structure"]
    uninstall = moto_speedups.install()
    try:
        with pytest.raises(RuntimeError, match="already installed"):
            moto_speedups.install()
    finally:
        uninstall()
    assert vars(BaseJSONSerializer)["_serialize_type_structure"] is original
    uninstall()  # a second call changes nothing
    assert vars(BaseJSONSerializer)["_serialize_type_structure"] is original


def test_the_dispatcher_asks_moto_once_per_host(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str | None] = []
    lookup = DomainDispatcherApplication.get_backend_for_host

    def counting(self: Any, host: str | None) -> Any:
        asked.append(host)
        return lookup(self, host)

    monkeypatch.setattr(DomainDispatcherApplication, "get_backend_for_host", counting)
    plain = DomainDispatcherApplication(create_backend_app)
    cached = moto_speedups.CachingDispatcher(create_backend_app)
    hosts = ["s3.us-east-1.amazonaws.com", "dynamodb", "lambda.eu-west-1.amazonaws.com", None]
    expected = [plain.get_backend_for_host(host) for host in hosts]
    asked.clear()
    for _ in range(3):
        assert [cached.get_backend_for_host(host) for host in hosts] == expected
    assert asked == hosts
    assert expected[:3] == ["s3", "dynamodb", "awslambda"]


def test_the_dispatcher_routes_requests_to_the_same_service_as_moto() -> None:
    environ = {
        "PATH_INFO": "/",
        "HTTP_HOST": "127.0.0.1:5000",
        "HTTP_AUTHORIZATION": (
            "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/dynamodb/aws4_request, "
            "SignedHeaders=host, Signature=0"
        ),
        "HTTP_X_AMZ_TARGET": "DynamoDB_20120810.GetItem",
    }
    plain = DomainDispatcherApplication(create_backend_app)
    cached = moto_speedups.CachingDispatcher(create_backend_app)
    assert cached.get_application(dict(environ)).name == plain.get_application(dict(environ)).name
