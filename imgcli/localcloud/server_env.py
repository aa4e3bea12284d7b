"""The local cloud server's environment: only what it needs to run, none of the owner's.

Function code runs in workers whose parent is the server, and any process of the owner's
user can read ``/proc/<server pid>/environ``: whatever the server was started with (a
token, a password, the owner's ``AWS_*`` credentials) would be theirs. So ``process.start``
gives the server an allow-listed environment (``server_environment``) and the server
clears anything else from ``os.environ`` when it starts (``scrub``), in case it was
started another way. What ``/proc`` shows is fixed at ``exec``: only the first measure
keeps it clean; the second keeps the server's children (and its own code) from seeing
more.

Allowed: what the interpreter needs to find imgcli and behave as the owner set it up
(``PATH``, the venv and ``PYTHON*`` interpreter settings, the dynamic linker's path), the
locale and time zone (``LANG``, ``LANGUAGE``, ``LC_*``, ``TZ``), where temporary files go
(``TMPDIR``), and imgcli's own ``IMGCLI_*`` settings. Never ``AWS_*`` (the server is its
own AWS and has the owner's key in the data dir), never ``HOME`` (workers get their own).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from typing import Final

ALLOWED_NAMES: Final = frozenset(
    {
        "PATH",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        # Finding the interpreter's libraries and imgcli itself.
        "VIRTUAL_ENV",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONPLATLIBDIR",
        "PYTHONNOUSERSITE",
        "PYTHONUSERBASE",
        "PYTHONSAFEPATH",
        "LD_LIBRARY_PATH",
        "DYLD_LIBRARY_PATH",
        # How the owner set the interpreter up to behave.
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONPYCACHEPREFIX",
        "PYTHONUTF8",
        "PYTHONIOENCODING",
        "PYTHONWARNINGS",
        "PYTHONHASHSEED",
        "PYTHONDEVMODE",
        "PYTHONFAULTHANDLER",
    }
)
ALLOWED_PREFIXES: Final = ("LC_", "IMGCLI_")


def allowed(name: str) -> bool:
    return name in ALLOWED_NAMES or name.startswith(ALLOWED_PREFIXES)


def server_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment to start the server with: the allowed part of ``environ``."""
    return {name: value for name, value in environ.items() if allowed(name)}


def scrub(environ: MutableMapping[str, str] = os.environ) -> list[str]:
    """Remove every variable not allowed from ``environ``; the names removed, sorted."""
    removed = sorted(name for name in environ if not allowed(name))
    for name in removed:
        del environ[name]
    return removed
