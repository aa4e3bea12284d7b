"""Handlers for the compute side of a stack: IAM roles, Lambda functions, their resource
policies, and the HTTP API in front of the retrieve function.

Why this module exists: these four kinds are where serverless deployers meet AWS's
eventual consistency and its "already exists" answers. Each handler below satisfies
``infra.handlers.ResourceHandler``: ``read`` turns the live resource back into exactly the
canonical ``settings`` of ``infra.resources`` (so the planner compares plain dictionaries
and a second bootstrap plans nothing), and every quirk sits behind one intention-named
method, the way Chalice's ``TypedAWSClient`` does it, with ``sleep`` injected so tests
never wait. Every wait and retry is bounded by a ``Patience`` and ends in an
``InfraError`` that says what was awaited and what to do (``infra.aws_support``, shared
with the storage handlers).

Quirks handled, and why:

* **IAM propagation** (``FunctionHandler._while_role_propagates``). A role is
  usable by Lambda only seconds after ``CreateRole``; until then ``CreateFunction`` fails
  with ``InvalidParameterValueException`` "The role defined for the function cannot be
  assumed by Lambda", and ``PutFunctionEventInvokeConfig`` with "...execution role does not
  have permissions to call SendMessage" (the inline policy has not propagated). Both are
  retried with doubling delays (1, 2, 4, 8, then 10 s) for about a minute, matched on the
  message the way Chalice does, so a real parameter error is not retried.
* **Function state** (``_wait_until_active``, ``_wait_until_settled``). A new function
  is ``Pending`` until Lambda has prepared it, and an update runs asynchronously
  (``LastUpdateStatus: InProgress``); another update meanwhile fails with
  ``ResourceConflictException``. So bootstrap waits for ``Active`` after creating, and
  for no update in progress before and after each of its own updates. A ``Failed``
  state or update of *ours* is an error with Lambda's reason; an earlier failed update
  found before ours is not, because the update about to run is what repairs it.
* **"Already exists"** means a previous run got further than its state file says.
  ``EntityAlreadyExists`` (role) and ``ResourceConflictException`` (function) fall through
  to updating whatever differs; an add_permission conflict replaces the statement. HTTP
  APIs have no unique names, so ``create`` first looks for ours and converges it rather
  than making a second API.
* **Policy documents** come back from IAM URL-encoded JSON strings on the wire; botocore
  decodes them to dicts, other clients and emulators may not. ``policy_document`` accepts
  either, so reading never depends on the client.
* **Deletion order**: IAM refuses to delete a role that still has managed policies
  attached or inline policies, so ``RoleHandler.delete`` detaches and deletes those first.
  "Not found" at any point of any delete counts as done, so destroy can be re-run.
* **Tags**: ``read`` reports only imgcli's own ``imgcli:*`` tags and only those are ever
  removed: a ``team=x`` tag someone else adds to a role, function or API is no difference
  to plan, and it stays.
* **Stages without UpdateStage**: moto 5.2.5 (the local cloud) implements no
  ``UpdateStage``. Bootstrap calls it as on AWS, and replaces the stage instead only when
  the endpoint shows that it lacks the operation: moto in process raises
  ``NotImplementedError``, and a moto server answers HTTP 500 with no AWS error code. A
  500 from an AWS host is AWS failing, never a reason to delete the live stage, so it is
  raised like any other error.
* **Async-invoke config is read back after writing it**: moto 5.2.5 appends each
  ``PutFunctionEventInvokeConfig`` and keeps answering with the first, so a changed
  config is deleted and put again when the read-back differs. Deleting first everywhere
  would leave a real function briefly without its failure destination.
* **Architecture changes** go through ``UpdateFunctionCode(Architectures=...)``, as on AWS.
  moto 5.2.5 ignores ``Architectures`` there, so on the local cloud an architecture change
  alone does not show up; the code's digest (which differs per architecture once Pillow's
  wheels are in the zip) still does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, TypeVar
from urllib.parse import unquote, urlsplit

from botocore.exceptions import ClientError

from imgcli.infra.aws_support import (
    RUN_AGAIN,
    ClientFactory,
    Patience,
    error_message,
    is_error,
    own_tags,
    paginated,
    retry_while,
    settings_of,
    stale_own_tag_keys,
    tag_dict,
    tag_list,
    unknown_setting,
    wait_until,
)
from imgcli.infra.handlers import InfraError, Observed, ResourceHandler, Sleep
from imgcli.infra.names import TAG_KEY
from imgcli.infra.resources import API_ID, API_STAGE, API_URL, Kind, Resource

T = TypeVar("T")

#: IAM usually propagates within 10 s; a minute covers its slow days (1+2+4+8+4x10 = 55 s).
ROLE_PROPAGATION: Final = Patience(delay_s=1, max_delay_s=10, total_s=60)
#: A function becomes Active, or finishes an update, within seconds; large zips take longer.
FUNCTION_SETTLING: Final = Patience(delay_s=1, max_delay_s=5, total_s=300)

#: Hosts of AWS's own endpoints (``*.amazonaws.com``, and ``*.amazonaws.com.cn`` in China).
_AWS_HOST_SUFFIXES: Final = (".amazonaws.com", ".amazonaws.com.cn")


def compute_handlers(
    client: ClientFactory, *, sleep: Sleep = time.sleep
) -> dict[Kind, ResourceHandler]:
    """The handlers for roles, functions, permissions and the HTTP API, on ``client``'s clients."""
    lambda_client = client("lambda")
    return {
        Kind.ROLE: RoleHandler(client("iam")),
        Kind.FUNCTION: FunctionHandler(lambda_client, sleep=sleep),
        Kind.PERMISSION: PermissionHandler(lambda_client),
        Kind.API: HttpApiHandler(client("apigatewayv2")),
    }


