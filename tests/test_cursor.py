"""Pagination cursors: round trips, and every kind of wrong cursor is one clean error."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imgcli.lambdas import cursor
from imgcli.lambdas.cursor import InvalidCursor

SECRET = b"test-secret"
LISTING: dict[str, Any] = {"table": "images", "status": "active", "prefix": "", "secret": SECRET}
URL_SAFE = re.compile(r"[A-Za-z0-9_-]+")
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _fits(text: str) -> bool:
    return 0 < len(text.encode("utf-8")) <= cursor.MAX_KEY_BYTES


# Keys as S3 allows them: any valid Unicode (no lone surrogates), up to 1024 UTF-8 bytes.
unicode_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=300)
keys = unicode_text.filter(_fits)


@st.composite
def listings(draw: st.DrawFn) -> tuple[str, str, str, str]:
    """(table, status, prefix, position) with the position inside the prefix."""
    prefix = draw(unicode_text)
    position = prefix + draw(unicode_text)
    if not _fits(position):
        position = prefix[:100] + "x"
        prefix = prefix[:100]
    return draw(unicode_text), draw(st.sampled_from(["active", "invalid"])), prefix, position


def test_round_trip() -> None:
    token = cursor.encode("holiday/a b+c%.jpg", **LISTING)
    assert URL_SAFE.fullmatch(token)
    assert cursor.decode(token, **LISTING) == "holiday/a b+c%.jpg"


def test_longest_key_round_trips_and_stays_url_sized() -> None:
    key = "é" * (cursor.MAX_KEY_BYTES // 2)
    token = cursor.encode(key, **LISTING)
    assert len(token) < 1400
    assert cursor.decode(token, **LISTING) == key


@settings(max_examples=300)
@given(listings())
def test_round_trip_any_listing(listing: tuple[str, str, str, str]) -> None:
    table, status, prefix, position = listing
    bound: dict[str, Any] = {"table": table, "status": status, "prefix": prefix, "secret": SECRET}
    token = cursor.encode(position, **bound)
    assert URL_SAFE.fullmatch(token)
    assert cursor.decode(token, **bound) == position


@settings(max_examples=500)
@given(keys, st.data())
def test_any_single_character_change_is_rejected(key: str, data: st.DataObject) -> None:
    token = cursor.encode(key, **LISTING)
    index = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.sampled_from(ALPHABET + "=+/.~ é") | st.characters()).replace(
        token[index], ""
    )
    changed = token[:index] + replacement + token[index + 1 :]
    if changed == token:
        return
    with pytest.raises(InvalidCursor):
        cursor.decode(changed, **LISTING)


@settings(max_examples=200)
@given(keys, st.data())
def test_any_truncation_or_extension_is_rejected(key: str, data: st.DataObject) -> None:
    token = cursor.encode(key, **LISTING)
    cut = data.draw(st.integers(0, len(token) - 1))
    with pytest.raises(InvalidCursor):
        cursor.decode(token[:cut], **LISTING)
    with pytest.raises(InvalidCursor):
        cursor.decode(token[cut + 1 :], **LISTING)
    extra = data.draw(st.text(ALPHABET, min_size=1, max_size=4))
    with pytest.raises(InvalidCursor):
        cursor.decode(token + extra, **LISTING)


def test_every_single_bit_flip_is_rejected() -> None:
    token = cursor.encode("a/b.jpg", **LISTING)
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    for bit in range(len(raw) * 8):
        flipped = bytearray(raw)
        flipped[bit // 8] ^= 1 << (bit % 8)
        forged = base64.urlsafe_b64encode(bytes(flipped)).rstrip(b"=").decode()
        with pytest.raises(InvalidCursor):
            cursor.decode(forged, **LISTING)


@pytest.mark.parametrize(
    "other",
    [
        {"table": "other-images"},
        {"status": "invalid"},
        {"prefix": "a"},
        {"prefix": "a/"},
        {"secret": b"another-secret"},
    ],
)
def test_cursor_of_another_listing_is_rejected(other: dict[str, Any]) -> None:
    token = cursor.encode("a/b.jpg", **LISTING)
    with pytest.raises(InvalidCursor, match="another listing"):
        cursor.decode(token, **(LISTING | other))


@given(listings(), listings())
def test_cursor_is_bound_to_its_listing(
    mine: tuple[str, str, str, str], theirs: tuple[str, str, str, str]
) -> None:
    table, status, prefix, position = mine
    token = cursor.encode(position, table=table, status=status, prefix=prefix, secret=SECRET)
    other_table, other_status, other_prefix, _ = theirs
    if (other_table, other_status, other_prefix) == (table, status, prefix):
        return
    with pytest.raises(InvalidCursor):
        cursor.decode(
            token, table=other_table, status=other_status, prefix=other_prefix, secret=SECRET
        )


def test_field_boundaries_are_unambiguous() -> None:
    """Moving characters between table, status and prefix must change the tag."""
    token = cursor.encode("abc", table="t", status="active", prefix="ab", secret=SECRET)
    with pytest.raises(InvalidCursor):
        cursor.decode(token, table="ta", status="ctive", prefix="ab", secret=SECRET)
    with pytest.raises(InvalidCursor):
        cursor.decode(token, table="t", status="activea", prefix="b", secret=SECRET)


def test_other_version_is_rejected_with_a_clear_message() -> None:
    token = cursor.encode("a.jpg", **LISTING)
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[0] = cursor.VERSION + 1
    future = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(InvalidCursor, match="version"):
        cursor.decode(future, **LISTING)


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "A",
        "AA",
        "AAAA",
        "=",
        "AAAA====",
        "not a cursor",
        "!!!!",
        "abc/def+ghi",
        "é",
        "\x00\x01",
        "\ud800",
        "A" * 5000,
        "QUJD",  # "ABC": valid base64, wrong version byte
        base64.urlsafe_b64encode(b"\x01" + b"k" * 40).decode().rstrip("="),  # no valid tag
        base64.urlsafe_b64encode(b"\x01" + b"\x00" * 16).decode().rstrip("="),  # no position
    ],
)
def test_garbage_is_rejected(garbage: str) -> None:
    with pytest.raises(InvalidCursor):
        cursor.decode(garbage, **LISTING)


def test_non_string_is_rejected() -> None:
    nothing: Any = None
    with pytest.raises(InvalidCursor):
        cursor.decode(nothing, **LISTING)


def test_padded_form_is_rejected_so_that_each_position_has_one_cursor() -> None:
    token = cursor.encode("ab", **LISTING)
    assert len(token) % 4
    with pytest.raises(InvalidCursor):
        cursor.decode(token + "=" * (-len(token) % 4), **LISTING)


@pytest.mark.parametrize("position", ["", "x" * (cursor.MAX_KEY_BYTES + 1), "b/outside"])
def test_encode_refuses_positions_outside_the_listing(position: str) -> None:
    with pytest.raises(ValueError, match="position"):
        cursor.encode(position, **(LISTING | {"prefix": "a/" if position else ""}))


def test_secret_comes_from_the_environment_when_set() -> None:
    assert cursor.secret_for("images", {"CURSOR_SECRET": "s3cr3t"}) == b"s3cr3t"
    derived = cursor.secret_for("images", {})
    assert derived == cursor.secret_for("images", {"CURSOR_SECRET": ""})
    assert derived != cursor.secret_for("other-images", {})
    assert len(derived) == 32
