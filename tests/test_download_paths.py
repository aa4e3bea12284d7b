"""Where ``imgcli download`` puts a key: never outside the target folder, one key per path,
names mapped where a file system cannot hold them (pure: no disk, no AWS)."""

from __future__ import annotations

import posixpath

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from imgcli.download_paths import (
    NAME_MAX,
    Claims,
    UnsafeKey,
    folder_of,
    folds_names,
    landing,
    map_segment,
    relative_key,
    unmapped_segment,
)

# Keys made mostly of the characters that matter here.
CHARACTERS = [*'/./\\..:%<>|?*"\x00\x01\x1f \u3000aA0fF9\u00e9e\u0301\u65e5']
AWKWARD = st.sampled_from([*CHARACTERS, "CON", "nul"])
KEYS = st.lists(AWKWARD | st.text(max_size=3), max_size=30).map("".join)


def inside(segments: tuple[str, ...]) -> bool:
    joined = posixpath.normpath(posixpath.join("/dir", *segments))
    return joined.startswith("/dir/")


@settings(max_examples=500, deadline=None)
@given(KEYS, st.booleans())
@example("../x.jpg", False)
@example("a/../../b.jpg", True)
@example("/abs.jpg", False)
@example("..\\..\\x.jpg", True)
@example("C:\\Windows\\x.jpg", True)
def test_a_key_lands_under_the_folder_or_is_refused(key: str, windows: bool) -> None:
    try:
        segments = landing(key, windows=windows)
    except UnsafeKey as unsafe:
        assert unsafe.reason
        return
    assert inside(segments)
    for segment in segments:
        assert segment not in ("", ".", "..")
        assert "/" not in segment and "\x00" not in segment
        if windows:
            assert not set(segment) & set('<>:"\\|?*')
            assert not segment.endswith((".", " "))
            assert all(ord(char) >= 32 for char in segment)
        assert len(segment.encode("utf-8")) <= NAME_MAX or windows


@settings(max_examples=500, deadline=None)
@given(KEYS)
@example("%41")
@example("100%.jpg")
@example("%%41")
@example("%4.")
@example("%<")
@example("CON")
def test_the_windows_mapping_is_injective(segment: str) -> None:
    # Reading the name back gives the segment: two segments never share a name.
    assert unmapped_segment(map_segment(segment, windows=True)) == segment


@given(KEYS)
def test_posix_maps_nothing(segment: str) -> None:
    assert map_segment(segment) == segment


@pytest.mark.parametrize(
    ("segment", "name"),
    [
        ("a<b>.jpg", "a%3Cb%3E.jpg"),
        ('q"uote|pipe?star*.png', "q%22uote%7Cpipe%3Fstar%2A.png"),
        ("c:\\x.jpg", "c%3A%5Cx.jpg"),
        ("tab\there.jpg", "tab%09here.jpg"),
        ("ends with dot.", "ends with dot%2E"),
        ("ends with space ", "ends with space%20"),
        ("CON", "%43ON"),
        ("con.jpg", "%63on.jpg"),
        ("LPT9.tar.gz", "%4CPT9.tar.gz"),
        ("COM10.jpg", "COM10.jpg"),  # not a device name
        ("console.jpg", "console.jpg"),
        ("100%.jpg", "100%.jpg"),  # '%' alone is never ambiguous
        ("%41.jpg", "%2541.jpg"),  # '%41' would read back as 'A'
        ("日本.jpg", "日本.jpg"),
    ],
)
def test_windows_names(segment: str, name: str) -> None:
    assert map_segment(segment, windows=True) == name
    assert map_segment(segment, windows=False) == segment