# Roles ---------------------------------------------------------------------------------


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
            return _converge(self, resource, refs)
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


# Functions -----------------------------------------------------------------------------

#: Function settings changed with UpdateFunctionConfiguration, as that call's parameters.
_CONFIGURATION: Final[Mapping[str, Callable[[Any], dict[str, Any]]]] = {
    "runtime": lambda value: {"Runtime": value},
    "handler": lambda value: {"Handler": value},
    "memory_mb": lambda value: {"MemorySize": value},
    "timeout_s": lambda value: {"Timeout": value},
    "environment": lambda value: {"Environment": {"Variables": dict(value)}},
    "role_arn": lambda value: {"Role": value},
}
#: Function settings changed by uploading the code again.
_CODE: Final = frozenset({"code_sha256", "architecture"})


class FunctionHandler:
    """A Lambda function from a zip, with its async-invoke (failure destination) config."""

    def __init__(
        self,
        lambda_client: Any,
        *,
        sleep: Sleep = time.sleep,
        role_propagation: Patience = ROLE_PROPAGATION,
        settling: Patience = FUNCTION_SETTLING,
    ) -> None:
        self._lambda = lambda_client
        self._sleep = sleep
        self._role_propagation = role_propagation
        self._settling = settling

    def read(self, name: str) -> Observed | None:
        """The function's settings; ``async_invoke`` only if it has such a config.

        ``read`` is not told whether the desired function wants one, so it reports what
        exists: a function that should have one and lacks it then differs.
        """
        try:
            found = self._lambda.get_function(FunctionName=name)
        except ClientError as error:
            if is_error(error, ("ResourceNotFoundException",)):
                return None
            raise
        config = found["Configuration"]
        settings: dict[str, Any] = {
            "code_sha256": config.get("CodeSha256"),
            "runtime": config.get("Runtime"),
            "handler": config.get("Handler"),
            "architecture": (config.get("Architectures") or ["x86_64"])[0],
            "memory_mb": config.get("MemorySize"),
            "timeout_s": config.get("Timeout"),
            "environment": (config.get("Environment") or {}).get("Variables") or {},
            "role_arn": config.get("Role"),
            "tags": own_tags(found.get("Tags") or {}),
        }
        async_invoke = self._async_invoke(name)
        if async_invoke is not None:
            settings["async_invoke"] = async_invoke
        return Observed(settings)

    def create(self, resource: Resource, refs: Mapping[str, str]) -> Mapping[str, str]:
        wanted = settings_of(resource, refs)
        payload = _payload(resource)
        try:
            self._while_role_propagates(
                lambda: self._lambda.create_function(
                    FunctionName=resource.name,
                    Code={"ZipFile": payload},
                    Architectures=[wanted["architecture"]],
                    Role=wanted["role_arn"],
                    Handler=wanted["handler"],
                    Runtime=wanted["runtime"],
                    MemorySize=wanted["memory_mb"],
                    Timeout=wanted["timeout_s"],
                    Environment={"Variables": dict(wanted["environment"])},
                    Tags=dict(wanted["tags"]),
                    Publish=False,
                ),
                role_arn=wanted["role_arn"],
            )
        except ClientError as error:
            if not is_error(error, ("ResourceConflictException",)):
                raise
            return _converge(self, resource, refs)
        self._wait_until_active(resource.name)
        if "async_invoke" in wanted:
            self._put_async_invoke(resource.name, wanted["async_invoke"], wanted["role_arn"])
        return {}

    def update(self, resource: Resource, setting: str, refs: Mapping[str, str]) -> None:
        wanted = settings_of(resource, refs)
        if setting in _CODE:
            self._deploy_code(resource, wanted["code_sha256"], wanted["architecture"])
        elif setting in _CONFIGURATION:
            self._configure(resource.name, _CONFIGURATION[setting](wanted[setting]), wanted)
        elif setting == "tags":
            self._retag(resource.name, wanted["tags"])
        elif setting == "async_invoke":
            self._put_async_invoke(resource.name, wanted["async_invoke"], wanted["role_arn"])
        else:
            raise unknown_setting(resource, setting)

    def delete(self, name: str, *, delete_images: bool) -> None:
        try:
            self._lambda.delete_function(FunctionName=name)
        except ClientError as error:
            if not is_error(error, ("ResourceNotFoundException",)):
                raise

    def _deploy_code(self, resource: Resource, code_sha256: str, architecture: str) -> None:
        """Uploads the zip for ``architecture``, unless that exact code already runs there.

        A change of both digest and architecture arrives as two updates; the second finds
        the work done and uploads nothing.
        """
        config = self._wait_until_settled(resource.name, after_our_update=False)
        live_architecture = (config.get("Architectures") or ["x86_64"])[0]
        if config.get("CodeSha256") == code_sha256 and live_architecture == architecture:
            return
        self._lambda.update_function_code(
            FunctionName=resource.name,
            ZipFile=_payload(resource),
            Architectures=[architecture],
            Publish=False,
        )
        self._wait_until_settled(resource.name, after_our_update=True)

    def _configure(self, name: str, change: dict[str, Any], wanted: Mapping[str, Any]) -> None:
        self._wait_until_settled(name, after_our_update=False)
        # A new role can be as fresh as one just created: Lambda may not assume it yet.
        self._while_role_propagates(
            lambda: self._lambda.update_function_configuration(FunctionName=name, **change),
            role_arn=wanted["role_arn"],
        )
        self._wait_until_settled(name, after_our_update=True)

    def _retag(self, name: str, wanted: Mapping[str, str]) -> None:
        found = self._lambda.get_function(FunctionName=name)
        arn = found["Configuration"]["FunctionArn"]
        if wanted:
            self._lambda.tag_resource(Resource=arn, Tags=dict(wanted))
        stale = stale_own_tag_keys(found.get("Tags") or {}, wanted)
        if stale:
            self._lambda.untag_resource(Resource=arn, TagKeys=stale)

    def _async_invoke(self, name: str) -> dict[str, Any] | None:
        try:
            config = self._lambda.get_function_event_invoke_config(FunctionName=name)
        except ClientError as error:
            if is_error(error, ("ResourceNotFoundException",)):
                return None
            raise
        on_failure = (config.get("DestinationConfig") or {}).get("OnFailure") or {}
        return {
            "MaximumRetryAttempts": config.get("MaximumRetryAttempts"),
            "MaximumEventAgeInSeconds": config.get("MaximumEventAgeInSeconds"),
            "OnFailure": on_failure.get("Destination"),
        }

    def _put_async_invoke(self, name: str, wanted: Mapping[str, Any], role_arn: str) -> None:
        """Replaces the whole config, so nothing set by hand survives to differ later.

        The config is read back: an endpoint that keeps the old one (moto 5.2.5 appends
        and keeps answering with the first) gets it deleted and put again. Deleting first
        everywhere would leave a real function briefly without its failure destination.
        """
        arguments: dict[str, Any] = {
            "FunctionName": name,
            "MaximumRetryAttempts": wanted["MaximumRetryAttempts"],
            "MaximumEventAgeInSeconds": wanted["MaximumEventAgeInSeconds"],
        }
        if wanted.get("OnFailure"):
            arguments["DestinationConfig"] = {"OnFailure": {"Destination": wanted["OnFailure"]}}

        def put() -> None:
            # Lambda checks that the role may send to the destination: the role's
            # inline policy may be only seconds old.
            self._while_role_propagates(
                lambda: self._lambda.put_function_event_invoke_config(**arguments),
                role_arn=role_arn,
            )

        put()
        if self._async_invoke(name) != dict(wanted):
            self._lambda.delete_function_event_invoke_config(FunctionName=name)
            put()

    def _while_role_propagates(self, call: Callable[[], T], *, role_arn: str) -> T:
        return retry_while(
            _is_role_propagation_error,
            call,
            patience=self._role_propagation,
            sleep=self._sleep,
            what=f"Lambda cannot use role {role_arn}",
            hint="check that the role exists, trusts lambda.amazonaws.com and may send to the "
            f"failure destination, then {RUN_AGAIN}",
        )

    def _wait_until_active(self, name: str) -> dict[str, Any]:
        def active() -> dict[str, Any] | None:
            config: dict[str, Any] = self._lambda.get_function_configuration(FunctionName=name)
            state = config.get("State")
            if state == "Failed":
                raise InfraError(
                    f"function {name} failed to start: {config.get('StateReason', 'no reason')}",
                    hint=f"fix the cause, then {RUN_AGAIN}",
                )
            return config if state in (None, "Active") else None

        return wait_until(
            active,
            patience=self._settling,
            sleep=self._sleep,
            what=f"function {name} to become Active",
        )

    def _wait_until_settled(self, name: str, *, after_our_update: bool) -> dict[str, Any]:
        def settled() -> dict[str, Any] | None:
            config: dict[str, Any] = self._lambda.get_function_configuration(FunctionName=name)
            status = config.get("LastUpdateStatus")
            if status == "InProgress" or config.get("State") == "Pending":
                return None
            if status == "Failed" and after_our_update:
                reason = config.get("LastUpdateStatusReason", "no reason")
                raise InfraError(
                    f"updating function {name} failed: {reason}",
                    hint=f"fix the cause, then {RUN_AGAIN}",
                )
            return config

        return wait_until(
            settled,
            patience=self._settling,
            sleep=self._sleep,
            what=f"the update of function {name} to finish",
        )


