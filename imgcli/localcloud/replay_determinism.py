"""Making moto draw the same ids and times when a journaled request is replayed.

The journal (``journal_layer``) replays each acknowledged request into moto after a
crash, and the state must come out *the same*: a stack records ids (an HTTP API's id, a
function's revision), clients hold S3 version ids and multipart upload ids, and the
index keeps each object's version. moto 5.2.5 draws every such id from one
``random.Random`` subclass, ``moto.moto_api._internal.mock_random``, plus ``os.urandom``
in a few modules (S3's multipart upload ids, STS session tokens, IAM's MFA seeds), and
reads the time through ``moto.core.utils.utcnow``.

**What one run draws.** ``recording()`` wraps one journaled request: on its thread only,
``mock_random`` draws from a ``Random`` seeded with a fresh 128-bit seed, those modules'
``os.urandom`` from a SHAKE-256 stream of the same seed, and every ``utcnow()`` reading is
noted. ``replaying(draws)`` gives the thread the same seed and hands back the noted
readings in order, so the replay, run in the journal's order (the order moto applied the
requests in), makes the same ids and the same times (an object's ``LastModified``).

**Why note the clock rather than freeze it.** A frozen clock would also be repeatable,
but code that waits on moto's clock (SQS long polling loops on ``unix_time()``) would
never see it move. Noting readings changes nothing while the server runs; a request
makes only a handful. A replay that asks more often than its original (only a changed
moto could) gets the last reading again.

**How it is hooked, and why there.** ``mock_random``'s ``getrandbits`` and ``random`` are
replaced *on the instance* (every other method of ``Random``, and moto's ``uuid4`` and
``get_random_hex``, goes through one of the two), so threads outside ``recording`` draw
from the shared generator exactly as before. ``utcnow`` is imported by name into some 85
moto modules, including ones imported lazily at a service's first request, so its
``__code__`` is swapped for a call to a reading function stored in ``moto.core.utils``
itself. ``os.urandom`` is replaced only inside the moto modules that call it (a module
proxy for their ``os`` name): the rest of the process, ``secrets`` included, keeps the
real one.

Not covered: the few creation dates moto takes from ``datetime.now()`` directly (an S3
bucket's ``CreationDate``, an HTTP API's ``CreatedDate``) come out as the replay's time;
nothing the stack or a client relies on reads them.

``check_moto_internals`` fails loudly, naming what moved, when an upgrade breaks any of
this, and ``install`` runs it.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib
import inspect
import os
import random
import threading
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

from imgcli.localcloud import MotoInternalsChanged

#: The moto modules that call ``os.urandom`` for ids, and the function in each that does.
URANDOM_CALLERS: Final = {
    "moto.s3.models": "FakeMultipart",
    "moto.sts.utils": "random_session_token",
    "moto.iam.models": "VirtualMfaDevice",
}
#: Where the swapped ``utcnow`` finds the reading function (a name in moto's module).
CLOCK_NAME: Final = "_imgcli_replay_clock"
SEED_BYTES: Final = 16

_real_urandom = os.urandom


@dataclass
class Draws:
    """What one journaled request drew: its seed, and the clock readings moto took.

    ``clock`` holds microseconds since the epoch, UTC, in the order they were read.
    """

    seed: int
    clock: list[int] = field(default_factory=list)


class _Thread(threading.local):
    random: random.Random | None = None
    stream: _UrandomStream | None = None
    clock: _Clock | None = None


_thread = _Thread()


class _UrandomStream:
    """``os.urandom`` for one seed: SHAKE-256 of the seed and a call counter."""

    def __init__(self, seed: int) -> None:
        self._seed = seed.to_bytes(SEED_BYTES + 1, "big")
        self._calls = 0

    def read(self, size: int) -> bytes:
        self._calls += 1
        data = self._seed + b"urandom" + self._calls.to_bytes(8, "big")
        return hashlib.shake_256(data).digest(size) if size else b""


class _Clock:
    """Notes each reading (while recording) or gives the noted ones back (replaying)."""

    def __init__(self, readings: list[int], *, replay: bool) -> None:
        self.readings = readings
        self._replay = replay
        self._next = 0

    def read(self) -> datetime.datetime:
        if not self._replay:
            now = _now()
            self.readings.append(_micros(now))
            return now
        if not self.readings:
            return _now()
        reading = self.readings[min(self._next, len(self.readings) - 1)]
        self._next += 1
        return _EPOCH + datetime.timedelta(microseconds=reading)


_EPOCH: Final = datetime.datetime(1970, 1, 1)


def _now() -> datetime.datetime:
    # What moto's own utcnow returns on Python 3.11: naive UTC.
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def _micros(moment: datetime.datetime) -> int:
    return (moment - _EPOCH) // datetime.timedelta(microseconds=1)


@contextmanager
def recording() -> Iterator[Draws]:
    """Run the body with this thread's draws seeded afresh and its clock readings noted."""
    draws = Draws(seed=int.from_bytes(_real_urandom(SEED_BYTES), "big"))
    with _drawing(draws, replay=False):
        yield draws


@contextmanager
def replaying(draws: Draws) -> Iterator[None]:
    """Run the body drawing what ``draws`` recorded: the same seed, the same readings."""
    with _drawing(Draws(draws.seed, list(draws.clock)), replay=True):
        yield


