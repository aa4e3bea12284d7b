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
(``IMGCLI_DATA_DIR`` overrides it), one JSON file per stack.
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

from imgcli.infra.errors import StateFileError

VERSION: Final = 1


def data_dir(environ: Mapping[str, str] = os.environ) -> Path:
    configured = environ.get("IMGCLI_DATA_DIR")
    if configured:
        return Path(configured)
    import platformdirs

    return Path(platformdirs.user_data_dir("imgcli"))


def state_path(stack: str, environ: Mapping[str, str] = os.environ) -> Path:
    return data_dir(environ) / "stacks" / f"{stack}.json"


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
