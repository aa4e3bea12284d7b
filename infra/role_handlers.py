"""The handler for the functions' IAM roles: one of the compute kinds
``infra.compute_handlers`` puts together. Lambda's wait for a new role to propagate is the
function handler's (``infra.function_handlers``): it is Lambda that refuses the role.

* **"Already exists"**: on ``EntityAlreadyExists`` ``create`` falls through to updating
  whatever differs (``infra.aws_support.converge``).
* **Policy documents** come back from IAM URL-encoded JSON strings on the wire; botocore
  decodes them to dicts, other clients and emulators may not. ``policy_document`` accepts
  either, so reading never depends on the client.
* **Deletion order**: IAM refuses to delete a role that still has managed policies
  attached or inline policies, so ``RoleHandler.delete`` detaches and deletes those first.
  "Not found" at any point of the delete counts as done, so destroy can be re-run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import unquote

from botocore.exceptions import ClientError

from imgcli.infra.aws_support import (
    converge,
    is_error,
    own_tags,
    paginated,
    settings_of,
    stale_own_tag_keys,
    tag_dict,
    tag_list,
    unknown_setting,
)
from imgcli.infra.errors import InfraError
from imgcli.infra.handlers import Observed
from imgcli.infra.resources import Resource


class RoleHandler:
    """An IAM role with inline policies only: one per function, nothing shared."""

    def __init__(self, iam: Any) -> None:
        self._iam = iam

    def read(self, name: str) -> Observed | None:
        try:
            role = self._iam.get_role(RoleName=name)["Role"]
            return Observed(
                {
                    "trust_policy": policy_document(role["AssumeRolePolicyDocument"]),
                    "policies": self._inline_policies(name),
                    "tags": own_tags(tag_dict(self._pages("list_role_tags", "Tags", name))),
                }
            )
        except ClientError as error:
            if is_error(error, ("NoSuchEntity",)):
                return None
            raise

    def create(self, resource: Resource, refs: Mapping[str, str]) -> Mapping[str, str]:
        wanted = settings_of(resource, refs)
        try:
            self._iam.create_role(
                RoleName=resource.name,
                AssumeRolePolicyDocument=json.dumps(wanted["trust_policy"]),
                Tags=tag_list(wanted["tags"]),
            )
        except ClientError as error:
            if not is_error(error, ("EntityAlreadyExists",)):
                raise
            return converge(self, resource, refs)
        for policy_name, document in wanted["policies"].items():
            self._put_policy(resource.name, policy_name, document)
        return {}

    def update(self, resource: Resource, setting: str, refs: Mapping[str, str]) -> None:
        wanted = settings_of(resource, refs)[setting]
        if setting == "trust_policy":
            self._iam.update_assume_role_policy(
                RoleName=resource.name, PolicyDocument=json.dumps(wanted)
            )
        elif setting == "policies":
            self._replace_inline_policies(resource.name, wanted)
        elif setting == "tags":
            self._retag(resource.name, wanted)
        else:
            raise unknown_setting(resource, setting)

    def delete(self, name: str, *, delete_images: bool) -> None:
        try:
            for arn in self._attached_policy_arns(name):
                self._iam.detach_role_policy(RoleName=name, PolicyArn=arn)
            for policy_name in self._pages("list_role_policies", "PolicyNames", name):
                self._iam.delete_role_policy(RoleName=name, PolicyName=policy_name)
            self._iam.delete_role(RoleName=name)
        except ClientError as error:
            if not is_error(error, ("NoSuchEntity",)):
                raise

    def _inline_policies(self, name: str) -> dict[str, Any]:
        return {
            policy_name: policy_document(
                self._iam.get_role_policy(RoleName=name, PolicyName=policy_name)["PolicyDocument"]
            )
            for policy_name in self._pages("list_role_policies", "PolicyNames", name)
        }

    def _attached_policy_arns(self, name: str) -> list[str]:
        return [
            attached["PolicyArn"]
            for attached in self._pages("list_attached_role_policies", "AttachedPolicies", name)
        ]

    def _put_policy(self, role: str, policy_name: str, document: Mapping[str, Any]) -> None:
        self._iam.put_role_policy(
            RoleName=role, PolicyName=policy_name, PolicyDocument=json.dumps(document)
        )

    def _replace_inline_policies(self, role: str, wanted: Mapping[str, Any]) -> None:
        """Writes every wanted policy, then deletes the inline ones nobody wants any more
        (in that order, so the role never lacks a permission it keeps)."""
        existing = list(self._pages("list_role_policies", "PolicyNames", role))
        for policy_name, document in wanted.items():
            self._put_policy(role, policy_name, document)
        for policy_name in existing:
            if policy_name not in wanted:
                self._iam.delete_role_policy(RoleName=role, PolicyName=policy_name)

    def _retag(self, role: str, wanted: Mapping[str, str]) -> None:
        live = tag_dict(self._pages("list_role_tags", "Tags", role))
        if wanted:
            self._iam.tag_role(RoleName=role, Tags=tag_list(wanted))
        stale = stale_own_tag_keys(live, wanted)
        if stale:
            self._iam.untag_role(RoleName=role, TagKeys=stale)

    def _pages(self, operation: str, key: str, role: str) -> Iterator[Any]:
        return paginated(self._iam, operation, key, RoleName=role)


def policy_document(value: str | Mapping[str, Any]) -> dict[str, Any]:
    """A policy document as a dict, whether the client decoded IAM's URL-encoded JSON or not."""
    if isinstance(value, Mapping):
        return dict(value)
    try:
        document = json.loads(value)
    except json.JSONDecodeError:
        # Unquote only when plain JSON fails: a decoded document may contain a literal '%'.
        document = json.loads(unquote(value))
    if not isinstance(document, dict):
        raise InfraError(f"IAM returned a policy document that is not a JSON object: {value!r}")
    return document
