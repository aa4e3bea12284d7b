"""Opaque pagination cursors for ``GET /images``.

A cursor carries one thing, the *position*: the last key a page returned. The next page
starts right after it (``ExclusiveStartKey``), so pages have neither gaps nor duplicates
even when items are written between requests. The cursor is bound to the listing it came
from — table name, status and prefix — and to a format version by an HMAC-SHA256 tag over
all of them; the listing parameters themselves are not in the token, because the request
that presents the cursor supplies them again, and a cursor presented with other
parameters fails the tag check.

Wire format: ``base64url(version || position UTF-8 || tag)`` without ``=`` padding, where
``tag`` is the first 16 bytes of HMAC-SHA256 (128 bits, as RFC 2104 allows) over a domain
label, the version and the length-prefixed table, status, prefix and position. Length
prefixes make the message unambiguous (``("ab", "c")`` and ``("a", "bc")`` differ).
Decoding accepts only the canonical encoding — the one :func:`encode` produces — because
base64 lets several strings decode to the same bytes (unused low bits of the last
character), and a cursor that can be altered without being rejected is not tamper-evident.
With 1024-byte keys a cursor stays below 1.4 KB, fine in a query string.

Cursors are tamper-evident, not secret. The position is readable by anyone who base64-
decodes the token, and when ``CURSOR_SECRET`` is not set the signing key is derived from
the table name, so anyone who knows that name can mint a valid cursor. That is enough:
the tag's job is to turn garbage, truncation and cursors from another listing into one
clean :class:`InvalidCursor` (a 400) instead of a DynamoDB validation error or a silently
wrong page. A forged but valid cursor can only start the same listing — same table, status
and prefix, which the key condition enforces anyway — at another key, and the caller is
already authorised (IAM) to read that whole listing. Decoding also checks that the
position lies inside the prefix, which DynamoDB would otherwise reject as a start key
outside the query's bounds. Set ``CURSOR_SECRET`` to make cursors unforgeable as well;
rotating it invalidates outstanding cursors, which clients see as a 400 and restart.

Pure: standard library only, ``mypy --strict``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Final

VERSION: Final = 1

#: S3's limit on key length; a position or prefix longer than this cannot name an image.
MAX_KEY_BYTES: Final = 1024

SIGNING_KEY_VARIABLE: Final = "CURSOR_SECRET"

_TAG_BYTES: Final = 16
_DOMAIN: Final = b"imgcli-cursor"
_MAX_RAW_BYTES: Final = 1 + MAX_KEY_BYTES + _TAG_BYTES
#: Unpadded base64 length of the longest possible cursor: anything longer is rejected unread.
_MAX_TOKEN_CHARS: Final = (_MAX_RAW_BYTES * 4 + 2) // 3
_ALPHABET: Final = re.compile(r"[A-Za-z0-9_-]+")


class InvalidCursor(ValueError):
    """The cursor is malformed, altered, or belongs to another listing or version."""


def secret_for(table: str, environ: Mapping[str, str]) -> bytes:
    """The signing key: ``CURSOR_SECRET`` when set, else one derived from ``table``.

    The derived key makes cursors work with zero configuration and keeps cursors of one
    table useless for another; see the module docstring for why that suffices.
    """
    configured = environ.get(SIGNING_KEY_VARIABLE)
    if configured:
        return configured.encode("utf-8")
    return hashlib.sha256(_DOMAIN + b"\0table\0" + table.encode("utf-8")).digest()


def encode(position: str, *, table: str, status: str, prefix: str, secret: bytes) -> str:
    """A cursor that resumes the listing ``(table, status, prefix)`` after ``position``."""
    raw_position = position.encode("utf-8")
    if not raw_position or len(raw_position) > MAX_KEY_BYTES:
        raise ValueError(f"position must be 1 to {MAX_KEY_BYTES} bytes of UTF-8")
    if not position.startswith(prefix):
        raise ValueError(f"position {position!r} does not start with prefix {prefix!r}")
    tag = _tag(VERSION, raw_position, table=table, status=status, prefix=prefix, secret=secret)
    raw = bytes([VERSION]) + raw_position + tag
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode(cursor: str, *, table: str, status: str, prefix: str, secret: bytes) -> str:
    """The position stored in ``cursor``, if it was made for exactly this listing.

    Raises :class:`InvalidCursor` for anything else: garbage, truncation, any altered
    character, another table, status, prefix or format version.
    """
    raw = _raw_bytes(cursor)
    if not raw:
        raise InvalidCursor("cursor is empty")
    if raw[0] != VERSION:
        raise InvalidCursor(
            f"cursor has format version {raw[0]}, this API reads version {VERSION}: "
            "start the listing again without a cursor"
        )
    if len(raw) < 1 + 1 + _TAG_BYTES:
        raise InvalidCursor("cursor is truncated")
    raw_position, tag = raw[1:-_TAG_BYTES], raw[-_TAG_BYTES:]
    expected = _tag(VERSION, raw_position, table=table, status=status, prefix=prefix, secret=secret)
    if not hmac.compare_digest(tag, expected):
        raise InvalidCursor(
            "cursor was altered or belongs to another listing: "
            "pass it with the same status and prefix as the request that returned it"
        )
    # Only a forger holding the signing key gets this far with a bad position; the checks
    # keep even such a cursor from reaching DynamoDB as an invalid start key.
    try:
        position = raw_position.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidCursor("cursor position is not UTF-8") from None
    if len(raw_position) > MAX_KEY_BYTES or not position.startswith(prefix):
        raise InvalidCursor("cursor position lies outside the listing")
    return position


def _raw_bytes(cursor: str) -> bytes:
    if not isinstance(cursor, str) or not cursor:
        raise InvalidCursor("cursor is empty")
    if len(cursor) > _MAX_TOKEN_CHARS:
        raise InvalidCursor("cursor is too long")
    if not _ALPHABET.fullmatch(cursor):
        raise InvalidCursor("cursor contains characters outside unpadded URL-safe base64")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise InvalidCursor("cursor is not valid base64") from None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != cursor:
        raise InvalidCursor("cursor is not in canonical form (altered or truncated)")
    return raw


def _tag(
    version: int, raw_position: bytes, *, table: str, status: str, prefix: str, secret: bytes
) -> bytes:
    message = bytearray(_DOMAIN)
    message.append(version)
    for text in (table, status, prefix):
        # surrogatepass: a malformed request string must fail the tag check, not raise here.
        part = text.encode("utf-8", "surrogatepass")
        message += len(part).to_bytes(4, "big") + part
    message += len(raw_position).to_bytes(4, "big") + raw_position
    return hmac.new(secret, bytes(message), hashlib.sha256).digest()[:_TAG_BYTES]
