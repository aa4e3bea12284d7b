"""RangedReader behaves like a file and fetches little."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imgcli.lambdas.ranged_reader import FetchFailed, RangedReader


class RecordingStore:
    """The bytes of one object, answering ranged reads and remembering each one."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.ranges: list[tuple[int, int]] = []

    def fetch(self, start: int, end: int) -> bytes:
        assert 0 <= start <= end < len(self.data), (start, end)
        self.ranges.append((start, end))
        return self.data[start : end + 1]


operations = st.lists(
    st.one_of(
        st.tuples(st.just("read"), st.integers(-1, 5000)),
        st.tuples(st.just("seek"), st.integers(0, 12000)),
        st.tuples(st.just("seek_end"), st.integers(-12000, 0)),
    ),
    max_size=30,
)


@given(data=st.binary(min_size=0, max_size=10000), ops=operations, head=st.integers(0, 3000))
def test_reads_and_seeks_match_an_in_memory_file(
    data: bytes, ops: list[tuple[str, int]], head: int
) -> None:
    store = RecordingStore(data)
    reader = RangedReader(store.fetch, len(data), initial=data[:head], min_fetch=256)
    expected = io.BytesIO(data)
    for op, value in ops:
        if op == "read":
            assert reader.read(value) == expected.read(value)
        elif op == "seek":
            assert reader.seek(value) == expected.seek(value)
        else:
            offset = max(value, -len(data))
            assert reader.seek(offset, io.SEEK_END) == expected.seek(offset, io.SEEK_END)
        assert reader.tell() == expected.tell()


def test_walking_the_whole_object_costs_logarithmic_requests() -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    store = RecordingStore(data)
    reader = RangedReader(store.fetch, len(data), min_fetch=1024)
    while reader.read(100):
        pass
    assert reader.bytes_fetched == len(data)
    assert len(store.ranges) <= 11  # 1 KiB doubling up to 1 MiB


def test_head_and_tail_cost_two_small_requests() -> None:
    data = b"x" * 10_000_000
    store = RecordingStore(data)
    reader = RangedReader(store.fetch, len(data), initial=data[:65536])
    reader.read(1000)
    reader.seek(-2, io.SEEK_END)
    assert reader.read(2) == b"xx"
    assert store.ranges == [(len(data) - 2, len(data) - 1)]
    assert reader.bytes_fetched == 65536 + 2


def test_an_empty_fetch_is_an_error_not_a_loop() -> None:
    reader = RangedReader(lambda start, end: b"", 100)
    with pytest.raises(FetchFailed, match="returned nothing"):
        reader.read(10)


def test_a_failing_fetch_is_not_an_oserror() -> None:
    # Image parsers read OSError as "broken file"; a timeout must not look like one.
    def fetch(start: int, end: int) -> bytes:
        raise TimeoutError("read timed out")

    reader = RangedReader(fetch, 100)
    with pytest.raises(FetchFailed) as caught:
        reader.read(10)
    assert not isinstance(caught.value, OSError)
    assert isinstance(caught.value.__cause__, TimeoutError)


def test_negative_seek_is_refused() -> None:
    reader = RangedReader(lambda start, end: b"x", 1)
    with pytest.raises(OSError, match="before the start"):
        reader.seek(-5)


def test_fill_fetches_exactly_the_stretch_asked_and_serves_it_after() -> None:
    data = bytes(range(256)) * 40
    store = RecordingStore(data)
    reader = RangedReader(store.fetch, len(data), initial=data[:4000], min_fetch=64)
    reader.seek(len(data) - 2)
    assert reader.read(2) == data[-2:]  # a tail, as the JPEG check reads it
    reader.fill(4000, 4010)  # shorter than what was fetched so far: still exactly that
    reader.fill(5000, 5000)  # nothing to fetch
    assert store.ranges[-1] == (4000, 4009)
    fetches = len(store.ranges)
    reader.seek(3990)
    assert reader.read(30) == data[3990:4020]  # served from the head, the fill, a new fetch
    assert reader.seek(4000) == 4000 and reader.read(10) == data[4000:4010]
    assert len(store.ranges) == fetches + 1
