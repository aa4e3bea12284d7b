"""Which command-line strings may name keys: new ones strictly, existing ones by name."""

from __future__ import annotations

import pytest

from imgcli.errors import ExitCode, UsageError
from imgcli.keys import MAX_KEY_BYTES, checked_existing_key, checked_new_key, key_problem


def test_ordinary_keys_pass_both_checks() -> None:
    for key in ("", "a.jpg", "trips/2024/日本.jpg", "x" * MAX_KEY_BYTES):
        assert checked_new_key(key) == key
        assert checked_existing_key(key) == key


@pytest.mark.parametrize("key", ["a\x1b[31m.jpg", "new\nline.jpg", "tab\t.jpg", "rlo\u202e.jpg"])
def test_control_characters_refuse_a_new_key_but_name_an_existing_one(key: str) -> None:
    with pytest.raises(UsageError) as raised:
        checked_new_key(key, "--prefix")
    assert raised.value.exit_code == ExitCode.USAGE
    assert "--prefix" in raised.value.message
    assert "holds control characters" in raised.value.message
    assert not any(ord(ch) < 0x20 or ch == "\u202e" for ch in raised.value.message)
    assert raised.value.hint is not None and "--prefix" in raised.value.hint
    assert "file" not in raised.value.hint  # no file is involved in a prefix
    assert checked_existing_key(key) == key


@pytest.mark.parametrize("check", [checked_new_key, checked_existing_key])
def test_bytes_that_are_not_utf8_are_refused_shown_as_bytes(check: object) -> None:
    assert callable(check)
    with pytest.raises(UsageError, match=r"'photo\\xff\.jpg' is not valid UTF-8"):
        check("photo\udcff.jpg")


@pytest.mark.parametrize("check", [checked_new_key, checked_existing_key])
def test_an_over_long_key_is_refused_with_a_short_message(check: object) -> None:
    assert callable(check)
    key = "é" * MAX_KEY_BYTES  # 2,048 bytes of UTF-8 in 1,024 characters
    with pytest.raises(UsageError) as raised:
        check(key)
    assert "2048 bytes of UTF-8" in raised.value.message
    assert len(raised.value.message) < 200


def test_key_problem_says_none_for_a_good_key() -> None:
    assert key_problem("ok.jpg") is None
    assert key_problem("a\x00b", allow_control=True) is None
