"""The errors a local cloud snapshot raises, whichever part of it fails.

Saving and loading (``persistence``), the object bodies (``snapshot_bodies``) and the
pickling of moto's objects (``snapshot_pickling``) all raise them, and ``persistence``
imports the other two: so they live in a module of their own, below all three.
"""

from __future__ import annotations

from pathlib import Path


class SnapshotError(RuntimeError):
    """A snapshot cannot be written or read; the message says what to do about it."""


class SnapshotRejected(SnapshotError):
    """A snapshot failed its authentication and was moved aside, never loaded.

    ``path`` is where it was, ``reason`` why it was refused, ``set_aside_as`` where it is
    now (``None`` while it has not been moved yet).
    """

    def __init__(self, path: Path, reason: str, set_aside_as: Path | None = None) -> None:
        self.path = path
        self.reason = reason
        self.set_aside_as = set_aside_as
        where = f"; it was moved to {set_aside_as}" if set_aside_as else ""
        super().__init__(
            f"the local cloud's snapshot {path} was not loaded: {reason}{where}. "
            "The local cloud starts without it"
        )