def _is_role_propagation_error(error: ClientError) -> bool:
    """Lambda's way of saying a role is not (yet) usable; other parameter errors are real."""
    if not is_error(error, ("InvalidParameterValueException",)):
        return False
    message = error_message(error).lower()
    return "role" in message and (
        "cannot be assumed" in message or "does not have permissions" in message
    )


def _payload(resource: Resource) -> bytes:
    if resource.payload is None:
        raise InfraError(f"{resource.label} has no code to upload: the bundle was not built")
    return resource.payload


# Permissions ---------------------------------------------------------------------------


class PermissionHandler:
    """One statement of a function's resource policy, named ``<function>/<statement id>``."""

    def __init__(self, lambda_client: Any) -> None:
        self._lambda = lambda_client

    def read(self, name: str) -> Observed | None:
        function, _, statement_id = name.partition("/")
        try:
            policy = json.loads(self._lambda.get_policy(FunctionName=function)["Policy"])
        except ClientError as error:
            # Both "no such function" and "the function has no policy yet".
            if is_error(error, ("ResourceNotFoundException",)):
                return None
            raise
        for statement in policy.get("Statement", []):
            if statement.get("Sid") == statement_id:
                return Observed(_permission_settings(function, statement))
        return None

    def create(self, resource: Resource, refs: Mapping[str, str]) -> Mapping[str, str]:
        wanted = settings_of(resource, refs)
        try:
            self._add(wanted)
        except ClientError as error:
            if not is_error(error, ("ResourceConflictException",)):
                raise
            # The statement id is taken, by an older version of this statement.
            self._replace(wanted)
        return {}

    def update(self, resource: Resource, setting: str, refs: Mapping[str, str]) -> None:
        # A statement cannot be edited in place, only replaced as a whole.
        self._replace(settings_of(resource, refs))

    def delete(self, name: str, *, delete_images: bool) -> None:
        function, _, statement_id = name.partition("/")
        self._remove(function, statement_id)

    def _replace(self, wanted: Mapping[str, Any]) -> None:
        self._remove(wanted["function"], wanted["statement_id"])
        self._add(wanted)

    def _add(self, wanted: Mapping[str, Any]) -> None:
        arguments = {
            "FunctionName": wanted["function"],
            "StatementId": wanted["statement_id"],
            "Action": wanted["action"],
            "Principal": wanted["principal"],
            "SourceArn": wanted.get("source_arn"),
            "SourceAccount": wanted.get("source_account"),
        }
        self._lambda.add_permission(**{k: v for k, v in arguments.items() if v is not None})

    def _remove(self, function: str, statement_id: str) -> None:
        try:
            self._lambda.remove_permission(FunctionName=function, StatementId=statement_id)
        except ClientError as error:
            if not is_error(error, ("ResourceNotFoundException",)):
                raise


