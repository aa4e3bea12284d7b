"""The compute handlers together, as ``compute_handlers`` makes them: tags others added to
a role, function or API, on moto, and a handler for each compute kind.

The moto tests prove the property the planner relies on: after ``create`` (or ``update``),
``read`` gives back exactly the desired settings, so a second bootstrap plans nothing.
"""

from __future__ import annotations

import boto3
import pytest

from imgcli.infra.api_handlers import HttpApiHandler
from imgcli.infra.compute_handlers import compute_handlers
from imgcli.infra.handlers import ResourceHandler, resolved
from imgcli.infra.resources import Kind
from tests.computedata import NAMES, REGION, Sleeps, changed, client_factory, create_all, desired


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def handlers(moto_aws: None, sleeps: Sleeps) -> dict[Kind, ResourceHandler]:
    return compute_handlers(client_factory, sleep=sleeps)


# moto round trips -----------------------------------------------------------------------

FOREIGN_TAGS = {"team": "photos"}


def api_arn(name: str) -> str:
    client = boto3.client("apigatewayv2", region_name=REGION)
    api_id = next(a["ApiId"] for a in client.get_apis()["Items"] if a["Name"] == name)
    return f"arn:aws:apigateway:{REGION}::/apis/{api_id}"


def add_foreign_tags(kind: Kind, name: str) -> None:
    if kind is Kind.ROLE:
        boto3.client("iam", region_name=REGION).tag_role(
            RoleName=name, Tags=[{"Key": k, "Value": v} for k, v in FOREIGN_TAGS.items()]
        )
    elif kind is Kind.FUNCTION:
        boto3.client("lambda", region_name=REGION).tag_resource(
            Resource=NAMES.function_arn(name), Tags=FOREIGN_TAGS
        )
    else:
        boto3.client("apigatewayv2", region_name=REGION).tag_resource(
            ResourceArn=api_arn(name), Tags=FOREIGN_TAGS
        )


def all_tags(kind: Kind, name: str) -> dict[str, str]:
    if kind is Kind.ROLE:
        tags = boto3.client("iam", region_name=REGION).list_role_tags(RoleName=name)["Tags"]
        return {t["Key"]: t["Value"] for t in tags}
    if kind is Kind.FUNCTION:
        function = boto3.client("lambda", region_name=REGION).get_function(FunctionName=name)
        return dict(function["Tags"])
    client = boto3.client("apigatewayv2", region_name=REGION)
    return dict(client.get_tags(ResourceArn=api_arn(name))["Tags"])


@pytest.mark.parametrize("kind", [Kind.ROLE, Kind.FUNCTION, Kind.API])
def test_tags_others_added_are_neither_reported_nor_removed(
    handlers: dict[Kind, ResourceHandler], kind: Kind
) -> None:
    refs: dict[str, str] = {}
    if kind is Kind.FUNCTION:
        create_all(handlers, Kind.ROLE, refs)
    resource = desired(kind)[0]
    handler = handlers[kind]
    refs.update(handler.create(resource, refs))
    add_foreign_tags(kind, resource.name)

    observed = handler.read(resource.name)
    assert observed is not None
    assert observed.settings == resolved(resource.settings, refs)  # nothing to plan

    more = {**resource.settings["tags"], "imgcli:extra": "yes"}
    handler.update(changed(resource, "tags", more), "tags", refs)
    handler.update(resource, "tags", refs)
    assert all_tags(kind, resource.name) == {**resource.settings["tags"], **FOREIGN_TAGS}


def test_the_factory_gives_a_handler_for_each_compute_kind(moto_aws: None) -> None:
    handlers = compute_handlers(client_factory, sleep=Sleeps())
    assert set(handlers) == {Kind.ROLE, Kind.FUNCTION, Kind.PERMISSION, Kind.API}
    assert isinstance(handlers[Kind.API], HttpApiHandler)
