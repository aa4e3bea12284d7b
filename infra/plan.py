"""Plans: what bootstrap or destroy will do, computed from what exists, then carried out.

Planning makes read-only calls only: each desired resource is read back through its
handler and compared with ``infra.resources``, setting by setting. The result is a
``Plan``, plain data: an ordered tuple of ``Step`` values, each with a description a
person can read. ``--dry-run`` prints it; ``execute`` carries it out. An empty plan means
the stack is up to date, and a second bootstrap makes no mutating call at all.

``execute`` records every finished step in the stack's state file before starting the
next, so a failure at any step leaves an accurate record: re-running bootstrap plans only
what is still missing, and destroy removes whatever exists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from imgcli.infra.errors import BucketNameTaken, BucketNotEmpty, ResourceOfAnotherStack
from imgcli.infra.handlers import Handlers, HoldsObjects, Observed, resolved
from imgcli.infra.names import TAG_KEY
from imgcli.infra.resources import Ref, Resource
from imgcli.infra.state import StackState

Action = Literal["create", "update", "delete"]


@dataclass(frozen=True)
class Step:
    action: Action
    resource: Resource
    setting: str | None = None

    @property
    def description(self) -> str:
        if self.action == "update":
            return f"update {self.resource.label}: {self.setting}"
        return f"{self.action} {self.resource.label}"


@dataclass(frozen=True)
class Plan:
    """Steps in order, and the outputs already known from reading what exists."""

    steps: tuple[Step, ...]
    outputs: Mapping[str, str] = field(default_factory=dict)
    delete_images: bool = False

    @property
    def up_to_date(self) -> bool:
        return not self.steps


def plan_bootstrap(desired: Sequence[Resource], handlers: Handlers) -> Plan:
    """The steps that turn what exists into ``desired``; none when it already matches."""
    outputs: dict[str, str] = {}
    steps: list[Step] = []
    for resource in desired:
        observed = handlers[resource.kind].read(resource.name)
        if observed is None:
            steps.append(Step("create", resource))
            continue
        owner = other_stack(resource, observed)
        if owner is not None:
            raise ResourceOfAnotherStack(
                f"{resource.label} belongs to imgcli stack '{owner}' (its {TAG_KEY} tag)",
                hint="choose another stack name with --stack or IMGCLI_STACK",
            )
        outputs.update(observed.outputs)
        steps.extend(
            Step("update", resource, setting)
            for setting in _settings_that_differ(resource, observed, outputs)
        )
    return Plan(tuple(steps), outputs)


def other_stack(resource: Resource, observed: Observed) -> str | None:
    """The imgcli stack ``observed`` is tagged as, if not ``resource``'s own.

    Names follow the stack name, so two stacks' names can meet only by a collision (or a
    hand-made resource); adopting it would let one stack's bootstrap rewrite, and its
    destroy empty, what another stack keeps.
    """
    wanted = resource.settings.get("tags")
    found = observed.settings.get("tags")
    if not isinstance(wanted, Mapping) or not isinstance(found, Mapping):
        return None
    owner = found.get(TAG_KEY)
    return str(owner) if owner is not None and owner != wanted.get(TAG_KEY) else None


def _settings_that_differ(
    resource: Resource, observed: Observed, outputs: Mapping[str, str]
) -> list[str]:
    differ = []
    for setting, wanted in resource.settings.items():
        if _has_unresolved_ref(wanted, outputs):
            # Its source is about to be (re)created: the value will change.
            differ.append(setting)
        elif observed.settings.get(setting) != resolved(wanted, outputs):
            differ.append(setting)
    return differ


def _has_unresolved_ref(value: Any, outputs: Mapping[str, str]) -> bool:
    if isinstance(value, Ref):
        return value.key not in outputs
    if isinstance(value, Mapping):
        return any(_has_unresolved_ref(v, outputs) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_unresolved_ref(v, outputs) for v in value)
    return False


def plan_destroy(desired: Sequence[Resource], handlers: Handlers, *, delete_images: bool) -> Plan:
    """Delete every resource of the stack that exists, in reverse creation order.

    Refuses (``BucketNotEmpty``) before anything is deleted if the bucket still holds
    images and ``delete_images`` is not given: a half-destroyed stack with its images
    still there helps nobody.
    """
    steps: list[Step] = []
    for resource in reversed(desired):
        try:
            observed = handlers[resource.kind].read(resource.name)
        except BucketNameTaken:
            continue  # someone else's bucket: not ours to delete
        if observed is None or other_stack(resource, observed) is not None:
            continue  # absent, or another stack's: not ours to delete
        handler = handlers[resource.kind]
        holds_images = isinstance(handler, HoldsObjects) and handler.holds_objects(resource.name)
        if holds_images and not delete_images:
            raise BucketNotEmpty(
                f"bucket {resource.name} still holds images",
                hint="pass --delete-images to delete every image and its versions too",
            )
        steps.append(Step("delete", resource))
    return Plan(tuple(steps), delete_images=delete_images)


StepListener = Callable[[Step, int, int], None]


def execute(
    plan: Plan,
    handlers: Handlers,
    state: StackState,
    *,
    on_step: StepListener | None = None,
) -> dict[str, str]:
    """Carry out ``plan``, saving ``state`` after every step; returns the stack's outputs."""
    refs: dict[str, str] = {**state.outputs, **plan.outputs}
    state.complete = False
    state.destroyed = False
    state.steps_done = []
    state.outputs = dict(refs)
    state.save()
    for number, step in enumerate(plan.steps, start=1):
        if on_step is not None:
            on_step(step, number, len(plan.steps))
        handler = handlers[step.resource.kind]
        if step.action == "create":
            refs.update(handler.create(step.resource, refs))
        elif step.action == "update":
            assert step.setting is not None
            handler.update(step.resource, step.setting, refs)
        else:
            handler.delete(step.resource.name, delete_images=plan.delete_images)
        state.outputs = dict(refs)
        state.steps_done.append(step.description)
        state.save()
    state.complete = True
    state.save()
    return refs
