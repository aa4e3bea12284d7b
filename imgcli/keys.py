"""Which strings may name an S3 object key on imgcli's command line, and why not.

S3 takes any UTF-8 up to 1,024 bytes as a key, control characters included, but a key
holding an ESC or a newline is a trap for every terminal and script that shows it later.
So imgcli draws two lines:

- a **new** key (an upload's key, a ``--prefix`` that names keys to come or to match) must
  be valid UTF-8, at most 1,024 bytes, and free of control characters;
- an **existing** key named as a positional argument (``show KEY``, ``delete KEY``) may hold
  control characters, since the object may already have one and must stay reachable, but
  must still be valid UTF-8 and at most 1,024 bytes, or no object can have it.

Command-line bytes that are not UTF-8 reach Python as lone surrogates (PEP 383); they can
never be sent as a key, so they are refused here rather than failing to encode later.
Each check raises ``UsageError`` (exit 2) naming the value, shown escaped.
"""

from __future__ import annotations

from typing import Final

from imgcli.errors import UsageError
from imgcli.terminal_text import has_control_characters, visible

#: S3's limit on a key: 1,024 bytes of UTF-8.
MAX_KEY_BYTES: Final = 1024


def key_problem(key: str, *, allow_control: bool = False) -> str | None:
    """Why ``key`` cannot be used as a key (or key prefix), or None when it can."""
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    if size > MAX_KEY_BYTES:
        return f"is {size} bytes of UTF-8 (S3's limit on a key is {MAX_KEY_BYTES})"
    if not allow_control and has_control_characters(key):
        return "holds control characters"
    return None


def checked_new_key(key: str, what: str = "the key") -> str:
    """``key`` if it may name a new object (or a prefix), else ``UsageError``."""
    problem = key_problem(key)
    if problem is not None:
        raise UsageError(f"{what} {_quoted(key)} {problem}", hint=_hint(problem, what))
    return key


def checked_existing_key(key: str, what: str = "the key") -> str:
    """``key`` if an object could have it (control characters allowed), else ``UsageError``."""
    problem = key_problem(key, allow_control=True)
    if problem is not None:
        raise UsageError(f"{what} {_quoted(key)} {problem}", hint=_hint(problem, what))
    return key


def _quoted(key: str) -> str:
    shown = visible(key)
    if len(shown) > 80:
        shown = shown[:60] + "..." + shown[-17:]
    return f"'{shown}'"


def _hint(problem: str, what: str) -> str | None:
    if problem.startswith("holds control"):
        if what.startswith("--"):
            return f"give {what} without control characters (tabs and newlines included)"
        return "keys with control characters are hard to show and type; rename the file"
    if problem.startswith("is not valid UTF-8"):
        return "S3 keys are UTF-8; check the terminal's or file system's encoding"
    return None
