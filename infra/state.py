"""The stack's state file: what bootstrap has done so far, written after every step.

Chalice records a deployment only once it has fully succeeded, so a deploy that fails half
way can be neither resumed nor deleted (chalice issue #1340). Here the record is written
after **each** step, atomically (a temporary file renamed over the old one), so a crash
leaves the last good record behind. Resource *names* never depend on the record (they are
derived from stack, account and region), so even a lost state file cannot orphan
anything: destroy finds the resources by name.

The record holds the stack's target, account, region and endpoint (so later commands talk
to the right place whatever the current environment says), the outputs users need (API id
and URL, bucket, table), and a step log. It lives in the user data dir
(``IMGCLI_DATA_DIR`` overrides it), one JSON file per stack, whose name is the stack's: a
name is checked (``check_stack_name``) before it becomes a path, so ``--stack ../../x``
can never read or write a file elsewhere.

A stack's resources can also vanish without ``destroy``: ``imgcli local reset`` discards
the local cloud and every local stack in it. ``mark_gone`` records that (``gone`` says
why), so the stack reads as not bootstrapped, with the reason, instead of as a complete
stack whose bucket no longer exists.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from imgcli.infra.errors import InvalidStackName, StateFileError
from imgcli.infra.names import check_stack_name

VERSION: Final = 1


def data_dir(environ: Mapping[str, str] = os.environ) -> Path:
    configured = environ.get("IMGCLI_DATA_DIR")
    if configured:
        return Path(configured)
    import platformdirs

    return Path(platformdirs.user_data_dir("imgcli"))


def stacks_dir(environ: Mapping[str, str] = os.environ) -> Path:
    return data_dir(environ) / "stacks"


def state_path(stack: str, environ: Mapping[str, str] = os.environ) -> Path:
    """Where ``stack``'s record lives; ``InvalidStackName`` for a name that is no stack's."""
    return stacks_dir(environ) / f"{check_stack_name(stack)}.json"


@dataclass
class StackState:
    """The record of one stack; ``save`` after every change."""

    path: Path
    stack: str
    target: str
    region: str | None = None
    account: str | None = None
    endpoint_url: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    # The options the stack was last bootstrapped with (``StackOptions`` fields).
    options: dict[str, Any] = field(default_factory=dict)
    steps_done: list[str] = field(default_factory=list)
    complete: bool = False
    # Kept after destroy, so the stack's target and region survive it: running destroy
    # again must still reach the same place, and a later bootstrap starts from there.
    destroyed: bool = False
    # Why the resources are gone though nobody destroyed the stack (a local cloud reset).
    gone: str | None = None

    @classmethod
    def load(cls, path: Path) -> StackState | None:
        """The record at ``path``, or ``None`` if the stack was never bootstrapped."""
        try:
            data = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StateFileError(f"cannot read the stack state file {path}: {exc}") from exc
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise StateFileError(f"{path} is not an imgcli state file of version {VERSION}")
        return cls(
            path=path,
            stack=str(data["stack"]),
            target=str(data["target"]),
            region=data.get("region"),
            account=data.get("account"),
            endpoint_url=data.get("endpoint_url"),
            outputs=dict(data.get("outputs") or {}),
            options=dict(data.get("options") or {}),
            steps_done=list(data.get("steps_done") or []),
            complete=bool(data.get("complete")),
            destroyed=bool(data.get("destroyed")),
            gone=str(data["gone"]) if data.get("gone") else None,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "stack": self.stack,
            "target": self.target,
            "region": self.region,
            "account": self.account,
            "endpoint_url": self.endpoint_url,
            "outputs": self.outputs,
            "options": self.options,
            "steps_done": self.steps_done,
            "complete": self.complete,
            "destroyed": self.destroyed,
            "gone": self.gone,
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def save(self) -> None:
        """Write the record atomically: readers see the old file or the new, never half."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.as_dict(), indent=2, sort_keys=True) + "\n"
        fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            Path(temporary).replace(self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def mark_gone(self, reason: str) -> None:
        """Record that the stack's resources were discarded by other means than destroy.

        The record then reads as a destroyed stack (its target and region kept, as destroy
        keeps them), with ``reason`` for the message; the next bootstrap clears it.
        """
        self.complete, self.destroyed, self.gone = False, True, reason
        self.outputs, self.steps_done = {}, []
        self.save()


def local_stack_names(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The stacks whose record puts them on the local cloud and not destroyed, by name."""
    names = []
    for path in sorted(stacks_dir(environ).glob("*.json")):
        try:
            record = StackState.load(state_path(path.stem, environ))
        except (StateFileError, InvalidStackName):
            continue  # not a record bootstrap wrote: nothing of a stack to mark
        if record is not None and record.target == "local" and not record.destroyed:
            names.append(path.stem)
    return names