@contextmanager
def _drawing(draws: Draws, *, replay: bool) -> Iterator[None]:
    if _thread.random is not None:
        raise RuntimeError("journaled runs do not nest")
    _thread.random = random.Random(draws.seed)
    _thread.stream = _UrandomStream(draws.seed)
    _thread.clock = _Clock(draws.clock, replay=replay)
    try:
        yield
    finally:
        _thread.random = _thread.stream = _thread.clock = None


# --- the hooks ----------------------------------------------------------------------------


def _shared() -> random.Random:
    from moto.moto_api._internal import mock_random

    generator: random.Random = mock_random
    return generator


def _getrandbits(k: int) -> int:
    own = _thread.random
    return own.getrandbits(k) if own is not None else random.Random.getrandbits(_shared(), k)


def _random() -> float:
    own = _thread.random
    return own.random() if own is not None else random.Random.random(_shared())


def _urandom(size: int) -> bytes:
    stream = _thread.stream
    return stream.read(size) if stream is not None else _real_urandom(size)


def _clock() -> datetime.datetime:
    clock = _thread.clock
    return clock.read() if clock is not None else _now()


def _utcnow_template() -> datetime.datetime:
    # Only this code object is used: it runs with moto.core.utils' globals, where
    # install() puts the reading function under CLOCK_NAME.
    return _imgcli_replay_clock()  # type: ignore[name-defined,no-any-return]  # noqa: F821


class _OsWithSeededUrandom(types.ModuleType):
    """A moto module's ``os``: the real module, but ``urandom`` follows ``recording``."""

    def __init__(self) -> None:
        super().__init__("os")
        self.urandom = _urandom

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


_install_lock = threading.Lock()
_installed = False


def install() -> Callable[[], None]:
    """Hook moto's randomness and clock (see the module docstring); return the undo.

    Process-wide and idempotent while installed: a second call returns a no-op undo.
    """
    global _installed  # the hooks are process-wide by nature
    check_moto_internals()
    with _install_lock:
        if _installed:
            return lambda: None
        undo = _apply()
        _installed = True

    def uninstall() -> None:
        global _installed
        with _install_lock:
            if _installed:
                undo()
                _installed = False

    return uninstall


def _apply() -> Callable[[], None]:
    from moto.core import utils as moto_utils

    shared = _shared()
    shared.getrandbits = _getrandbits  # type: ignore[method-assign]
    shared.random = _random  # type: ignore[method-assign]
    original_code = moto_utils.utcnow.__code__
    setattr(moto_utils, CLOCK_NAME, _clock)
    moto_utils.utcnow.__code__ = _utcnow_template.__code__
    modules = [importlib.import_module(name) for name in URANDOM_CALLERS]
    originals = [module.os for module in modules]
    for module in modules:
        module.os = _OsWithSeededUrandom()  # type: ignore[attr-defined]

    def undo() -> None:
        del shared.getrandbits, shared.random
        moto_utils.utcnow.__code__ = original_code
        delattr(moto_utils, CLOCK_NAME)
        for module, original in zip(modules, originals, strict=True):
            module.os = original  # type: ignore[attr-defined]

    return undo


# --- the internals check ------------------------------------------------------------------


def check_moto_internals() -> None:
    """Fail loudly, naming what moved, if the moto internals used here are not as expected."""
    problems = list(_moved_internals())
    if problems:
        raise MotoInternalsChanged(
            "imgcli's journal replay needs moto internals that moved: " + "; ".join(problems)
        )


def _moved_internals() -> Iterator[str]:
    from moto.core import utils as moto_utils
    from moto.moto_api import _internal as moto_api_internal

    shared = getattr(moto_api_internal, "mock_random", None)
    if not isinstance(shared, random.Random):
        yield "moto.moto_api._internal.mock_random is no longer a random.Random"
    else:
        for method in ("uuid4", "get_random_hex", "get_random_string"):
            source = _source(getattr(type(shared), method, None))
            if not any(call in source for call in ("self.getrandbits", "self.choice")):
                yield f"MotoRandom.{method} no longer draws through getrandbits or choice"
    for name in ("s3.models", "awslambda.models", "apigatewayv2.models", "sqs.utils"):
        module = importlib.import_module(f"moto.{name}")
        if getattr(module, "random", None) is not shared:
            yield f"moto.{name} no longer draws from mock_random"
    utcnow = getattr(moto_utils, "utcnow", None)
    if not isinstance(utcnow, types.FunctionType) or utcnow.__code__.co_freevars:
        yield "moto.core.utils.utcnow is no longer a plain function"
    elif "utcnow()" not in _source(getattr(moto_utils, "unix_time", None)):
        yield "moto.core.utils.unix_time no longer reads utcnow"
    for module_name, caller in URANDOM_CALLERS.items():
        module = importlib.import_module(module_name)
        if "os.urandom(" not in _source(getattr(module, caller, None)):
            yield f"{module_name}.{caller} no longer calls os.urandom"
        elif getattr(module, "os", None) is not os and not isinstance(
            getattr(module, "os", None), _OsWithSeededUrandom
        ):
            yield f"{module_name} no longer imports os as os"


def _source(obj: object) -> str:
    try:
        return inspect.getsource(obj)  # type: ignore[arg-type]
    except (TypeError, OSError):
        return ""