def _permission_settings(function: str, statement: Mapping[str, Any]) -> dict[str, Any]:
    """A policy statement as the canonical permission settings ``add_permission`` made it from."""
    principal = statement.get("Principal")
    if isinstance(principal, Mapping) and "Service" in principal:
        principal = principal["Service"]
    condition = statement.get("Condition") or {}
    return {
        "function": function,
        "statement_id": statement.get("Sid"),
        "action": statement.get("Action"),
        "principal": principal,
        "source_arn": (condition.get("ArnLike") or {}).get("AWS:SourceArn"),
        "source_account": (condition.get("StringEquals") or {}).get("AWS:SourceAccount"),
    }


# HTTP API ------------------------------------------------------------------------------


class HttpApiHandler:
    """An API Gateway HTTP API: routes, one Lambda proxy integration, one stage, tags.

    HTTP API names are not unique, so the stack's API is the one with its name that
    carries the ``imgcli:stack`` tag (the name already embeds the stack name, so the tag
    tells ours from a same-named API someone made by hand). Should there be several (made
    outside bootstrap, which converges an existing one instead of creating another),
    ``read`` and ``update`` use the first ``GetApis`` lists, and ``delete`` removes them all.
    """

    def __init__(self, apis: Any) -> None:
        self._apis = apis

    def read(self, name: str) -> Observed | None:
        api = next(self._our_apis(name), None)
        if api is None:
            return None
        api_id = api["ApiId"]
        routes = self._routes(api_id)
        integration = self._routed_integration(api_id, routes)
        settings = {
            "routes": {
                route["RouteKey"]: route.get("AuthorizationType", "NONE") for route in routes
            },
            "integration": None if integration is None else _integration_settings(integration),
            "stage": self._stage_settings(api_id),
            "tags": own_tags(api.get("Tags") or {}),
        }
        return Observed(settings, _api_outputs(api))

    def create(self, resource: Resource, refs: Mapping[str, str]) -> Mapping[str, str]:
        if next(self._our_apis(resource.name), None) is not None:
            return _converge(self, resource, refs)
        wanted = settings_of(resource, refs)
        api = self._apis.create_api(
            Name=resource.name, ProtocolType="HTTP", Tags=dict(wanted["tags"])
        )
        api_id = api["ApiId"]
        integration_id = self._create_integration(api_id, wanted["integration"])
        for route_key, authorization in wanted["routes"].items():
            self._create_route(api_id, route_key, authorization, integration_id)
        self._create_stage(api_id, wanted["stage"])
        return _api_outputs(api)

    def update(self, resource: Resource, setting: str, refs: Mapping[str, str]) -> None:
        api = next(self._our_apis(resource.name), None)
        if api is None:
            raise InfraError(f"{resource.label} has disappeared", hint=RUN_AGAIN)
        wanted = settings_of(resource, refs)[setting]
        if setting == "routes":
            self._sync_routes(api["ApiId"], wanted)
        elif setting == "integration":
            self._sync_integration(api["ApiId"], wanted)
        elif setting == "stage":
            self._sync_stage(api["ApiId"], wanted)
        elif setting == "tags":
            self._retag(api, wanted)
        else:
            raise unknown_setting(resource, setting)

    def delete(self, name: str, *, delete_images: bool) -> None:
        for api in list(self._our_apis(name)):
            try:
                self._apis.delete_api(ApiId=api["ApiId"])
            except ClientError as error:
                if not is_error(error, ("NotFoundException",)):
                    raise

    def _our_apis(self, name: str) -> Iterator[dict[str, Any]]:
        for api in paginated(self._apis, "get_apis", "Items"):
            if api.get("Name") == name and TAG_KEY in (api.get("Tags") or {}):
                yield api

    def _routes(self, api_id: str) -> list[dict[str, Any]]:
        return sorted(
            paginated(self._apis, "get_routes", "Items", ApiId=api_id),
            key=lambda route: str(route["RouteKey"]),
        )

    def _routed_integration(
        self, api_id: str, routes: list[dict[str, Any]]
    ) -> dict[str, Any] | None:
        """The integration the routes send requests to (else the API's first one)."""
        integrations: dict[str, dict[str, Any]] = {
            integration["IntegrationId"]: integration
            for integration in paginated(self._apis, "get_integrations", "Items", ApiId=api_id)
        }
        for route in routes:
            target = str(route.get("Target", "")).removeprefix("integrations/")
            if target in integrations:
                return integrations[target]
        return next(iter(integrations.values()), None)

    def _stages(self, api_id: str) -> dict[str, dict[str, Any]]:
        return {
            stage["StageName"]: stage
            for stage in paginated(self._apis, "get_stages", "Items", ApiId=api_id)
        }

    def _stage_settings(self, api_id: str) -> dict[str, Any] | None:
        """The ``$default`` stage (the one bootstrap makes), else the first one there is."""
        stages = self._stages(api_id)
        stage = stages.get(API_STAGE) or next(iter(stages.values()), None)
        if stage is None:
            return None
        limits = stage.get("DefaultRouteSettings") or {}
        return {
            "name": stage["StageName"],
            "auto_deploy": bool(stage.get("AutoDeploy", False)),
            "burst_limit": limits.get("ThrottlingBurstLimit"),
            "rate_limit": limits.get("ThrottlingRateLimit"),
        }

    def _create_integration(self, api_id: str, wanted: Mapping[str, Any]) -> str:
        integration = self._apis.create_integration(
            ApiId=api_id,
            IntegrationType=wanted["type"],
            IntegrationUri=wanted["uri"],
            PayloadFormatVersion=wanted["payload_format_version"],
        )
        return str(integration["IntegrationId"])

    def _create_route(
        self, api_id: str, route_key: str, authorization: str, integration_id: str | None
    ) -> None:
        arguments = {"ApiId": api_id, "RouteKey": route_key, "AuthorizationType": authorization}
        if integration_id is not None:
            arguments["Target"] = f"integrations/{integration_id}"
        self._apis.create_route(**arguments)

    def _create_stage(self, api_id: str, wanted: Mapping[str, Any]) -> None:
        self._apis.create_stage(ApiId=api_id, StageName=wanted["name"], **_stage_arguments(wanted))

    def _sync_routes(self, api_id: str, wanted: Mapping[str, str]) -> None:
        """Creates missing routes, fixes their authorization, deletes routes not wanted.

        New routes target the API's integration; if a half-finished create left none,
        they get no target until the ``integration`` update points every route at it.
        """
        routes = self._routes(api_id)
        integration = self._routed_integration(api_id, routes)
        integration_id = None if integration is None else str(integration["IntegrationId"])
        live = {route["RouteKey"]: route for route in routes}
        for route_key, authorization in wanted.items():
            route = live.get(route_key)
            if route is None:
                self._create_route(api_id, route_key, authorization, integration_id)
            elif route.get("AuthorizationType", "NONE") != authorization:
                self._apis.update_route(
                    ApiId=api_id, RouteId=route["RouteId"], AuthorizationType=authorization
                )
        for route_key, route in live.items():
            if route_key not in wanted:
                self._apis.delete_route(ApiId=api_id, RouteId=route["RouteId"])

    def _sync_integration(self, api_id: str, wanted: Mapping[str, Any]) -> None:
        """Updates (or, after a half-finished create, makes) the integration, then points
        every route at it."""
        routes = self._routes(api_id)
        integration = self._routed_integration(api_id, routes)
        if integration is None:
            integration_id = self._create_integration(api_id, wanted)
        else:
            integration_id = str(integration["IntegrationId"])
            self._apis.update_integration(
                ApiId=api_id,
                IntegrationId=integration_id,
                IntegrationType=wanted["type"],
                IntegrationUri=wanted["uri"],
                PayloadFormatVersion=wanted["payload_format_version"],
            )
        target = f"integrations/{integration_id}"
        for route in routes:
            if route.get("Target") != target:
                self._apis.update_route(ApiId=api_id, RouteId=route["RouteId"], Target=target)

    def _sync_stage(self, api_id: str, wanted: Mapping[str, Any]) -> None:
        """Brings the wanted stage to its settings and removes any other stage, so ``read``
        can only ever find the one bootstrap manages."""
        stages = self._stages(api_id)
        if wanted["name"] in stages:
            self._update_stage(api_id, wanted)
        else:
            self._create_stage(api_id, wanted)
        for stage_name in stages:
            if stage_name != wanted["name"]:
                self._apis.delete_stage(ApiId=api_id, StageName=stage_name)

    def _update_stage(self, api_id: str, wanted: Mapping[str, Any]) -> None:
        try:
            self._apis.update_stage(
                ApiId=api_id, StageName=wanted["name"], **_stage_arguments(wanted)
            )
        except (NotImplementedError, ClientError) as error:
            if not _lacks_operation(error, endpoint_url=self._apis.meta.endpoint_url):
                raise
            # Replacing the stage briefly takes the API offline: acceptable only where
            # the endpoint offers nothing better (moto, the local cloud).
            self._apis.delete_stage(ApiId=api_id, StageName=wanted["name"])
            self._create_stage(api_id, wanted)

    def _retag(self, api: Mapping[str, Any], wanted: Mapping[str, str]) -> None:
        arn = self._api_arn(api["ApiId"])
        if wanted:
            self._apis.tag_resource(ResourceArn=arn, Tags=dict(wanted))
        stale = stale_own_tag_keys(api.get("Tags") or {}, wanted)
        if stale:
            self._apis.untag_resource(ResourceArn=arn, TagKeys=stale)

    def _api_arn(self, api_id: str) -> str:
        meta = self._apis.meta
        return f"arn:{meta.partition}:apigateway:{meta.region_name}::/apis/{api_id}"


