"""Property tests: mutated images of every accepted format give a verdict and nothing else.

Hypothesis mutates a valid seed of each format and variant (truncation, flipped bytes,
spliced, duplicated and removed segments and PNG chunks, inflated sizes, frame counts and
extents, overwritten count fields), up to three mutations deep. Whatever comes out,
``describe_image`` returns ``ImageDetails`` or raises ``InvalidImage`` with a printable
reason, within a budget counted in work, not time: frames visited, pixels decoded and bytes
read, and it writes nothing to stderr.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imgcli.lambdas.image_metadata import (
    MAX_DECODED_PIXELS,
    MAX_FRAMES,
    DescribeWork,
    ImageDetails,
    InvalidImage,
    describe_image,
)
from imgcli.terminal_text import has_control_characters
from tests import hostile_images as hostile

SEEDS = hostile.seeds()
# Pillow reads in blocks of up to 64 KiB (a decoder's input), once per frame at most, and
# a few headers again when it rewinds: a read budget linear in frames and size.
READ_BLOCK = 65536

Mutation = Callable[[bytes], bytes]
BIG = st.sampled_from([0, 1, 2, 255, 256, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1])


def _mutations() -> st.SearchStrategy[Mutation]:
    fraction = st.floats(min_value=0.0, max_value=1.0)
    offset = st.integers(min_value=0, max_value=1 << 20)
    length = st.integers(min_value=1, max_value=512)
    return st.one_of(
        fraction.map(lambda keep: lambda data: hostile.truncated(data, keep)),
        st.builds(
            lambda positions, mask: lambda data: hostile.flipped(data, positions, mask),
            st.lists(offset, min_size=1, max_size=8),
            st.integers(min_value=1, max_value=255),
        ),
        st.builds(
            lambda start, size, to: lambda data: hostile.spliced(data, start, size, to),
            offset,
            length,
            offset,
        ),
        st.builds(
            lambda start, size: lambda data: hostile.removed(data, start, size), offset, length
        ),
        st.builds(
            lambda index: lambda data: _png_only(data, hostile.duplicated_png_chunk, index), offset
        ),
        st.builds(
            lambda index: lambda data: _png_only(data, hostile.removed_png_chunk, index), offset
        ),
        st.builds(
            lambda value, kind: lambda data: _png_only(data, hostile.inflated_png, value, kind),
            BIG,
            st.sampled_from([b"IHDR", b"acTL", b"fcTL"]),
        ),
        st.builds(
            lambda value: (
                lambda data: hostile.inflated_gif(data, value) if data.startswith(b"GIF") else data
            ),
            BIG,
        ),
        st.builds(
            lambda start, value, width, order: (
                lambda data: hostile.overwritten(data, start, value, width, order)
            ),
            offset,
            BIG,
            st.sampled_from([2, 4]),
            st.sampled_from(["big", "little"]),
        ),
    )


def _png_only(data: bytes, mutate: Callable[..., bytes], *arguments: object) -> bytes:
    if not data.startswith(b"\x89PNG"):
        return data
    return mutate(data, *arguments)


def assert_a_verdict_within_budget(data: bytes) -> ImageDetails | str:
    work = DescribeWork()
    try:
        outcome: ImageDetails | str = describe_image(io.BytesIO(data), len(data), work=work)
    except InvalidImage as invalid:
        outcome = invalid.reason
        assert outcome and outcome.isprintable() and not has_control_characters(outcome)
        assert len(outcome) <= 300
    assert work.frames <= MAX_FRAMES
    assert work.decoded_pixels <= MAX_DECODED_PIXELS
    assert work.bytes_read <= (work.frames + 4) * (len(data) + READ_BLOCK)
    return outcome


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_every_seed_is_a_valid_image(name: str) -> None:
    assert isinstance(assert_a_verdict_within_budget(SEEDS[name]), ImageDetails)


@settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    name=st.sampled_from(sorted(SEEDS)),
    mutations=st.lists(_mutations(), min_size=1, max_size=3),
)
def test_mutated_images_give_a_verdict_and_nothing_else(
    name: str, mutations: list[Mutation], capfd: pytest.CaptureFixture[str]
) -> None:
    data = SEEDS[name]
    for mutate in mutations:
        data = mutate(data) or b"\x00"
    outcome = assert_a_verdict_within_budget(data)
    if isinstance(outcome, ImageDetails):
        for text in (outcome.camera_make, outcome.camera_model, outcome.taken_at):
            assert text is None or text.isprintable()
    assert capfd.readouterr().err == ""


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=1, max_size=2048), head=st.sampled_from(sorted(SEEDS)))
def test_any_bytes_behind_a_valid_header_give_a_verdict(data: bytes, head: str) -> None:
    # The first bytes of a real image select a Pillow plugin; what follows is anything.
    assert_a_verdict_within_budget(SEEDS[head][:32] + data)
