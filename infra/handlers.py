"""The contract between the planner and the AWS-operations layer: one handler per kind.

A handler owns every call for one kind of resource, and with it every AWS quirk of that
kind (IAM propagation, waits for function state, us-east-1 bucket creation, "already
exists" conflicts), the way Chalice's ``TypedAWSClient`` does, with ``sleep`` injected so
tests never wait. The planner only ever asks four things:

* ``read(name)`` (read-only): the live resource as an ``Observed`` whose ``settings`` use
  the same keys and canonical values as ``infra.resources`` (so equal means up to date),
  or ``None`` if it does not exist. A setting left out counts as different, so leave one
  out only when the live resource lacks it (an async invoke config never set), never
  because it is hard to read. Tags mean imgcli's own ``imgcli:*`` tags: other people's
  tags are neither reported nor removed.
* ``create(resource, refs)``: make it with all its settings; returns its outputs.
* ``update(resource, setting, refs)``: bring one setting to ``resource.settings[setting]``.
* ``delete(name, delete_images)``: remove it; "not found" counts as done.

``refs`` holds the outputs of earlier resources (``Ref`` values are resolved against it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from imgcli.infra.errors import UnresolvedRef
from imgcli.infra.resources import Kind, Ref, Resource

Sleep = Callable[[float], None]


@dataclass(frozen=True)
class Observed:
    """A live resource: its settings (canonical, as in ``Resource.settings``) and outputs."""

    settings: Mapping[str, Any]
    outputs: Mapping[str, str] = field(default_factory=dict)


class ResourceHandler(Protocol):
    def read(self, name: str) -> Observed | None: ...

    def create(self, resource: Resource, refs: Mapping[str, str]) -> Mapping[str, str]: ...

    def update(self, resource: Resource, setting: str, refs: Mapping[str, str]) -> None: ...

    def delete(self, name: str, *, delete_images: bool) -> None: ...


@runtime_checkable
class HoldsObjects(Protocol):
    """A handler for a kind that can hold user data (the bucket): destroy asks first."""

    def holds_objects(self, name: str) -> bool: ...


Handlers = Mapping[Kind, ResourceHandler]


def resolved(value: Any, refs: Mapping[str, str]) -> Any:
    """``value`` with every ``Ref`` in it replaced by the output it names."""
    if isinstance(value, Ref):
        result = value.resolve(refs)
        if result is None:
            raise UnresolvedRef(f"no output {value.key!r} yet: its resource must be created first")
        return result
    if isinstance(value, Mapping):
        return {k: resolved(v, refs) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [resolved(v, refs) for v in value]
    return value
