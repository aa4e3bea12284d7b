"""Text as a person's terminal may safely show it: control characters made visible.

Object keys, file names, EXIF fields and error messages can hold any character, and an ESC
that reaches a terminal raw is an instruction to it (colours, cursor moves, a fake prompt,
a window title), not text. Every human-facing output (tables, plain lines, messages) goes
through ``visible``; JSON and CSV escape by their own rules and get the value unchanged.

What is escaped, as Python's own string escapes write it so a reader recognises them:
C0 and C1 control characters and DEL (``\\x1b``, ``\\n``, ``\\t``), the Unicode
bidirectional overrides and isolates that reorder what is shown ("Trojan Source"), other
invisible format characters, and the lone surrogates Python uses for bytes that were not
UTF-8 (shown as the original byte, ``\\xff``). A backslash is left alone: escaping it would
double every backslash a key really holds; JSON output is the unambiguous form.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

_NAMED: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

# C0, DEL, C1; the bidi embeddings, overrides and isolates and the marks; lone surrogates
# (U+DC80..U+DCFF is where surrogateescape puts undecodable bytes); other format characters.
_UNSAFE: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff"
    "\ud800-\udfff\ufff9-\ufffb]"
)


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"  # the byte surrogateescape stood in for
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def visible(text: str) -> str:
    """``text`` with every character that could act on a terminal written as an escape."""
    if text.isprintable():  # the common case, and fast: nothing to escape
        return text
    escaped = _UNSAFE.sub(_escaped, text)
    # Whatever else is not printable and not a plain space (other Cf/Cs/Co/Cn characters).
    return "".join(
        c if c.isprintable() or unicodedata.category(c) == "Zs" else _hex(c) for c in escaped
    )


def _hex(char: str) -> str:
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def has_control_characters(text: str) -> bool:
    """Whether ``text`` holds a character ``visible`` would escape (a tab or newline too)."""
    return not text.isprintable() and visible(text) != text