@pytest.mark.parametrize(
    ("relative", "reason"),
    [
        ("../x.jpg", "'..' segment"),
        ("a/../../b.jpg", "'..' segment"),
        ("..", "'..' segment"),
        ("/abs.jpg", "absolute path"),
        ("nul\x00.jpg", "NUL"),
        ("a//b.jpg", "empty path segment"),
        ("./a.jpg", "'.' segment"),
        ("a/./b.jpg", "'.' segment"),
        ("x" * 256, "256 bytes"),
        ("é" * 128, "256 bytes"),
    ],
)
def test_unsafe_keys_are_refused_with_a_reason(relative: str, reason: str) -> None:
    with pytest.raises(UnsafeKey) as refused:
        landing(relative)
    assert reason in refused.value.reason


def test_the_longest_name_fits_and_windows_counts_utf16_units_after_mapping() -> None:
    assert landing("x" * 255) == ("x" * 255,)
    assert landing("é" * 200, windows=True) == ("é" * 200,)  # 200 units, 400 bytes
    with pytest.raises(UnsafeKey, match="UTF-16 units"):
        landing("<" * 100, windows=True)  # 300 units once mapped


def test_a_prefix_is_a_folder_as_aws_s3_cp_recursive_reads_it() -> None:
    assert folder_of("photos") == "photos/"
    assert folder_of("photos/") == "photos/"
    assert folder_of("") == ""
    assert relative_key("photos/2024/a.jpg", "photos/") == "2024/a.jpg"
    assert relative_key("a.jpg", "") == "a.jpg"
    assert relative_key("photos/2024/", "photos/") is None  # a folder marker
    assert relative_key("photos/", "photos/") is None
    # A key named on the command line lands as its file name.
    assert relative_key("deep/down/a.jpg", None) == "a.jpg"
    assert relative_key("../../etc/passwd", None) == "passwd"
    with pytest.raises(ValueError, match="not under"):
        relative_key("other/a.jpg", "photos/")


def test_the_later_of_two_keys_on_one_path_is_refused() -> None:
    claims = Claims()
    assert claims.claim(("a.jpg",), "x/a.jpg") is None
    reason = claims.claim(("a.jpg",), "y/a.jpg")
    assert reason is not None and "'x/a.jpg'" in reason


def test_a_file_where_a_folder_is_needed_and_the_reverse_are_refused() -> None:
    claims = Claims()
    assert claims.claim(("a",), "p/a") is None
    needs_folder = claims.claim(("a", "b.jpg"), "p/a/b.jpg")
    assert needs_folder is not None and "as a folder" in needs_folder
    claims = Claims()
    assert claims.claim(("a", "b.jpg"), "p/a/b.jpg") is None
    on_folder = claims.claim(("a",), "p/a")
    assert on_folder is not None and "folder" in on_folder
    assert claims.claim(("a", "c.jpg"), "p/a/c.jpg") is None  # siblings share the folder


def test_names_differing_in_case_or_normalisation_collide_where_the_disk_folds_them() -> None:
    nfc, nfd = "caf\u00e9.jpg", "cafe\u0301.jpg"
    folding = Claims(fold=True)
    assert folding.claim((nfc,), "1") is None
    assert folding.claim((nfd,), "2") is not None
    assert folding.claim(("CAF\u00c9.JPG",), "3") is not None
    exact = Claims()
    assert exact.claim((nfc,), "1") is None
    assert exact.claim((nfd,), "2") is None  # Linux keeps both
    assert folds_names("darwin") and folds_names("win32") and not folds_names("linux")


@settings(max_examples=200, deadline=None)
@given(st.lists(KEYS, max_size=20), st.booleans())
def test_placed_keys_never_share_a_path_or_stand_in_each_others_way(
    keys: list[str], fold: bool
) -> None:
    claims = Claims(fold=fold)
    placed: list[tuple[str, ...]] = []
    for key in keys:
        try:
            segments = landing(key)
        except UnsafeKey:
            continue
        if claims.claim(segments, key) is None:
            placed.append(segments)
    names = [tuple(claims.comparable(s) for s in segments) for segments in placed]
    assert len(set(names)) == len(names)
    for one in names:
        for other in names:
            assert one == other or other[: len(one)] != one  # no file is another's folder
