"""The classification of keys as missing, stale, orphaned or unchanged, as pure code.

The property: for any two key-sorted streams, the merge classifies exactly as set
arithmetic on the keys would (objects minus records are missing, records minus objects
orphaned, the intersection stale or unchanged by version), reading each stream once,
lazily.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imgcli.errors import ExitCode, describe_failure
from imgcli.lambdas.records import SCHEMA_VERSION
from imgcli.reconcile_drift import (
    BucketObject,
    Drift,
    IndexRecord,
    KeyDrift,
    UnorderedListing,
    classify,
    describes,
    merged_records,
)

# Keys over a small alphabet (with a non-ASCII and an astral character) so the two sets
# share keys often; versions over a few values so some match and some do not.
keys = st.text(alphabet="ab/é\U0001f600", min_size=1, max_size=4)
versions = st.sampled_from(["v1", "v2", None, "null"])
etags = st.sampled_from(["e1", '"e1"', "e2"])
schemas = st.sampled_from([1, SCHEMA_VERSION - 1, SCHEMA_VERSION, SCHEMA_VERSION + 1])


class OnePass:
    """An iterator that counts the items taken from it and can be read only once."""

    def __init__(self, items: Iterable[object]) -> None:
        self._items = iter(items)
        self.taken = 0

    def __iter__(self) -> Iterator[object]:
        return self

    def __next__(self) -> object:
        item = next(self._items)
        self.taken += 1
        return item


@given(
    st.dictionaries(keys, st.tuples(versions, etags), max_size=30),
    st.dictionaries(
        keys,
        st.tuples(versions, etags, st.sampled_from(["active", "invalid"]), schemas),
    ),
)
def test_the_merge_is_the_set_arithmetic_of_the_keys_in_one_pass(
    objects: dict[str, tuple[str | None, str]],
    records: dict[str, tuple[str | None, str, str, int]],
) -> None:
    bucket = OnePass(BucketObject(key, *objects[key]) for key in sorted(objects))
    index = OnePass(IndexRecord(key, *records[key]) for key in sorted(records))

    found = list(classify(bucket, index))  # type: ignore[arg-type]

    assert [item.key for item in found] == sorted(objects.keys() | records.keys())
    by_drift = {drift: {item.key for item in found if item.drift is drift} for drift in Drift}
    assert by_drift[Drift.MISSING] == objects.keys() - records.keys()
    assert by_drift[Drift.ORPHANED] == records.keys() - objects.keys()
    both = objects.keys() & records.keys()
    assert by_drift[Drift.STALE] | by_drift[Drift.UNCHANGED] == both
    older = {item.key for item in found if item.older_schema}
    for key in both:
        (object_version, object_etag), (record_version, record_etag, _, schema) = (
            objects[key],
            records[key],
        )
        if object_version in (None, "null"):
            same = record_etag.strip('"') == object_etag.strip('"')
        else:
            same = record_version == object_version
        # The current object, described by an older writer, is stale too (and says why).
        assert (key in by_drift[Drift.UNCHANGED]) == (same and schema >= SCHEMA_VERSION), key
        assert (key in older) == (same and schema < SCHEMA_VERSION), key
    assert older <= by_drift[Drift.STALE]
    assert (bucket.taken, index.taken) == (len(objects), len(records))


@pytest.mark.parametrize(
    ("schema", "drift"),
    [
        (1, KeyDrift("k", Drift.STALE, older_schema=True)),
        (SCHEMA_VERSION, KeyDrift("k", Drift.UNCHANGED)),
        # A newer writer's record (a newer function, an older CLI) is not undone.
        (SCHEMA_VERSION + 1, KeyDrift("k", Drift.UNCHANGED)),
    ],
)
def test_a_record_of_an_older_schema_is_stale_though_it_describes_the_object(
    schema: int, drift: KeyDrift
) -> None:
    current = [BucketObject("k", "v1", "e")]
    assert list(classify(current, [IndexRecord("k", "v1", "e", schema=schema)])) == [drift]
    # Another version is stale for that reason, whatever the schema.
    other = [IndexRecord("k", "v0", "e", schema=schema)]
    assert list(classify(current, other)) == [KeyDrift("k", Drift.STALE)]


def test_the_merge_is_lazy_so_memory_holds_one_item_per_stream() -> None:
    endless = (BucketObject(f"k{n:09d}", "v", "e") for n in itertools.count())
    index = OnePass(
        IndexRecord(f"k{n:09d}", "v", "e", schema=SCHEMA_VERSION) for n in itertools.count(step=2)
    )
    first = list(itertools.islice(classify(endless, index), 4))  # type: ignore[arg-type]
    assert first == [
        KeyDrift("k000000000", Drift.UNCHANGED),
        KeyDrift("k000000001", Drift.MISSING),
        KeyDrift("k000000002", Drift.UNCHANGED),
        KeyDrift("k000000003", Drift.MISSING),
    ]
    assert index.taken <= 3


@pytest.mark.parametrize(
    ("record", "current", "same"),
    [
        (IndexRecord("k", "v1", "e"), BucketObject("k", "v1", "other"), True),
        (IndexRecord("k", "v1", "e"), BucketObject("k", "v2", "e"), False),
        # No version id on the record (indexed before versioning): a versioned object differs.
        (IndexRecord("k", None, "e"), BucketObject("k", "v2", "e"), False),
        # An object without a version (S3's "null"): the ETags decide, quoted or not.
        (IndexRecord("k", "null", '"e"'), BucketObject("k", "null", "e"), True),
        (IndexRecord("k", None, "e"), BucketObject("k", None, "f"), False),
        (IndexRecord("k", None, None), BucketObject("k", None, "f"), False),
    ],
)
def test_a_record_describes_an_object_by_version_else_by_etag(
    record: IndexRecord, current: BucketObject, same: bool
) -> None:
    assert describes(record, current) is same


def test_the_active_and_invalid_listings_merge_into_one_sorted_stream() -> None:
    active = [IndexRecord(key, "v", "e") for key in ("a", "c", "d")]
    invalid = [IndexRecord(key, "v", "e", "invalid") for key in ("b", "e")]
    merged = list(merged_records(active, invalid))
    assert [(record.key, record.status) for record in merged] == [
        ("a", "active"),
        ("b", "invalid"),
        ("c", "active"),
        ("d", "active"),
        ("e", "invalid"),
    ]


@pytest.mark.parametrize("keys_listed", [["b", "a"], ["a", "a"]])
def test_a_listing_out_of_key_order_stops_the_merge(keys_listed: list[str]) -> None:
    objects = [BucketObject(key, "v", "e") for key in keys_listed]
    with pytest.raises(UnorderedListing, match="not in key order") as raised:
        list(classify(objects, []))
    assert describe_failure(raised.value).exit_code is ExitCode.REMOTE
    records = [IndexRecord(key, "v", "e") for key in keys_listed]
    with pytest.raises(UnorderedListing):
        list(classify([], records))
    with pytest.raises(UnorderedListing):
        list(merged_records(records, []))