def _api_outputs(api: Mapping[str, Any]) -> dict[str, str]:
    return {API_ID: str(api["ApiId"]), API_URL: str(api["ApiEndpoint"])}


def _integration_settings(integration: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "type": integration.get("IntegrationType"),
        "uri": integration.get("IntegrationUri"),
        "payload_format_version": integration.get("PayloadFormatVersion"),
    }


def _stage_arguments(wanted: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "AutoDeploy": wanted["auto_deploy"],
        "DefaultRouteSettings": {
            "ThrottlingBurstLimit": wanted["burst_limit"],
            "ThrottlingRateLimit": wanted["rate_limit"],
        },
    }


def _lacks_operation(error: Exception, *, endpoint_url: str | None) -> bool:
    """Whether the endpoint does not implement the call (moto), rather than refusing it.

    moto in process raises ``NotImplementedError``. A moto server answers HTTP 500 with no
    AWS error code, which botocore reports as code "500"; from AWS itself that is an
    outage, so it counts only from an endpoint that is not an AWS host.
    """
    if isinstance(error, NotImplementedError):
        return True
    if not isinstance(error, ClientError) or not is_error(error, ("500",)):
        return False
    host = urlsplit(endpoint_url or "").hostname
    return host is not None and not host.endswith(_AWS_HOST_SUFFIXES)


# Shared --------------------------------------------------------------------------------


def _converge(
    handler: ResourceHandler, resource: Resource, refs: Mapping[str, str]
) -> Mapping[str, str]:
    """Brings a resource that ``create`` found already there to ``resource``'s settings.

    It exists because an earlier run got further than its state file records (or someone
    made it by hand): updating what differs is what a re-run would have planned.
    """
    observed = handler.read(resource.name)
    if observed is None:
        raise InfraError(f"{resource.label} exists but cannot be read back", hint=RUN_AGAIN)
    for setting, wanted in settings_of(resource, refs).items():
        if observed.settings.get(setting) != wanted:
            handler.update(resource, setting, refs)
    return observed.outputs
