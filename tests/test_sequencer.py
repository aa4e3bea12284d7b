"""Sequencer ordering: upper-cased, right-padded, compared as strings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imgcli.lambdas import sequencer

hex_strings = st.text(alphabet="0123456789abcdefABCDEF", min_size=1, max_size=sequencer.WIDTH)


def reference_order(a: str, b: str) -> int:
    width = max(len(a), len(b))
    left, right = a.upper().ljust(width, "0"), b.upper().ljust(width, "0")
    return (left > right) - (left < right)


@given(hex_strings, hex_strings)
def test_normalised_comparison_matches_the_documented_rule(a: str, b: str) -> None:
    na, nb = sequencer.normalise(a), sequencer.normalise(b)
    assert ((na > nb) - (na < nb)) == reference_order(a, b)
    assert sequencer.is_later(a, b) == (reference_order(a, b) > 0)


@given(hex_strings)
def test_normalise_is_fixed_width_and_idempotent(value: str) -> None:
    once = sequencer.normalise(value)
    assert len(once) == sequencer.WIDTH
    assert sequencer.normalise(once) == once


@given(st.integers(0, 2**64), st.integers(0, 2**64))
def test_same_width_hex_counters_order_numerically(a: int, b: int) -> None:
    assert sequencer.is_later(f"{a:018X}", f"{b:018X}") == (a > b)


def test_real_sequencers_of_different_lengths() -> None:
    # From AWS's docs: a later event may carry a shorter sequencer.
    assert sequencer.is_later("0055AED6DCD90281E6", "0055AED6DCD90281E5")
    assert not sequencer.is_later("0055aed6dcd90281e5", "0055AED6DCD90281E5")
    assert sequencer.is_later("0055AED6DCD9028200", "0055AED6DCD90281E5FF")
    assert sequencer.is_later("ABC", None)


@pytest.mark.parametrize("bad", ["", "xyz", "12 34", "0x12", "A" * (sequencer.WIDTH + 1)])
def test_invalid_sequencers_are_rejected(bad: str) -> None:
    with pytest.raises(sequencer.InvalidSequencer):
        sequencer.normalise(bad)
