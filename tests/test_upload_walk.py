"""The upload engine's walk, filters and checks, against moto in process: keys, the
order they come in, filters, and every refusal."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from imgcli.errors import UsageError
from imgcli.upload_types import UploadConfig
from imgcli.upload_walk import PathFilter, is_selected
from tests.images import image_bytes, png_header_only
from tests.upload_harness import Calls, images_folder, object_keys, upload

# Keys


def test_keys_are_the_prefix_plus_the_path_under_the_folder_or_the_name(
    s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    folder = tmp_path / "trip"
    (folder / "day 1").mkdir(parents=True)
    (folder / "top.jpg").write_bytes(image_bytes("JPEG"))
    (folder / "day 1" / "beach.png").write_bytes(image_bytes("PNG"))
    single = tmp_path / "elsewhere" / "single.gif"
    single.parent.mkdir()
    single.write_bytes(image_bytes("GIF"))

    summary, found = upload(
        s3_client, bucket, folder, single, prefix="albums/2024/", recursive=True
    )

    assert summary.uploaded == 3
    assert sorted(object_keys(s3_client, bucket)) == [
        "albums/2024/day 1/beach.png",
        "albums/2024/single.gif",
        "albums/2024/top.jpg",
    ]
    assert found.by_key()["albums/2024/day 1/beach.png"].path == str(folder / "day 1" / "beach.png")


def test_the_walk_yields_keys_in_s3_listing_order(
    tmp_path: Path, s3_client: Any, bucket: str
) -> None:
    # '.' (0x2E) < '/' (0x2F) < '0' (0x30): a folder's keys sort between "a.jpg" and "a0.jpg".
    folder = tmp_path / "order"
    (folder / "a").mkdir(parents=True)
    for name in ("a.jpg", "a/b.jpg", "a0.jpg", "Z.jpg", "é.jpg", "a/ü.jpg"):
        (folder / name).write_bytes(image_bytes("JPEG"))

    _, found = upload(s3_client, bucket, folder, recursive=True, dry_run=True)

    keys = [result.key for result in found.results]
    assert keys == sorted(keys, key=lambda key: key.encode("utf-8"))  # type: ignore[union-attr]
    assert len(keys) == 6


def test_a_folder_needs_recursive_and_a_missing_path_is_a_usage_error(
    s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    with pytest.raises(UsageError, match="is a folder"):
        upload(s3_client, bucket, tmp_path)
    with pytest.raises(UsageError, match="no such file or folder"):
        upload(s3_client, bucket, tmp_path / "missing.jpg")


# Filters


@pytest.mark.parametrize(
    ("relative", "filters", "selected"),
    [
        ("a.jpg", [], True),
        ("raw/a.jpg", [("-", "raw/*")], False),
        ("deep/er/x.tmp", [("-", "*.tmp")], False),  # '*' crosses '/'
        ("raw/keep/a.jpg", [("-", "raw/*"), ("+", "raw/keep/*")], True),  # later wins
        ("raw/keep/a.jpg", [("+", "raw/keep/*"), ("-", "raw/*")], False),
        ("a.png", [("+", "*.png")], True),
        ("a.jpg", [("+", "*.png")], False),  # a first --include means "only these"
        ("a.jpg", [("-", "*"), ("+", "*.png")], False),  # the aws s3 idiom works too
        ("a.png", [("-", "*"), ("+", "*.png")], True),
        ("A.PNG", [("+", "*.png")], False),  # case-sensitive, like keys
    ],
)
def test_filters_later_ones_win(
    relative: str, filters: list[tuple[str, str]], selected: bool
) -> None:
    parsed = [PathFilter(pattern, sign == "+") for sign, pattern in filters]
    assert is_selected(relative, parsed) is selected


def test_excluded_files_are_counted_not_reported(
    s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    folder = images_folder(tmp_path / "f", 6)
    (folder / "notes.txt").write_text("not an image, but excluded")
    filters = (PathFilter("*", False), PathFilter("*.png", True), PathFilter("*.gif", True))

    summary, found = upload(s3_client, bucket, folder, recursive=True, filters=filters)

    assert sorted(found.by_name()) == ["img001.png", "img002.gif"]
    assert (summary.uploaded, summary.excluded, summary.refused) == (2, 5, 0)


# Refusals


def test_every_bad_file_is_refused_by_name_with_its_reason_and_the_others_go(
    s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = image_bytes("JPEG", size=(120, 80))
    (folder / "good.jpg").write_bytes(good)
    (folder / "text.jpg").write_bytes(b"this is not an image at all")
    (folder / "truncated.jpg").write_bytes(good[: len(good) * 3 // 4])  # header intact
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "bomb.png").write_bytes(png_header_only(20000, 20000))
    (folder / "huge.bmp").write_bytes(image_bytes("BMP", size=(200, 200)))
    (folder / "broken.jpg").symlink_to(folder / "does-not-exist.jpg")
    (folder / "loop-a.jpg").symlink_to(folder / "loop-b.jpg")
    (folder / "loop-b.jpg").symlink_to(folder / "loop-a.jpg")
    (folder / "sub").mkdir()
    (folder / "sub" / "back-up").symlink_to(folder)  # a folder that contains itself
    os.mkfifo(folder / "pipe.jpg")  # opening it would block: it must not be opened
    (folder / os.fsdecode(b"latin1-\xe9.jpg")).write_bytes(good)

    summary, found = upload(
        s3_client, bucket, folder, recursive=True, config=UploadConfig(max_size=100_000)
    )

    reasons = {name: result.reason or "" for name, result in found.by_name().items()}
    statuses = {name: result.status for name, result in found.by_name().items()}
    assert statuses.pop("good.jpg") == "uploaded"
    assert set(statuses.values()) == {"refused"}
    assert "not an image in an accepted format" in reasons["text.jpg"]
    assert "truncated" in reasons["truncated.jpg"]
    assert reasons["empty.jpg"] == "empty file"
    assert "over the pixel limit" in reasons["bomb.png"]
    assert reasons["huge.bmp"].startswith("too large: 120054 bytes")
    assert reasons["broken.jpg"] == "broken symlink: its target does not exist"
    assert reasons["loop-a.jpg"].startswith("symlink loop")
    assert reasons["loop-b.jpg"].startswith("symlink loop")
    assert reasons["back-up"].startswith("symlink loop")
    assert found.by_name()["back-up"].key is None  # a folder has no key
    assert reasons["pipe.jpg"] == "not a regular file"
    assert "not valid UTF-8" in reasons[os.fsdecode(b"latin1-\xe9.jpg")]
    assert object_keys(s3_client, bucket) == ["good.jpg"]
    assert (summary.uploaded, summary.refused, summary.not_uploaded) == (1, 11, 11)


def test_content_type_comes_from_the_content_not_the_name(
    s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    disguised = tmp_path / "really-a-png.jpg"
    disguised.write_bytes(image_bytes("PNG"))
    upload(s3_client, bucket, disguised)
    head = s3_client.head_object(Bucket=bucket, Key="really-a-png.jpg")
    assert head["ContentType"] == "image/png"


def test_a_key_over_1024_bytes_is_refused(s3_client: Any, bucket: str, tmp_path: Path) -> None:
    # In a folder's walk, refused on its own (named on the command line: a usage error).
    folder = tmp_path / "long"
    folder.mkdir()
    (folder / "photo.jpg").write_bytes(image_bytes("JPEG"))
    _, found = upload(s3_client, bucket, folder, recursive=True, prefix="é" * 510)
    assert found.results[0].status == "refused"
    assert found.results[0].reason == (
        "its key is 1029 bytes of UTF-8 (S3's limit on a key is 1024): "
        "shorten its path or the prefix"
    )


@pytest.mark.parametrize("name", ["two\nlines.jpg", "esc\x1b[31m.jpg", "tab\there.jpg"])
def test_a_file_name_with_control_characters_is_refused_and_never_sent(
    s3_client: Any, bucket: str, tmp_path: Path, name: str
) -> None:
    # A newline in a name used to fail as "PutObject failed (404)", after a request.
    folder = tmp_path / "names"
    folder.mkdir()
    (folder / name).write_bytes(image_bytes("JPEG"))
    (folder / "fine.jpg").write_bytes(image_bytes("JPEG"))
    calls = Calls(s3_client)

    summary, found = upload(s3_client, bucket, folder, recursive=True)

    refused = found.by_name()[name]
    assert (refused.status, refused.reason) == (
        "refused",
        "its key holds control characters: rename the file",
    )
    assert object_keys(s3_client, bucket) == ["fine.jpg"]
    assert calls.counts["PutObject"] == 1
    assert (summary.uploaded, summary.refused) == (1, 1)


def test_an_unreadable_file_is_refused(s3_client: Any, bucket: str, tmp_path: Path) -> None:
    def refuse_to_open(path: Path) -> Any:
        raise PermissionError(13, "Permission denied", str(path))

    photo = tmp_path / "locked.jpg"
    photo.write_bytes(image_bytes("JPEG"))
    _, found = upload(s3_client, bucket, photo, open_file=refuse_to_open)
    assert (found.results[0].status, found.results[0].reason) == (
        "refused",
        "unreadable: permission denied",
    )


def test_a_file_without_read_permission_is_refused(
    s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    photo = tmp_path / "locked.jpg"
    photo.write_bytes(image_bytes("JPEG"))
    photo.chmod(0)
    try:
        if os.access(photo, os.R_OK):
            pytest.skip("this user (root?) reads files without read permission")
        _, found = upload(s3_client, bucket, photo)
    finally:
        photo.chmod(0o644)
    assert found.results[0].reason == "unreadable: permission denied"


def test_two_files_with_one_key_the_second_is_refused(
    s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "same.jpg").write_bytes(image_bytes("JPEG"))
    first, second = tmp_path / "one" / "same.jpg", tmp_path / "two" / "same.jpg"
    _, found = upload(s3_client, bucket, first, second)
    outcomes = {result.path: (result.status, result.reason) for result in found.results}
    assert outcomes == {
        str(first): ("uploaded", None),
        str(second): ("refused", f"same key as {first}"),
    }
