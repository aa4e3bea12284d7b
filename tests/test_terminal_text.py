"""``visible``: what a terminal may be handed raw, and what it gets as an escape."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imgcli.terminal_text import has_control_characters, visible


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("holiday/sunset at sea.jpg", "holiday/sunset at sea.jpg"),
        ("日本語/写真.jpg", "日本語/写真.jpg"),
        ("x\x1b[2J.jpg", "x\\x1b[2J.jpg"),
        ("line\nbreak", "line\\nbreak"),
        ("tab\there", "tab\\there"),
        ("cr\rhere", "cr\\rhere"),
        ("bell\x07", "bell\\x07"),
        ("del\x7f", "del\\x7f"),
        ("c1\x9b31m", "c1\\x9b31m"),  # CSI as a single C1 character
        ("abc\u202egpj.exe", "abc\\u202egpj.exe"),  # right-to-left override
        ("iso\u2066late", "iso\\u2066late"),
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("bytes\udcff\udcfe.jpg", "bytes\\xff\\xfe.jpg"),  # not UTF-8 on the command line
        ("tag\U000e0041", "tag\\U000e0041"),
    ],
)
def test_visible_escapes_what_acts_on_a_terminal(raw: str, shown: str) -> None:
    assert visible(raw) == shown
    assert has_control_characters(raw) == (raw != shown)


def test_spaces_and_no_break_spaces_are_text() -> None:
    assert visible("a b\u00a0c") == "a b\u00a0c"
    assert not has_control_characters("a b\u00a0c")


@given(st.text())
def test_nothing_a_terminal_interprets_survives(text: str) -> None:
    shown = visible(text)
    assert all(ch.isprintable() or unicodedata.category(ch) == "Zs" for ch in shown)
    assert visible(shown) == shown  # an escape is itself plain text
