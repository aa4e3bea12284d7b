"""Two of moto's per-request costs that the local cloud removes, and nothing else changed.

Found by profiling the local cloud while 100 images were indexed (issue 6): of the
server's CPU, about a fifth went to choosing which moto service answers a request, and
most of a listing's cost went to writing DynamoDB items out as JSON. Both are moto 5.2.5
internals; this is the only module that touches them, and :func:`check_moto_internals`
(run by ``install`` and by a test) fails loudly when an upgrade moves them.

**Dispatch.** moto's server picks a request's service in
``DomainDispatcherApplication.get_application``: it derives a host name from the request
(the SigV4 credential scope, ``X-Amz-Target``...), then ``get_backend_for_host`` maps that
host to a service by listing moto's package directory, calling ``os.path.isdir`` on each
entry and trying every backend's URL patterns, on every request, while holding the
dispatcher's one lock. That costs 0.4 ms (DynamoDB) to 1.1 ms (S3) of CPU per request, and
much more under load: each ``isdir`` releases the GIL, so the thread holding the lock wins
the GIL back some 250 times per request while every other request queues on the lock.
The answer for a host cannot change while the process runs (it depends only on moto's
installed files and patterns), so :class:`CachingDispatcher` remembers it, per host, in a
bounded cache (a client chooses the region part of the host).

**DynamoDB items.** moto serialises every response by walking the operation's output
shape, and a DynamoDB ``AttributeValue`` is a structure of ten members, each looked up
through several aliases. A 100-item Query page of 14 attributes spends about 80 % of its
time there (measured: 80 ms per page, 20 ms with the shortcut). moto has already turned
its items into the wire form (``{"S": "text"}``) before serialising, so an attribute value
holding one scalar (``S``, ``N``, ``BOOL`` or ``NULL``) is written as it is. Anything else
(binary, sets, lists, maps, or a value not in that plain form) takes moto's own path, so
the output is the same byte for byte; a test compares both on every kind of value.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any, Final

from moto.core.serialize import BaseJSONSerializer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

from imgcli.localcloud import MotoInternalsChanged

#: Distinct hosts remembered; far more than services x regions.
MAX_HOSTS: Final = 4096
#: The scalar members of DynamoDB's ``AttributeValue`` and the Python type of each value.
SCALAR_ATTRIBUTE_TYPES: Final[dict[str, type]] = {"S": str, "N": str, "BOOL": bool, "NULL": bool}

_STRUCTURE_METHOD: Final = "_serialize_type_structure"


class CachingDispatcher(DomainDispatcherApplication):
    """moto's dispatcher, mapping each host to its backend once (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._backend_for_host = functools.lru_cache(maxsize=MAX_HOSTS)(
            super().get_backend_for_host
        )

    def get_backend_for_host(self, host: str | None) -> Any:
        return self._backend_for_host(host)


def install() -> Callable[[], None]:
    """Write plain DynamoDB attribute values directly; return the function that undoes it.

    Process-wide (it patches moto's JSON serialiser), so at most one installation at a time.
    """
    check_moto_internals()
    with _lock:
        original = vars(BaseJSONSerializer)[_STRUCTURE_METHOD]
        if getattr(original, "_imgcli_shortcut", False):
            raise RuntimeError("the DynamoDB serialising shortcut is already installed")

        def serialize_structure(
            self: Any, serialized: Any, value: Any, shape: Any, key: str
        ) -> None:
            if key and shape.name == "AttributeValue" and type(value) is dict and len(value) == 1:
                ((tag, scalar),) = value.items()
                if type(scalar) is SCALAR_ATTRIBUTE_TYPES.get(tag):
                    self._default_serialize(serialized, {tag: scalar}, shape, key)
                    return
            original(self, serialized, value, shape, key)

        serialize_structure._imgcli_shortcut = True  # type: ignore[attr-defined]
        setattr(BaseJSONSerializer, _STRUCTURE_METHOD, serialize_structure)

    def uninstall() -> None:
        with _lock:
            if vars(BaseJSONSerializer)[_STRUCTURE_METHOD] is serialize_structure:
                setattr(BaseJSONSerializer, _STRUCTURE_METHOD, original)

    return uninstall


def check_moto_internals() -> None:
    """Fail loudly, naming what moved, if the moto internals used here are not as expected."""
    problems: list[str] = []
    lookup = getattr(DomainDispatcherApplication, "get_backend_for_host", None)
    if not callable(lookup) or tuple(inspect.signature(lookup).parameters) != ("self", "host"):
        problems.append("DomainDispatcherApplication.get_backend_for_host(self, host) is gone")
    elif "get_backend_for_host" not in inspect.getsource(
        DomainDispatcherApplication.get_application
    ):
        problems.append("DomainDispatcherApplication.get_application no longer uses it")
    structure = vars(BaseJSONSerializer).get(_STRUCTURE_METHOD)
    if not callable(structure) or tuple(inspect.signature(structure).parameters) != (
        "self",
        "serialized",
        "value",
        "shape",
        "key",
    ):
        problems.append(f"BaseJSONSerializer.{_STRUCTURE_METHOD} changed")
    if not callable(getattr(BaseJSONSerializer, "_default_serialize", None)):
        problems.append("BaseJSONSerializer._default_serialize is gone")
    if problems:
        raise MotoInternalsChanged(
            "imgcli's moto speed-ups need moto internals that moved: " + "; ".join(problems)
        )


_lock = threading.Lock()
