"""The bootstrap, destroy and stack services: what the CLI commands call.

Each service builds the same pieces in the same order: who we are (account, region, from
STS and the session), the stack's names, the code bundle, the handlers, the desired
resources; then a plan from read-only calls; then, unless it is a dry run, the executor.
The CLI only parses options, asks for confirmation and renders what these return.

Like the rest of ``infra``, this knows nothing of imgcli's settings or errors: the caller
passes the stack's name, target and clients, and a function that says where the local
cloud serves an HTTP API (``local_api_url``); failures are ``infra.errors`` classes.

A bootstrap or destroy holds the stack's lock (``infra.lock``) from before it reads the
stack's record until it has saved the result, so a second one of the same stack waits and
then plans from what the first left (usually: up to date); a dry run takes no lock.
``forgetting_local_stacks`` is the same lock for ``imgcli local reset``, which discards
every local stack's resources and then records that they are gone.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from imgcli.infra.errors import BucketNotEmpty, StackNotBootstrapped, StackUsageError
from imgcli.infra.handlers import Handlers
from imgcli.infra.lock import WaitListener, local_cloud_lock, stack_lock, stack_locks
from imgcli.infra.names import StackNames, check_new_stack_name, check_stack_name
from imgcli.infra.plan import Plan, StepListener, execute, plan_bootstrap, plan_destroy
from imgcli.infra.resources import (
    API_ID,
    API_URL,
    Architecture,
    FunctionCode,
    Resource,
    StackOptions,
    desired_stack,
)
from imgcli.infra.state import StackState, local_stack_names, state_path

if TYPE_CHECKING:
    from imgcli.infra.packaging import Target

ClientFactory = Callable[[str], Any]
#: ``(endpoint, api_id) -> base URL`` of an HTTP API on a target that serves it elsewhere
#: than AWS's execute-api host (the local cloud).
ApiUrl = Callable[[str, str], str]


@dataclass(frozen=True)
class StackDescription:
    """What a user (or script) needs to know about a bootstrapped stack."""

    stack: str
    target: str
    region: str | None
    account: str | None
    endpoint_url: str | None
    bucket: str | None
    thumbnails_bucket: str | None
    table: str | None
    functions: dict[str, str]
    api_id: str | None
    api_url: str | None
    failed_events_queue: str | None
    complete: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "target": self.target,
            "region": self.region,
            "account": self.account,
            "endpoint_url": self.endpoint_url,
            "bucket": self.bucket,
            "thumbnails_bucket": self.thumbnails_bucket,
            "table": self.table,
            "functions": self.functions,
            "api_id": self.api_id,
            "api_url": self.api_url,
            "failed_events_queue": self.failed_events_queue,
            "complete": self.complete,
        }


@dataclass(frozen=True)
class Outcome:
    """A plan, and (unless it was a dry run) the stack as it stands afterwards."""

    plan: Plan
    executed: bool
    description: StackDescription | None
    notes: tuple[str, ...] = ()


class StackEnvironment:
    """Account, region, names and handlers of one stack, made from one set of clients.

    ``local_api_url`` says where a local stack's HTTP API is served (required for a local
    target, whose API is not on execute-api's host).
    """

    def __init__(
        self,
        stack: str,
        target: Target,
        client: ClientFactory,
        region: str,
        *,
        local_api_url: ApiUrl | None = None,
    ) -> None:
        check_stack_name(stack)
        if target == "local" and local_api_url is None:
            raise TypeError("a local stack's environment needs local_api_url")
        self.stack = stack
        self.target: Target = target
        self.client = client
        self.region = region
        self.local_api_url = local_api_url
        self.account = str(client("sts").get_caller_identity()["Account"])
        self.names = StackNames(stack, self.account, region)
        self.endpoint_url = str(client("s3").meta.endpoint_url)

    def handlers(self) -> Handlers:
        from imgcli.infra.compute_handlers import compute_handlers
        from imgcli.infra.storage_handlers import storage_handlers

        return {
            **storage_handlers(self.client, region=self.region),
            **compute_handlers(self.client),
        }

    def state(self) -> StackState:
        """The stack's record, refusing one that lives elsewhere (target, account, region).

        Role names are global to an account while their policies name one region's
        resources, so the same stack in a second region would quietly re-point the first
        one's roles: refused. A destroyed stack may start again anywhere.
        """
        name = self.stack
        existing = StackState.load(state_path(name))
        if existing is not None and not existing.destroyed:
            recorded = (existing.target, existing.account, existing.region)
            current = (self.target, self.account, self.region)
            if any(
                was is not None and was != now for was, now in zip(recorded, current, strict=True)
            ):
                raise StackUsageError(
                    f"stack '{name}' lives on {existing.target} in account {existing.account}, "
                    f"region {existing.region}; this run is on {self.target} in "
                    f"account {self.account}, region {self.region}",
                    hint="pass the stack's own --region and credentials, or choose another "
                    "stack name with --stack",
                )
        state = existing or StackState(path=state_path(name), stack=name, target="")
        state.target = self.target
        state.region, state.account, state.endpoint_url = (
            self.region,
            self.account,
            self.endpoint_url,
        )
        return state


def bootstrap(
    environment: StackEnvironment,
    changes: Mapping[str, Any],
    *,
    dry_run: bool,
    on_plan: Callable[[Plan], None] | None = None,
    on_step: StepListener | None = None,
    wait: bool = True,
    on_wait: WaitListener | None = None,
) -> Outcome:
    """Bring the stack up to date with the current code and its options.

    ``changes`` are the options given on this run (``StackOptions`` field names); options
    not given keep the values the stack was last bootstrapped with, so a plain re-run
    never undoes an earlier ``--arch`` or ``--noncurrent-days``. Another bootstrap or
    destroy of the stack running meanwhile is waited for (``on_wait`` hears of it), or
    with ``wait=False`` refused (``StackBusy``).
    """
    if dry_run:
        return _bootstrap(environment, changes, dry_run=True, on_plan=on_plan, on_step=on_step)
    with _locked(environment, "bootstrap", wait=wait, on_wait=on_wait):
        return _bootstrap(environment, changes, dry_run=False, on_plan=on_plan, on_step=on_step)


@contextlib.contextmanager
def _locked(
    environment: StackEnvironment, command: str, *, wait: bool, on_wait: WaitListener | None
) -> Iterator[None]:
    """The stack's lock, after the local cloud's (shared) for a local stack."""
    with contextlib.ExitStack() as held:
        if environment.target == "local":
            held.enter_context(
                local_cloud_lock(command, exclusive=False, wait=wait, on_wait=on_wait)
            )
        held.enter_context(stack_lock(environment.stack, command, wait=wait, on_wait=on_wait))
        yield


def _bootstrap(
    environment: StackEnvironment,
    changes: Mapping[str, Any],
    *,
    dry_run: bool,
    on_plan: Callable[[Plan], None] | None,
    on_step: StepListener | None,
) -> Outcome:
    state = environment.state()
    if not state.outputs and not state.steps_done:
        check_new_stack_name(environment.stack)  # nothing of it exists yet
    options = StackOptions.from_record({**state.options, **changes})
    target = environment.target
    if target == "local":
        options = replace(options, require_tls=False)  # the local cloud is plain HTTP
    code = _function_code(target, options.architecture)
    desired = desired_stack(environment.names, options, code)
    handlers = environment.handlers()
    plan = plan_bootstrap(desired, handlers)
    if on_plan is not None:
        on_plan(plan)
    if dry_run:
        return Outcome(plan, executed=False, description=None)
    if plan.up_to_date and state.complete:
        return Outcome(plan, executed=False, description=describe_state(state))
    state.options = options.as_record()
    state.gone = None
    outputs = execute(plan, handlers, state, on_step=on_step)
    state.outputs = {**outputs, **_record_outputs(environment.names)}
    if target == "local" and API_ID in state.outputs:
        # The local cloud serves each HTTP API under its own endpoint, not execute-api's.
        assert environment.local_api_url is not None  # required for a local target
        state.outputs[API_URL] = environment.local_api_url(
            environment.endpoint_url, state.outputs[API_ID]
        )
    state.save()
    return Outcome(plan, executed=True, description=describe_state(state))


def destroy(
    environment: StackEnvironment,
    *,
    delete_images: bool,
    dry_run: bool,
    confirm: Callable[[Plan], bool],
    on_plan: Callable[[Plan], None] | None = None,
    on_step: StepListener | None = None,
    wait: bool = True,
    on_wait: WaitListener | None = None,
) -> Outcome:
    """Remove every resource of the stack that exists; safe to run again.

    The lock is held from the plan through ``confirm`` to the end, so what a person
    confirmed is what runs; another bootstrap or destroy is waited for or refused as in
    ``bootstrap``.
    """
    if dry_run:
        return _destroy(environment, delete_images, True, confirm, on_plan, on_step)
    with _locked(environment, "destroy", wait=wait, on_wait=on_wait):
        return _destroy(environment, delete_images, False, confirm, on_plan, on_step)


def _destroy(
    environment: StackEnvironment,
    delete_images: bool,
    dry_run: bool,
    confirm: Callable[[Plan], bool],
    on_plan: Callable[[Plan], None] | None,
    on_step: StepListener | None,
) -> Outcome:
    # Destroy finds resources by name only, so neither code nor options matter here.
    desired = _resources_by_name(environment.names)
    handlers = environment.handlers()
    state = environment.state()
    notes: tuple[str, ...] = ()
    try:
        plan = plan_destroy(desired, handlers, delete_images=delete_images)
    except BucketNotEmpty as refusal:
        if not dry_run:
            raise
        # A dry run still shows the whole plan, and says what a real run would refuse.
        plan = plan_destroy(desired, handlers, delete_images=True)
        notes = (f"{refusal.message}: without --delete-images, destroy stops before any step",)
    if on_plan is not None:
        on_plan(plan)
    if dry_run or (plan.steps and not confirm(plan)):
        return Outcome(plan, executed=False, description=None, notes=notes)
    execute(plan, handlers, state, on_step=on_step)
    state.complete, state.destroyed, state.outputs, state.gone = False, True, {}, None
    state.save()
    return Outcome(plan, executed=True, description=None)


@contextlib.contextmanager
def forgetting_local_stacks(
    reason: str,
    *,
    on_wait: WaitListener | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Iterator[list[str]]:
    """Hold the lock of every local stack while the block discards the local cloud; if it
    succeeds, record each stack as gone for ``reason``. Yields the stacks' names.

    A bootstrap or destroy of a local stack that is running, a first one included, is
    waited for first (``local_cloud_lock``), so it cannot save a "complete" record after
    the reset; the records are read under the lock.
    """
    with local_cloud_lock("local reset", exclusive=True, on_wait=on_wait, environ=environ):
        # Listed under the lock: a first bootstrap that made its record meanwhile is seen.
        names = local_stack_names(environ)
        with stack_locks(names, "local reset", on_wait=on_wait, environ=environ):
            yield names
        for name in names:
            state = StackState.load(state_path(name, environ))
            if state is not None and state.target == "local" and not state.destroyed:
                state.mark_gone(reason)


def describe(stack: str) -> StackDescription:
    """The recorded description of a bootstrapped stack (no AWS calls)."""
    state = StackState.load(state_path(stack))
    if state is not None and state.gone:
        raise StackNotBootstrapped(
            f"stack '{stack}' no longer exists: {state.gone}",
            hint=f"run 'imgcli --stack {stack} bootstrap' to create it again",
        )
    if state is None or state.destroyed:
        raise StackNotBootstrapped(
            f"stack '{stack}' has not been bootstrapped",
            hint=f"run 'imgcli --stack {stack} bootstrap' first",
        )
    return describe_state(state)


def describe_state(state: StackState) -> StackDescription:
    outputs = state.outputs
    return StackDescription(
        stack=state.stack,
        target=state.target,
        region=state.region,
        account=state.account,
        endpoint_url=state.endpoint_url,
        bucket=outputs.get("bucket"),
        thumbnails_bucket=outputs.get("thumbnails_bucket"),
        table=outputs.get("table"),
        functions={
            role: outputs[key]
            for role, key in (("save_delete", "save_function"), ("retrieve", "retrieve_function"))
            if key in outputs
        },
        api_id=outputs.get(API_ID),
        api_url=outputs.get(API_URL),
        failed_events_queue=outputs.get("failed_events_queue"),
        complete=state.complete,
    )


@functools.lru_cache(maxsize=4)
def _function_code(target: Target, architecture: Architecture) -> FunctionCode:
    """The bundle for this process: the sources cannot change while a command runs."""
    from imgcli.infra.packaging import LAMBDA_RUNTIME, build_function_zip

    bundle = build_function_zip(target, architecture)
    return FunctionCode(bundle.zip_bytes, bundle.sha256, LAMBDA_RUNTIME)


def _record_outputs(names: StackNames) -> dict[str, str]:
    return {
        "bucket": names.bucket,
        "thumbnails_bucket": names.thumbnails_bucket,
        "table": names.table,
        "save_function": names.save_function,
        "retrieve_function": names.retrieve_function,
        "failed_events_queue": names.failure_queue,
    }


def _resources_by_name(names: StackNames) -> list[Resource]:
    placeholder = FunctionCode(b"", "", "")
    return desired_stack(names, StackOptions(), placeholder)
