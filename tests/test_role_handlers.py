"""The role handler: a moto round trip (policies, tags, trust, deleting a role with
policies attached), policy documents in either encoding, and the delete order on a
Stubber."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber

from imgcli.infra.compute_handlers import compute_handlers
from imgcli.infra.handlers import ResourceHandler
from imgcli.infra.resources import Kind
from imgcli.infra.role_handlers import RoleHandler, policy_document
from tests.computedata import REGION, Sleeps, assert_reads_back, changed, client_factory, desired


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def handlers(moto_aws: None, sleeps: Sleeps) -> dict[Kind, ResourceHandler]:
    return compute_handlers(client_factory, sleep=sleeps)


# moto round trips -----------------------------------------------------------------------


def test_role_round_trip(handlers: dict[Kind, ResourceHandler], sleeps: Sleeps) -> None:
    roles = handlers[Kind.ROLE]
    role = desired(Kind.ROLE)[0]
    assert roles.read(role.name) is None

    assert roles.create(role, {}) == {}
    assert_reads_back(roles, role, {})

    policy = role.settings["policies"]["imgcli"]
    narrower = changed(
        role,
        "policies",
        {"imgcli": {**policy, "Statement": policy["Statement"][:1]}, "extra": policy},
    )
    roles.update(narrower, "policies", {})
    assert_reads_back(roles, narrower, {})
    roles.update(role, "policies", {})  # drops the inline policy no longer wanted
    assert_reads_back(roles, role, {})

    iam = boto3.client("iam", region_name=REGION)
    iam.tag_role(RoleName=role.name, Tags=[{"Key": "imgcli:old", "Value": "x"}])
    iam.tag_role(RoleName=role.name, Tags=[{"Key": "team", "Value": "photos"}])
    roles.update(role, "tags", {})
    assert_reads_back(roles, role, {})
    live = iam.list_role_tags(RoleName=role.name)["Tags"]
    assert {t["Key"]: t["Value"] for t in live} == {**role.settings["tags"], "team": "photos"}

    trust = json.loads(json.dumps(role.settings["trust_policy"]))
    trust["Statement"][0]["Condition"]["StringEquals"]["aws:SourceAccount"] = "999999999999"
    roles.update(changed(role, "trust_policy", trust), "trust_policy", {})
    observed = roles.read(role.name)
    assert observed is not None and observed.settings["trust_policy"] == trust

    # A role with an attached managed policy and inline ones still goes away.
    iam.create_policy(PolicyName="managed", PolicyDocument=json.dumps(policy))
    iam.attach_role_policy(RoleName=role.name, PolicyArn="arn:aws:iam::123456789012:policy/managed")
    roles.delete(role.name, delete_images=False)
    assert roles.read(role.name) is None
    roles.delete(role.name, delete_images=False)
    assert sleeps == []


def test_creating_an_existing_role_converges_it(handlers: dict[Kind, ResourceHandler]) -> None:
    roles = handlers[Kind.ROLE]
    role = desired(Kind.ROLE)[0]
    boto3.client("iam", region_name=REGION).create_role(
        RoleName=role.name, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"})
    )
    assert roles.create(role, {}) == {}
    assert_reads_back(roles, role, {})


def test_policy_documents_are_read_whichever_way_the_client_returns_them() -> None:
    document = {"Version": "2012-10-17", "Statement": [{"Sid": "100%", "Effect": "Allow"}]}
    text = json.dumps(document)
    assert policy_document(document) == document
    assert policy_document(text) == document
    assert policy_document("%7B%22Version%22%3A%20%222012-10-17%22%7D") == {"Version": "2012-10-17"}


# Stubbed: retries, waits and call order -------------------------------------------------


def test_role_delete_removes_policies_before_the_role() -> None:
    client = boto3.client("iam", region_name=REGION)
    role = {"RoleName": "imgcli-t1-save-delete"}
    managed = "arn:aws:iam::aws:policy/ReadOnlyAccess"
    with Stubber(client) as stubber:
        stubber.add_response(
            "list_attached_role_policies",
            {"AttachedPolicies": [{"PolicyName": "ReadOnlyAccess", "PolicyArn": managed}]},
            role,
        )
        stubber.add_response("detach_role_policy", {}, {**role, "PolicyArn": managed})
        stubber.add_response("list_role_policies", {"PolicyNames": ["imgcli", "old"]}, role)
        stubber.add_response("delete_role_policy", {}, {**role, "PolicyName": "imgcli"})
        stubber.add_response("delete_role_policy", {}, {**role, "PolicyName": "old"})
        stubber.add_response("delete_role", {}, role)
        RoleHandler(client).delete(role["RoleName"], delete_images=False)
        stubber.assert_no_pending_responses()


def test_role_delete_of_a_missing_role_is_done() -> None:
    client = boto3.client("iam", region_name=REGION)
    with Stubber(client) as stubber:
        stubber.add_client_error("list_attached_role_policies", "NoSuchEntity", "not found", 404)
        RoleHandler(client).delete("gone", delete_images=False)
        stubber.assert_no_pending_responses()  # it did ask, and took NoSuchEntity as done
