"""Reading S3 event records: every fixture, and key decoding for any key."""

from __future__ import annotations

from urllib.parse import quote, quote_plus

from hypothesis import given
from hypothesis import strategies as st

from imgcli.lambdas.s3_events import (
    MalformedRecord,
    ObjectEvent,
    decode_key,
    object_events,
    read_record,
)
from tests.eventdata import load_event

keys = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    min_size=1,
    max_size=200,
)


@given(keys)
def test_form_encoded_keys_decode_to_the_original(key: str) -> None:
    assert decode_key(quote_plus(key, safe="/")) == key
    assert decode_key(quote_plus(key, safe="")) == key


@given(keys)
def test_spaces_encoded_as_percent_twenty_also_decode(key: str) -> None:
    assert decode_key(quote(key, safe="/")) == key


def test_fixture_keys_decode_to_what_s3_stores() -> None:
    expected = {
        "s3_put": "photos/2026/summer holiday/beach day +1 é.jpg",
        "s3_complete_multipart": "raw/100% crop.png",
        "s3_copy": "copies/日本/猫.gif",
        "s3_delete": "photos/2026/summer holiday/beach day +1 é.jpg",
        "s3_delete_marker": "photos/a+b=c&d.jpg",
    }
    for name, key in expected.items():
        (record,) = object_events(load_event(name))
        assert isinstance(record, ObjectEvent)
        assert record.key == key, name


def test_record_fields_and_kinds() -> None:
    (put,) = object_events(load_event("s3_put"))
    assert isinstance(put, ObjectEvent)
    assert put.is_created and not put.is_removed
    assert (put.size, put.etag, put.sequencer) == (1024, put.etag, "0055AED6DCD90281E5")
    (marker,) = object_events(load_event("s3_delete_marker"))
    assert isinstance(marker, ObjectEvent)
    assert marker.is_removed and marker.is_delete_marker
    assert marker.version_id and marker.size is None


def test_test_event_has_no_records() -> None:
    assert list(object_events(load_event("s3_test_event"))) == []


def test_multi_record_event_yields_every_record_in_order() -> None:
    records = list(object_events(load_event("s3_multi_record")))
    assert [r.key for r in records if isinstance(r, ObjectEvent)] == [
        "batch/one.jpg",
        "batch/two words.png",
        "batch/gone.gif",
    ]


def test_a_malformed_record_does_not_hide_its_neighbours() -> None:
    event = load_event("s3_multi_record")
    del event["Records"][1]["s3"]["object"]["sequencer"]
    records = list(object_events(event))
    assert [type(r) for r in records] == [ObjectEvent, MalformedRecord, ObjectEvent]


def test_a_record_of_the_wrong_types_is_malformed_not_an_exception() -> None:
    for record in ["text", 7, None, {"s3": {"object": "text"}}, {"s3": []}]:
        assert isinstance(read_record(record, 3), MalformedRecord)
    assert "record 3" in str(read_record({"s3": {}}, 3))
