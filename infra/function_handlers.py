"""The handlers for Lambda: the functions, built from the bundle's zip with their
async-invoke config, and the statements of their resource policies (who may invoke
them). Two of the compute kinds ``infra.compute_handlers`` puts together, sharing one
Lambda client; this is where bootstrap meets most of AWS's eventual consistency.

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
* **"Already exists"**: ``ResourceConflictException`` on CreateFunction falls through to
  updating whatever differs (``infra.aws_support.converge``).
* **One statement per Sid, even when raced** (``PermissionHandler._put``). Lambda answers
  AddPermission for a statement id that is taken with ``ResourceConflictException`` (and
  the local cloud does the same), so a statement never doubles; the handler reads the
  policy to learn what the conflict means: the very statement it wanted (another run just
  added it) is success, a different one under that Sid is replaced (remove, then add), and
  none at all means the conflict was something else (an update of the function in
  progress) and the add is tried again after a pause. Two runs replacing the same
  statement at once end the same way on their next read. Bounded by
  ``PERMISSION_CONFLICT``.
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
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

from botocore.exceptions import ClientError

from imgcli.infra.aws_support import (
    RUN_AGAIN,
    Patience,
    converge,
    error_message,
    is_error,
    own_tags,
    retry_while,
    settings_of,
    stale_own_tag_keys,
    unknown_setting,
    wait_until,
)
from imgcli.infra.errors import InfraError
from imgcli.infra.handlers import Observed, Sleep
from imgcli.infra.resources import Resource

T = TypeVar("T")

#: IAM usually propagates within 10 s; a minute covers its slow days (1+2+4+8+4x10 = 55 s).
ROLE_PROPAGATION: Final = Patience(delay_s=1, max_delay_s=10, total_s=60)
#: A function becomes Active, or finishes an update, within seconds; large zips take longer.
FUNCTION_SETTLING: Final = Patience(delay_s=1, max_delay_s=5, total_s=300)
#: A statement id raced by another run, or an update in progress: settled in seconds.
PERMISSION_CONFLICT: Final = Patience(delay_s=1, max_delay_s=4, total_s=30)


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
            return converge(self, resource, refs)
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

    def __init__(
        self,
        lambda_client: Any,
        *,
        sleep: Sleep = time.sleep,
        patience: Patience = PERMISSION_CONFLICT,
    ) -> None:
        self._lambda = lambda_client
        self._sleep = sleep
        self._patience = patience

    def read(self, name: str) -> Observed | None:
        function, _, statement_id = name.partition("/")
        statement = self._statement(function, statement_id)
        return None if statement is None else Observed(statement)

    def create(self, resource: Resource, refs: Mapping[str, str]) -> Mapping[str, str]:
        self._put(settings_of(resource, refs), replace=False)
        return {}

    def update(self, resource: Resource, setting: str, refs: Mapping[str, str]) -> None:
        # A statement cannot be edited in place, only replaced as a whole.
        self._put(settings_of(resource, refs), replace=True)

    def delete(self, name: str, *, delete_images: bool) -> None:
        function, _, statement_id = name.partition("/")
        self._remove(function, statement_id)

    def _put(self, wanted: Mapping[str, Any], *, replace: bool) -> None:
        """Leaves exactly one statement with ``wanted``'s Sid, holding ``wanted``.

        ``replace`` removes the Sid's statement first (an update). A conflict on the add
        is settled by reading what holds the Sid now (see the module docstring).
        """
        function, statement_id = wanted["function"], wanted["statement_id"]
        delays = self._patience.delays()
        slept, pause = 0.0, False
        while True:
            if pause:
                delay = next(delays, None)
                if delay is None:
                    raise InfraError(
                        f"the permission {function}/{statement_id} stays in conflict after "
                        f"{slept:g} s: another process keeps changing it, or the function "
                        "keeps updating",
                        hint=RUN_AGAIN,
                    )
                self._sleep(delay)
                slept += delay
            if replace:
                self._remove(function, statement_id)
            try:
                self._add(wanted)
                return
            except ClientError as error:
                if not is_error(error, ("ResourceConflictException",)):
                    raise
            found = self._statement(function, statement_id)
            if found is not None and all(found.get(k) == v for k, v in wanted.items()):
                return  # another run put exactly this statement
            # A different statement holds the Sid: replace it, at once the first time (an
            # older version of ours); none does: something else conflicted, so wait.
            pause = found is None or replace
            replace = found is not None

    def _statement(self, function: str, statement_id: str) -> dict[str, Any] | None:
        """The statement with ``statement_id`` as permission settings, or None."""
        try:
            policy = json.loads(self._lambda.get_policy(FunctionName=function)["Policy"])
        except ClientError as error:
            # Both "no such function" and "the function has no policy yet".
            if is_error(error, ("ResourceNotFoundException",)):
                return None
            raise
        for statement in policy.get("Statement", []):
            if statement.get("Sid") == statement_id:
                return _permission_settings(function, statement)
        return None

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
