"""The one error a local cloud snapshot raises, whichever part of it fails.

Saving and loading (``persistence``), the object bodies (``snapshot_bodies``) and the
pickling of moto's objects (``snapshot_pickling``) all raise it, and ``persistence``
imports the other two: so it lives in a module of its own, below all three.
"""


class SnapshotError(RuntimeError):
    """A snapshot cannot be written or read; the message says what to do about it."""
