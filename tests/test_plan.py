"""The planner and executor against an in-memory cloud: order, no-op re-runs, updates, resume."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from imgcli.infra.errors import BucketNotEmpty
from imgcli.infra.handlers import Observed, resolved
from imgcli.infra.names import StackNames
from imgcli.infra.plan import Plan, execute, plan_bootstrap, plan_destroy
from imgcli.infra.resources import (
    API_ID,
    FunctionCode,
    Kind,
    Resource,
    StackOptions,
    desired_stack,
)
from imgcli.infra.state import StackState

NAMES = StackNames("p1", "123456789012", "us-east-1")


class MemoryCloud:
    """Resources as dictionaries, one handler per kind, with a log of mutating calls."""

    def __init__(self) -> None:
        self.resources: dict[tuple[Kind, str], dict[str, Any]] = {}
        self.calls: list[str] = []
        self.objects_in_bucket = False
        self.fail_at_call: int | None = None
        self.api_ids = iter(f"api{n}" for n in range(100))

    def handlers(self) -> dict[Kind, Any]:
        return {kind: MemoryHandler(self, kind) for kind in Kind}

    def mutate(self, description: str) -> None:
        self.calls.append(description)
        if self.fail_at_call is not None and len(self.calls) == self.fail_at_call:
            raise RuntimeError(f"injected failure at {description}")


class MemoryHandler:
    def __init__(self, cloud: MemoryCloud, kind: Kind) -> None:
        self.cloud = cloud
        self.kind = kind

    def read(self, name: str) -> Observed | None:
        found = self.cloud.resources.get((self.kind, name))
        if found is None:
            return None
        outputs = {API_ID: found["_id"]} if self.kind is Kind.API else {}
        return Observed({k: v for k, v in found.items() if k != "_id"}, outputs)

    def create(self, resource: Resource, refs: Mapping[str, str]) -> Mapping[str, str]:
        self.cloud.mutate(f"create {resource.label}")
        settings = resolved(dict(resource.settings), refs)
        outputs = {}
        if self.kind is Kind.API:
            settings["_id"] = outputs[API_ID] = next(self.cloud.api_ids)
        self.cloud.resources[(self.kind, resource.name)] = settings
        return outputs

    def update(self, resource: Resource, setting: str, refs: Mapping[str, str]) -> None:
        self.cloud.mutate(f"update {resource.label} {setting}")
        value = resolved(resource.settings[setting], refs)
        self.cloud.resources[(self.kind, resource.name)][setting] = value

    def delete(self, name: str, *, delete_images: bool) -> None:
        self.cloud.mutate(f"delete {self.kind} {name}")
        self.cloud.resources.pop((self.kind, name), None)


class MemoryBucketHandler(MemoryHandler):
    def holds_objects(self, name: str) -> bool:
        return self.cloud.objects_in_bucket


@pytest.fixture
def cloud() -> MemoryCloud:
    return MemoryCloud()


@pytest.fixture
def handlers(cloud: MemoryCloud) -> dict[Kind, Any]:
    handlers = cloud.handlers()
    handlers[Kind.BUCKET] = MemoryBucketHandler(cloud, Kind.BUCKET)
    return handlers


def desired(options: StackOptions | None = None, code: bytes = b"v1") -> list[Resource]:
    sha = "sha-" + code.decode()
    return desired_stack(NAMES, options or StackOptions(), FunctionCode(code, sha, "python3.13"))


def state(tmp_path: Path) -> StackState:
    return StackState(path=tmp_path / "p1.json", stack="p1", target="aws")


def labels(plan: Plan) -> list[str]:
    return [step.description for step in plan.steps]


def position(plan: Plan, description: str) -> int:
    return labels(plan).index(description)


def test_first_plan_creates_everything_in_dependency_order(handlers: dict[Kind, Any]) -> None:
    plan = plan_bootstrap(desired(), handlers)
    assert [step.action for step in plan.steps] == ["create"] * len(desired())
    bucket = f"{NAMES.bucket}"
    permission = position(plan, f"create permission {NAMES.save_function}/s3-invoke")
    assert permission < position(plan, f"create bucket notification {bucket}")
    assert position(plan, f"create bucket {bucket}") < permission
    assert position(plan, f"create role {NAMES.save_role}") < position(
        plan, f"create function {NAMES.save_function}"
    )
    assert position(plan, f"create http api {NAMES.api}") < position(
        plan, f"create permission {NAMES.retrieve_function}/api-invoke-0"
    )


def test_second_plan_is_empty(
    handlers: dict[Kind, Any], cloud: MemoryCloud, tmp_path: Path
) -> None:
    execute(plan_bootstrap(desired(), handlers), handlers, state(tmp_path))
    calls = len(cloud.calls)
    again = plan_bootstrap(desired(), handlers)
    assert again.up_to_date
    assert len(cloud.calls) == calls  # planning made no mutating call


def test_changed_code_updates_only_the_functions_code(
    handlers: dict[Kind, Any], tmp_path: Path
) -> None:
    execute(plan_bootstrap(desired(), handlers), handlers, state(tmp_path))
    plan = plan_bootstrap(desired(code=b"v2"), handlers)
    assert labels(plan) == [
        f"update function {NAMES.save_function}: code_sha256",
        f"update function {NAMES.retrieve_function}: code_sha256",
    ]


def test_changed_option_updates_only_that_setting(
    handlers: dict[Kind, Any], tmp_path: Path
) -> None:
    execute(plan_bootstrap(desired(), handlers), handlers, state(tmp_path))
    plan = plan_bootstrap(desired(StackOptions(noncurrent_version_days=90)), handlers)
    assert labels(plan) == [f"update bucket {NAMES.bucket}: lifecycle"]


def test_a_recreated_api_updates_the_permissions_that_name_it(
    handlers: dict[Kind, Any], cloud: MemoryCloud, tmp_path: Path
) -> None:
    execute(plan_bootstrap(desired(), handlers), handlers, state(tmp_path))
    del cloud.resources[(Kind.API, NAMES.api)]
    plan = plan_bootstrap(desired(), handlers)
    assert labels(plan) == [
        f"create http api {NAMES.api}",
        f"update permission {NAMES.retrieve_function}/api-invoke-0: source_arn",
        f"update permission {NAMES.retrieve_function}/api-invoke-1: source_arn",
    ]
    outputs = execute(plan, handlers, state(tmp_path))
    permission = cloud.resources[(Kind.PERMISSION, f"{NAMES.retrieve_function}/api-invoke-0")]
    assert f":{outputs[API_ID]}/*/GET/images" in permission["source_arn"]
    assert plan_bootstrap(desired(), handlers).up_to_date


@pytest.mark.parametrize("failing_call", range(1, len(desired()) + 1))
def test_a_failure_at_any_step_resumes_to_completion(
    failing_call: int, handlers: dict[Kind, Any], cloud: MemoryCloud, tmp_path: Path
) -> None:
    record = state(tmp_path)
    cloud.fail_at_call = failing_call
    with pytest.raises(RuntimeError, match="injected"):
        execute(plan_bootstrap(desired(), handlers), handlers, record)
    saved = StackState.load(record.path)
    assert saved is not None and not saved.complete
    assert len(saved.steps_done) == failing_call - 1

    cloud.fail_at_call = None
    resumed = plan_bootstrap(desired(), handlers)
    assert len(resumed.steps) == len(desired()) - (failing_call - 1)
    execute(resumed, handlers, record)
    assert StackState.load(record.path).complete  # type: ignore[union-attr]
    assert plan_bootstrap(desired(), handlers).up_to_date


@pytest.mark.parametrize("failing_call", [1, 5, 9, 14])
def test_a_half_built_stack_can_be_destroyed(
    failing_call: int, handlers: dict[Kind, Any], cloud: MemoryCloud, tmp_path: Path
) -> None:
    cloud.fail_at_call = failing_call
    with pytest.raises(RuntimeError):
        execute(plan_bootstrap(desired(), handlers), handlers, state(tmp_path))
    cloud.fail_at_call = None
    execute(plan_destroy(desired(), handlers, delete_images=False), handlers, state(tmp_path))
    assert cloud.resources == {}


def test_destroy_runs_in_reverse_and_notification_goes_before_the_bucket(
    handlers: dict[Kind, Any], tmp_path: Path
) -> None:
    execute(plan_bootstrap(desired(), handlers), handlers, state(tmp_path))
    plan = plan_destroy(desired(), handlers, delete_images=False)
    assert [step.resource for step in plan.steps] == list(reversed(desired()))
    assert position(plan, f"delete bucket notification {NAMES.bucket}") < position(
        plan, f"delete bucket {NAMES.bucket}"
    )
    assert position(plan, f"delete function {NAMES.save_function}") < position(
        plan, f"delete role {NAMES.save_role}"
    )


def test_destroy_refuses_a_bucket_with_images_before_deleting_anything(
    handlers: dict[Kind, Any], cloud: MemoryCloud, tmp_path: Path
) -> None:
    execute(plan_bootstrap(desired(), handlers), handlers, state(tmp_path))
    cloud.objects_in_bucket = True
    calls = len(cloud.calls)
    with pytest.raises(BucketNotEmpty, match="still holds images") as refused:
        plan_destroy(desired(), handlers, delete_images=False)
    assert "--delete-images" in (refused.value.hint or "")
    assert len(cloud.calls) == calls
    plan = plan_destroy(desired(), handlers, delete_images=True)
    assert plan.delete_images and plan.steps


def test_destroy_of_nothing_is_an_empty_plan(handlers: dict[Kind, Any]) -> None:
    assert plan_destroy(desired(), handlers, delete_images=False).up_to_date


def test_execute_records_every_step_and_the_outputs(
    handlers: dict[Kind, Any], tmp_path: Path
) -> None:
    record = state(tmp_path)
    plan = plan_bootstrap(desired(), handlers)
    seen: list[tuple[int, int]] = []
    outputs = execute(
        plan, handlers, record, on_step=lambda step, n, total: seen.append((n, total))
    )
    saved = StackState.load(record.path)
    assert saved is not None and saved.complete
    assert saved.steps_done == labels(plan)
    assert saved.outputs == outputs and API_ID in outputs
    assert seen == [(n, len(plan.steps)) for n in range(1, len(plan.steps) + 1)]
