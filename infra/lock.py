"""One bootstrap, destroy or local reset of a stack at a time: a lock beside its state file.

Two bootstraps of one stack at once both planned from the same reading of what exists,
both carried out every step, and left duplicate permission statements behind. So each
command that changes a stack holds ``stack_lock`` from before it reads the stack's record
until it has saved it; a second one waits (told so through ``on_wait``, which the CLI
shows as "waiting for another imgcli bootstrap of stack 'default' (pid N)...") or, with
``wait=False``, refuses with ``StackBusy``. Dry runs change nothing and take no lock.

The lock is an OS file lock (``fcntl.flock``) on ``<stack>.lock`` next to
``<stack>.json``, not a "lock file exists" convention: the kernel drops it when its
process ends, however it ends (``kill -9``, a crash, a reboot), so a stale lock never
blocks and there is nothing to clean up. The file itself is never removed (removing a
flock'd file lets a third process lock a new file while a second still holds the old
one). While held, it names its holder (pid, command, since when) for the message of
whoever waits; that record is only information, never what decides who holds the lock.
The descriptor is not inherited by child processes (PEP 446), so a local cloud started
while the lock is held does not keep it alive.

A stack lock cannot keep ``imgcli local reset`` away from a *first* bootstrap of a local
stack: that stack has no record yet, so reset does not know to take its lock, and could
wipe the local cloud between the bootstrap's steps and its saving a "complete" record.
``local_cloud_lock`` closes that gap: every local bootstrap and destroy holds it shared
(they still run side by side), and reset holds it exclusively, before it lists the stacks.
It is taken before a stack's lock, always, so the two cannot deadlock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar, Final

from imgcli.infra.errors import InfraError, Problem
from imgcli.infra.state import stacks_dir, state_path

#: What a holder's record may be at most; anything longer is not ours to trust.
_RECORD_BYTES: Final = 4096

#: The local cloud's lock, among the stacks' files: a leading dot is no stack name's.
LOCAL_CLOUD_LOCK: Final = ".local-cloud.lock"


@dataclass(frozen=True)
class LockHolder:
    """Who holds a stack's lock, as far as its record says (``None``: it did not say)."""

    stack: str | None  # None: the local cloud's lock
    command: str | None
    pid: int | None

    def describe(self) -> str:
        """``another imgcli bootstrap of stack 'default' (pid 123)``."""
        what = f"imgcli {self.command}" if self.command else "imgcli command"
        pid = f" (pid {self.pid})" if self.pid is not None else ""
        if self.stack is None:
            return f"another {what} of the local cloud{pid}"
        return f"another {what} of stack '{self.stack}'{pid}"


class StackBusy(InfraError):
    """Another command is changing the stack, and this one was told not to wait."""

    problem: ClassVar[Problem] = Problem.USAGE

    def __init__(self, holder: LockHolder) -> None:
        super().__init__(
            f"{holder.describe()} is running",
            hint="wait for it to finish, or run without --no-wait to wait for it",
        )
        self.holder = holder


WaitListener = Callable[[LockHolder], None]


def lock_path(stack: str, environ: Mapping[str, str] = os.environ) -> Path:
    """``<data dir>/stacks/<stack>.lock``, beside the stack's state file."""
    return state_path(stack, environ).with_suffix(".lock")


@contextlib.contextmanager
def stack_lock(
    stack: str,
    command: str,
    *,
    wait: bool = True,
    on_wait: WaitListener | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Iterator[None]:
    """Hold ``stack``'s lock for the block, as ``command`` (``"bootstrap"``).

    If another process holds it: with ``wait``, call ``on_wait`` with its holder once and
    block until it is free (Ctrl-C still interrupts); without, raise ``StackBusy``. Taking
    the same stack's lock twice in one process blocks: do not nest.
    """
    path = lock_path(stack, environ)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if not _try_lock(descriptor):
            holder = _read_holder(descriptor, stack)
            if not wait:
                raise StackBusy(holder)
            if on_wait is not None:
                on_wait(holder)
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        _write_holder(descriptor, command)
        try:
            yield
        finally:
            os.ftruncate(descriptor, 0)  # the record names a holder only while one holds it
    finally:
        os.close(descriptor)  # releases the lock


@contextlib.contextmanager
def local_cloud_lock(
    command: str,
    *,
    exclusive: bool,
    wait: bool = True,
    on_wait: WaitListener | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Iterator[None]:
    """Hold the local cloud's lock for the block: shared for a local stack's bootstrap or
    destroy, ``exclusive`` for ``local reset``; waiting and ``wait`` as in ``stack_lock``."""
    path = stacks_dir(environ) / LOCAL_CLOUD_LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    try:
        try:
            fcntl.flock(descriptor, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            # Only the exclusive holder writes a record; shared holders are many.
            holder = _read_holder(descriptor, None)
            if not wait:
                raise StackBusy(holder) from None
            if on_wait is not None:
                on_wait(holder)
            fcntl.flock(descriptor, mode)
        if exclusive:
            _write_holder(descriptor, command)
        try:
            yield
        finally:
            if exclusive:
                os.ftruncate(descriptor, 0)
    finally:
        os.close(descriptor)  # releases the lock


@contextlib.contextmanager
def stack_locks(
    stacks: Iterable[str],
    command: str,
    *,
    on_wait: WaitListener | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Iterator[None]:
    """Hold the locks of several stacks, taken in name order (so two such commands cannot
    each hold one the other waits for)."""
    with contextlib.ExitStack() as held:
        for stack in sorted(set(stacks)):
            held.enter_context(stack_lock(stack, command, on_wait=on_wait, environ=environ))
        yield


def _try_lock(descriptor: int) -> bool:
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _write_holder(descriptor: int, command: str) -> None:
    record = {
        "pid": os.getpid(),
        "command": command,
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    data = json.dumps(record).encode("utf-8")
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, data, 0)


def _read_holder(descriptor: int, stack: str | None) -> LockHolder:
    """What the holder wrote; unknown fields when it has not written yet (or wrote junk)."""
    try:
        record = json.loads(os.pread(descriptor, _RECORD_BYTES, 0))
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict):
        return LockHolder(stack, None, None)
    pid, command = record.get("pid"), record.get("command")
    return LockHolder(
        stack,
        command[:40] if isinstance(command, str) and command.isprintable() else None,
        pid if type(pid) is int and pid > 0 else None,
    )
