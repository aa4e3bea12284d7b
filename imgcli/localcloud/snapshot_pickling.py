"""How moto's objects pickle in a snapshot: the fixes for what plain pickle gets wrong.

``persistence`` pickles moto's backends as they are. **What plain pickle gets wrong on
moto 5.2.5** is fixed by a private dispatch table (so the fixes apply to this snapshot only,
never to pickling elsewhere in the process). ``moto_fixes`` is its entries for moto's
objects; ``persistence``'s pickler adds ``snapshot_bodies``' for a ``FakeKey``:

* S3 versioned keys live in ``moto.s3.utils._VersionedKeyStore``, a ``dict`` of version
  lists whose ``items()`` yields only the latest version, so plain pickle *silently* keeps
  only the current version of every key (and loses delete markers' history). It is
  pickled as every (key, version) pair in order; loading replays them through the store's
  own ``__setitem__``, which appends, and so rebuilds each list.
* Lambda's storage keeps a ``weakref.WeakValueDictionary`` (unpicklable); it is pickled as
  its current items. The functions it points at are in the same snapshot, held by the
  storage's own strong references, so they stay alive after loading.
* Lambda's storage also keeps a ``defaultdict(lambda: {})``: a lambda cannot be pickled.
  A factory that is a lambda or a local function is replaced by the type of the empty
  value it returns (``dict`` here); any other such factory makes its service unpicklable.
* SQS queues hold a ``threading.Condition``, and S3 keys and others hold locks. No lock is
  meaningful in another process: they are recreated, released, on load (a condition keeps
  sharing its lock with whoever shared it, because pickle memoizes the lock).
* A reference to a ``BackendDict`` itself (S3's backends look up ``s3_backends``) is
  pickled as the module attribute it lives in (``location``), so loading points back at
  the live one rather than a copy; the function that looks it up is ``persistence``'s,
  because the pickle names it.
  ``S3BackendDict`` also keeps state on itself (``bucket_accounts``, the global bucket
  namespace); attributes a plain ``BackendDict`` lacks (``extra_attributes``) are saved too.

``moved_pickling_internals`` names what moved of the internals these fixes rely on, for
``persistence.check_moto_internals``.
"""

from __future__ import annotations

import functools
import sys
import threading
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from moto.core.base_backend import AccountSpecificBackend, BackendDict, BaseBackend
from moto.s3.utils import _VersionedKeyStore

from imgcli.localcloud.snapshot_errors import SnapshotError

#: What a dispatch-table entry returns: the arguments of pickle's ``save_reduce``.
Reduction = tuple[Any, ...]


def moto_fixes(
    live_backend_dict: Callable[[str, str], BackendDict[Any]],
) -> Mapping[type, Callable[[Any], Reduction]]:
    """The dispatch-table entries for moto's objects; a ``BackendDict`` pickles as a call of
    ``live_backend_dict`` with its ``location``."""
    fixes: dict[type, Callable[[Any], Reduction]] = {
        _VersionedKeyStore: _reduce_versioned_key_store,
        weakref.WeakValueDictionary: _reduce_weak_value_dictionary,
        defaultdict: _reduce_defaultdict,
        type(threading.Lock()): _reduce_lock,
        type(threading.RLock()): _reduce_rlock,
        threading.Condition: _reduce_condition,
    }
    # The dispatch table matches exact types; moto subclasses BackendDict (S3).
    reduce_backend_dict = functools.partial(_reduce_backend_dict, live_backend_dict)
    fixes.update(dict.fromkeys(subclasses(BackendDict), reduce_backend_dict))
    fixes.update(dict.fromkeys(subclasses(AccountSpecificBackend), _refuse_account_backend))
    return fixes


def subclasses(cls: type) -> Iterator[type]:
    """``cls`` and all its subclasses: a dispatch table matches exact types only."""
    yield cls
    subclass: type
    for subclass in cls.__subclasses__():
        yield from subclasses(subclass)


def _reduce_versioned_key_store(store: _VersionedKeyStore) -> Reduction:
    versions = ((key, version) for key, listed in dict.items(store) for version in listed)
    return (type(store), (), vars(store) or None, None, versions)


def _reduce_weak_value_dictionary(mapping: weakref.WeakValueDictionary[Any, Any]) -> Reduction:
    return (type(mapping), (), None, None, iter(list(mapping.items())))


def _reduce_defaultdict(mapping: defaultdict[Any, Any]) -> Reduction:
    factory = _picklable_factory(mapping.default_factory)
    return (type(mapping), (factory,), None, None, iter(mapping.items()))


def _picklable_factory(factory: Callable[[], Any] | None) -> Callable[[], Any] | None:
    qualname = getattr(factory, "__qualname__", "")
    if factory is None or ("<lambda>" not in qualname and "<locals>" not in qualname):
        return factory
    empty = factory()
    replacement = type(empty)
    if replacement.__module__ != "builtins" or empty != replacement():
        raise SnapshotError(
            f"cannot pickle a defaultdict whose factory {factory.__module__}.{qualname} "
            "makes a non-empty value"
        )
    return replacement


def _reduce_lock(_lock: object) -> Reduction:
    return (threading.Lock, ())


def _reduce_rlock(_lock: object) -> Reduction:
    return (threading.RLock, ())


def _reduce_condition(condition: threading.Condition) -> Reduction:
    return (threading.Condition, (condition._lock,))  # type: ignore[attr-defined]


def _reduce_backend_dict(
    live_backend_dict: Callable[[str, str], BackendDict[Any]], backend_dict: BackendDict[Any]
) -> Reduction:
    return (live_backend_dict, location(backend_dict))


def _refuse_account_backend(account: AccountSpecificBackend[Any]) -> Reduction:
    raise SnapshotError(
        f"a backend refers to moto's {account.service_name!r} account container; "
        "imgcli's snapshots do not know how to restore that reference"
    )


def location(backend_dict: BackendDict[Any]) -> tuple[str, str]:
    """The (module, attribute) a BackendDict lives in, to find the live one after a load."""
    home = backend_dict.backend.__module__
    candidates = [home, *(name for name in list(sys.modules) if name.startswith("moto."))]
    for module_name in candidates:
        module = sys.modules.get(module_name)
        for attribute, value in list(vars(module).items()) if module else ():
            if value is backend_dict:
                return module_name, attribute
    raise SnapshotError(
        f"cannot find where moto keeps the {backend_dict.service_name!r} backends; "
        "imgcli's snapshots need a moto internal that moved"
    )


def _plain_attributes() -> frozenset[str]:
    # Constructing a BackendDict registers nothing (only indexing it does).
    return frozenset(vars(BackendDict(BaseBackend, "imgcli-probe")))


_PLAIN_ATTRIBUTES: Final = _plain_attributes()


def extra_attributes(backend_dict: BackendDict[Any]) -> dict[str, Any]:
    """What ``backend_dict`` keeps on itself that a plain ``BackendDict`` does not."""
    return {
        name: value for name, value in vars(backend_dict).items() if name not in _PLAIN_ATTRIBUTES
    }


def moved_pickling_internals() -> Iterator[str]:
    """What moved of the internals these fixes rely on; nothing when all is in place."""
    store = _VersionedKeyStore()
    store["key"] = "first"
    store["key"] = "second"
    if not isinstance(store, dict) or dict.get(store, "key") != ["first", "second"]:
        yield "_VersionedKeyStore no longer appends versions to a per-key list"
    if not hasattr(threading.Condition(), "_lock"):
        yield "threading.Condition no longer keeps its lock in _lock"
