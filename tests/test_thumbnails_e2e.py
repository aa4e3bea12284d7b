"""Thumbnails end to end on the local cloud: the demo's images and a generated set (every
accepted format, the eight EXIF orientations, CMYK, 16-bit, alpha, palettes, animations,
tiny and panoramic images) uploaded with one ``imgcli upload --wait``; every valid one's
record names both thumbnails, and each is a WebP in the thumbnails bucket of the right
size and aspect, upright, without metadata. A new version replaces them, a delete removes
them, an invalid image has none, and a record written before thumbnails (schema 1) is
found stale by ``imgcli reconcile`` and repaired with them.

The pixels themselves are tested in ``test_thumbnails``; here they are checked as they
come out of the deployed function, so packaging, the function's reads, its writes to the
thumbnails bucket and the record it stores are proven together.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from PIL import ExifTags, Image, ImageOps

from imgcli.lambdas.records import SCHEMA_VERSION, THUMBNAIL_BOXES
from tests import thumbnail_images as made
from tests.images import image_bytes
from tests.localstack import REPO, bootstrap, local_client, local_cloud_env, run_imgcli
from tests.thumbnail_images import BLUE, RED

Colour = tuple[int, int, int, int]
OPAQUE_RED: Colour = (*RED, 255)
OPAQUE_BLUE: Colour = (*BLUE, 255)
GREY: Colour = (128, 128, 128, 255)
CLEAR: Colour = (0, 0, 0, 0)
TOLERANCE = 16  # lossy WebP of flat colour, sampled away from edges

# Where the stored top-left corner is seen once the EXIF orientation is applied (EXIF 2.3,
# tag 274), as relative (x, y); the opposite corner stays blue.
CORNERS = {
    1: (0.1, 0.1),
    2: (0.9, 0.1),
    3: (0.9, 0.9),
    4: (0.1, 0.9),
    5: (0.1, 0.1),
    6: (0.9, 0.1),
    7: (0.9, 0.9),
    8: (0.1, 0.9),
}


@dataclass(frozen=True)
class Expected:
    """A generated image and the colours its thumbnails must show at relative points."""

    data: bytes
    colours: tuple[tuple[tuple[float, float], Colour], ...] = ()


def cornered_case(data: bytes, orientation: int) -> Expected:
    x, y = CORNERS[orientation]
    return Expected(data, (((x, y), OPAQUE_RED), ((1 - x, 1 - y), OPAQUE_BLUE)))


def centre(data: bytes, colour: Colour) -> Expected:
    return Expected(data, (((0.5, 0.5), colour),))


def half_clear(data: bytes, left: Colour) -> Expected:
    return Expected(data, (((0.25, 0.5), left), ((0.75, 0.5), CLEAR)))


def generated() -> dict[str, Expected]:
    """Key (under ``gen/``) → the image and what its thumbnails must show."""
    cases: dict[str, Expected] = {
        f"format.{ext}": Expected(image_bytes(fmt, size=(64, 48)))
        for fmt, ext in [
            ("JPEG", "jpg"),
            ("PNG", "png"),
            ("GIF", "gif"),
            ("WEBP", "webp"),
            ("TIFF", "tif"),
            ("BMP", "bmp"),
        ]
    }
    for orientation in CORNERS:
        data = made.oriented_jpeg(orientation, (600, 400))
        cases[f"orientation/{orientation}.jpg"] = cornered_case(data, orientation)
    for fmt, ext in [("PNG", "png"), ("WEBP", "webp"), ("TIFF", "tif")]:
        cases[f"orientation/6.{ext}"] = cornered_case(made.oriented(fmt, 6, (300, 200)), 6)
    lzw = made.encoded(
        made.cornered((300, 200)), "TIFF", exif=_orientation_exif(7), compression="tiff_lzw"
    )
    cases["orientation/7-lzw.tif"] = cornered_case(lzw, 7)
    # Bigger than the largest box: JPEG draft mode and orientation together.
    big = made.encoded(made.cornered((1600, 1200)), "JPEG", exif=_orientation_exif(8))
    cases["orientation/big-8.jpg"] = cornered_case(big, 8)
    cases.update(
        {
            "cmyk.jpg": centre(made.solid("CMYK", (40, 30), (0, 255, 255, 0), "JPEG"), OPAQUE_RED),
            "cmyk.tif": centre(made.solid("CMYK", (40, 30), (0, 255, 255, 0), "TIFF"), OPAQUE_RED),
            "16-bit/grey.png": centre(made.grey16_png(32768, (40, 30)), GREY),
            "16-bit/rgb.png": centre(made.rgb16_png((65535, 0, 0), (40, 30)), OPAQUE_RED),
            "16-bit/grey-alpha.png": centre(made.grey16_alpha_png(32768, 65535, (40, 30)), GREY),
            "16-bit/grey.tif": centre(made.solid("I;16", (40, 30), 32768, "TIFF"), GREY),
            "alpha/rgba.png": half_clear(
                made.half_transparent("RGBA", "PNG", (40, 30)), OPAQUE_RED
            ),
            "alpha/rgba.webp": half_clear(
                made.half_transparent("RGBA", "WEBP", (40, 30)), OPAQUE_RED
            ),
            "alpha/la.png": half_clear(
                made.half_transparent("LA", "PNG", (40, 30)), (200, 200, 200, 255)
            ),
            "palette/transparent.png": half_clear(
                made.palette_with_transparency("PNG", (40, 30)), OPAQUE_RED
            ),
            "palette/transparent.gif": half_clear(
                made.palette_with_transparency("GIF", (40, 30)), OPAQUE_RED
            ),
            "animated/first-red.gif": centre(
                made.first_red_then_blue("GIF", 3, (40, 30)), OPAQUE_RED
            ),
            "animated/first-red.png": centre(
                made.first_red_then_blue("PNG", 3, (40, 30)), OPAQUE_RED
            ),
            "animated/first-red.webp": centre(
                made.first_red_then_blue("WEBP", 3, (40, 30)), OPAQUE_RED
            ),
            "animated/first-page-red.tif": centre(
                made.first_red_then_blue("TIFF", 3, (40, 30)), OPAQUE_RED
            ),
            "metadata-gps.jpg": cornered_case(made.with_metadata(), 1),
            "tiny.png": centre(made.solid("RGB", (100, 50), RED, "PNG"), OPAQUE_RED),
            "one-pixel.png": centre(made.solid("RGB", (1, 1), BLUE, "PNG"), OPAQUE_BLUE),
            "panorama.png": Expected(image_bytes("PNG", size=(4000, 100))),
            "tower.jpg": Expected(image_bytes("JPEG", size=(100, 4000))),
            "replaced.png": Expected(image_bytes("PNG", size=(300, 200))),
            "deleted.png": Expected(image_bytes("PNG", size=(300, 200))),
            "old-schema.jpg": Expected(image_bytes("JPEG", size=(320, 240))),
        }
    )
    return {f"gen/{name}": case for name, case in cases.items()}


def _orientation_exif(value: int) -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = value
    return exif.tobytes()


INVALID = "gen/not-an-image.jpg"
REPLACED, DELETED, OLD_SCHEMA = "gen/replaced.png", "gen/deleted.png", "gen/old-schema.jpg"


@dataclass
class Gallery:
    env: dict[str, str]
    stack: dict[str, Any]
    #: Every valid image uploaded: key → its bytes.
    images: dict[str, bytes]
    expected: dict[str, Expected]
    folder: Path

    def imgcli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_imgcli(self.env, *args)

    def show(self, key: str) -> dict[str, Any]:
        done = self.imgcli("show", key, "--json")
        assert done.returncode == 0, (key, done.stdout, done.stderr)
        shown: dict[str, Any] = json.loads(done.stdout)
        return shown

    def thumbnail(self, key: str) -> bytes | None:
        """The thumbnails bucket's object ``key``; None when there is none."""
        s3 = local_client(self.stack, "s3")
        try:
            found = s3.get_object(Bucket=self.stack["thumbnails_bucket"], Key=key)
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "NoSuchKey", exc
            return None
        assert found["ContentType"] == "image/webp", key
        body: bytes = found["Body"].read()
        return body

    def thumbnail_keys(self) -> set[str]:
        s3 = local_client(self.stack, "s3")
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=self.stack["thumbnails_bucket"])
        return {item["Key"] for page in pages for item in page.get("Contents", ())}


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gallery]:
    """A bootstrapped stack holding the demo's images, the generated set and one file that
    is not an image, all indexed (one ``upload --wait`` for the images)."""
    base = tmp_path_factory.mktemp("thumbnails")
    with local_cloud_env(base, "thumbs") as env:
        stack = bootstrap(env)
        described = run_imgcli(env, "stack", "--json")
        assert described.returncode == 0, described.stderr
        stack = json.loads(described.stdout)
        assert stack["thumbnails_bucket"] not in ("", stack["bucket"])
        folder = base / "upload"
        shutil.copytree(REPO / "demo" / "images", folder / "demo")
        expected = generated()
        for key, case in expected.items():
            path = folder / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(case.data)
        images = {
            path.relative_to(folder).as_posix(): path.read_bytes()
            for path in sorted(folder.rglob("*"))
            if path.is_file()
        }
        # upload checks files before it sends them; any S3 client may write anything.
        s3 = local_client(stack, "s3")
        s3.put_object(Bucket=stack["bucket"], Key=INVALID, Body=b"plain text, not an image")
        done = run_imgcli(env, "upload", "--recursive", "--wait", "--json", str(folder))
        assert done.returncode == 0, done.stderr
        *_, summary = (json.loads(line) for line in done.stdout.splitlines())
        assert summary["summary"]["uploaded"] == summary["summary"]["listed"] == len(images)
        yield Gallery(env, stack, images, expected, folder)


def displayed_size(data: bytes) -> tuple[int, int]:
    """The image's size once its EXIF orientation is applied, as Pillow shows it (Pillow
    applies a TIFF's orientation itself when it opens one)."""
    with Image.open(io.BytesIO(data)) as image:
        upright = ImageOps.exif_transpose(image)
        return upright.size


def riff_chunks(data: bytes) -> list[bytes]:
    """The chunk ids of a WebP file (RIFF): metadata would be EXIF, XMP or ICCP chunks."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    chunks, offset = [], 12
    while offset + 8 <= len(data):
        kind, (length,) = (
            data[offset : offset + 4],
            struct.unpack("<I", data[offset + 4 : offset + 8]),
        )
        chunks.append(kind)
        offset += 8 + length + (length & 1)
    return chunks


def near(found: object, expected: Colour) -> bool:
    assert isinstance(found, tuple)
    if expected[3] == 0:
        return bool(found[3] <= TOLERANCE)  # a clear pixel's colour is anything
    return all(abs(a - b) <= TOLERANCE for a, b in zip(found, expected, strict=True))


def check_thumbnail(gallery: Gallery, key: str, box: int, stored: dict[str, Any]) -> None:
    """``stored`` (the record's entry for ``box``) names a WebP of the recorded size,
    fitted into ``box`` from the upright image, showing the expected colours, no metadata."""
    data = gallery.thumbnail(stored["key"])
    assert data is not None, (key, box, "not in the thumbnails bucket")
    assert stored["size"] == len(data)
    width, height = displayed_size(gallery.images[key])
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "WEBP"
        assert image.size == (stored["width"], stored["height"]), key
        longest = min(box, max(width, height))
        assert max(image.size) == longest, (key, box, image.size, (width, height))
        if width >= height:
            assert abs(image.height - image.width * height / width) <= 1, (key, image.size)
        else:
            assert abs(image.width - image.height * width / height) <= 1, (key, image.size)
        assert not image.getexif(), key
        assert not set(image.info) & {"exif", "xmp", "icc_profile"}, key
        rgba = image.convert("RGBA")
        for (x, y), colour in gallery.expected.get(key, Expected(b"")).colours:
            point = (
                min(int(x * image.width), image.width - 1),
                min(int(y * image.height), image.height - 1),
            )
            found = rgba.getpixel(point)
            assert near(found, colour), (key, box, (x, y), found, colour)
    assert not {b"EXIF", b"XMP ", b"ICCP"} & set(riff_chunks(data)), key
    assert b"secret comment" not in data


#: One key of each kind, whose ``imgcli show --json`` is compared with its listing: every
#: key through ``show`` would cost the module half a minute of CLI start-ups.
SHOWN = (
    "demo/holiday/café.webp",
    "demo/night-sky.gif",
    "gen/orientation/big-8.jpg",
    "gen/orientation/7-lzw.tif",
    "gen/cmyk.jpg",
    "gen/16-bit/grey.tif",
    "gen/alpha/rgba.png",
    "gen/animated/first-red.webp",
    "gen/panorama.png",
    "gen/one-pixel.png",
)
#: What ``show`` adds to a listed record: links that expire.
LINK_FIELDS = ("urls", "urls_expire_at")


def listing(gallery: Gallery) -> dict[str, dict[str, Any]]:
    """Every active image's record as ``imgcli list --json`` gives it, by key."""
    done = gallery.imgcli("list", "--json")
    assert done.returncode == 0, done.stderr
    records = (json.loads(line) for line in done.stdout.splitlines())
    return {record["key"]: record for record in records}


def without_links(record: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in record.items() if name not in LINK_FIELDS}


def test_every_valid_image_has_both_thumbnails_upright_fitted_and_bare(gallery: Gallery) -> None:
    records = listing(gallery)
    assert set(records) == set(gallery.images)
    assert len(records) >= 40 and {"demo/meadow.jpg", *SHOWN} <= set(records)
    for key, record in records.items():
        assert record["status"] == "active", (key, record)
        assert record["schema_version"] == SCHEMA_VERSION == 2
        assert record["thumbnail_reason"] is None, (key, record["thumbnail_reason"])
        assert set(record["thumbnails"]) == {str(box) for box in THUMBNAIL_BOXES}, key
        for box in THUMBNAIL_BOXES:
            check_thumbnail(gallery, key, box, record["thumbnails"][str(box)])
    named = {t["key"] for r in records.values() for t in r["thumbnails"].values()}
    assert len(named) == 2 * len(records)  # one key per image and box
    # The bucket holds exactly what the records name: nothing for the invalid file.
    assert gallery.thumbnail_keys() == named

    with ThreadPoolExecutor(4) as pool:
        shown = dict(zip(SHOWN, pool.map(gallery.show, SHOWN), strict=True))
    for key, record in shown.items():
        assert without_links(record) == without_links(records[key])


def test_an_invalid_upload_has_no_thumbnails(gallery: Gallery) -> None:
    record = wait_for(lambda: gallery.show(INVALID) if listed(gallery, INVALID) else None)
    assert record["status"] == "invalid" and record["reason"]
    assert record["thumbnails"] is None
    assert record["schema_version"] == SCHEMA_VERSION


def listed(gallery: Gallery, key: str) -> bool:
    return gallery.imgcli("show", key, "--json").returncode == 0


def wait_for(check: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        assert time.monotonic() < deadline, f"not within {timeout_s} s"
        time.sleep(0.2)
    return found


def test_a_new_version_gets_new_thumbnails_and_the_old_ones_are_removed(
    gallery: Gallery,
) -> None:
    before = gallery.show(REPLACED)
    old_keys = {t["key"] for t in before["thumbnails"].values()}
    assert all(gallery.thumbnail(key) for key in old_keys)
    newer = gallery.folder.parent / "newer" / "replaced.png"
    newer.parent.mkdir()
    newer.write_bytes(made.encoded(made.cornered((200, 300)), "PNG"))
    done = gallery.imgcli("upload", "--overwrite", "--wait", "--prefix", "gen/", str(newer))
    assert done.returncode == 0, done.stderr
    gallery.images[REPLACED] = newer.read_bytes()
    gallery.expected[REPLACED] = cornered_case(gallery.images[REPLACED], 1)

    after = gallery.show(REPLACED)
    assert after["version_id"] != before["version_id"]
    assert (after["width"], after["height"]) == (200, 300)
    new_keys = {t["key"] for t in after["thumbnails"].values()}
    assert not new_keys & old_keys
    for box in THUMBNAIL_BOXES:
        check_thumbnail(gallery, REPLACED, box, after["thumbnails"][str(box)])
    assert all(gallery.thumbnail(key) is None for key in old_keys)


def test_a_deleted_image_loses_its_thumbnails(gallery: Gallery) -> None:
    keys = {t["key"] for t in gallery.show(DELETED)["thumbnails"].values()}
    assert all(gallery.thumbnail(key) for key in keys)
    done = gallery.imgcli("delete", "--wait", DELETED)
    assert done.returncode == 0, done.stderr
    assert not listed(gallery, DELETED)
    assert all(gallery.thumbnail(key) is None for key in keys)
    assert not keys & gallery.thumbnail_keys()


def reconcile(gallery: Gallery, *args: str) -> list[dict[str, Any]]:
    done = gallery.imgcli("reconcile", "--json", *args)
    assert done.returncode == 0, (done.stdout, done.stderr)
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_a_record_written_before_thumbnails_is_repaired_by_reconcile(gallery: Gallery) -> None:
    # A gallery indexed before thumbnails: the record as the old save function wrote it (no
    # schema_version, no thumbnails), and no thumbnails in the bucket.
    dynamodb = local_client(gallery.stack, "dynamodb")
    table = gallery.stack["table"]
    item = dynamodb.get_item(TableName=table, Key={"key": {"S": OLD_SCHEMA}}, ConsistentRead=True)[
        "Item"
    ]
    current = {t["key"] for t in gallery.show(OLD_SCHEMA)["thumbnails"].values()}
    for name in ("schema_version", "thumbnails", "thumbnail_reason"):
        item.pop(name, None)
    dynamodb.put_item(TableName=table, Item=item)
    s3 = local_client(gallery.stack, "s3")
    for key in current:
        s3.delete_object(Bucket=gallery.stack["thumbnails_bucket"], Key=key)
    old = gallery.show(OLD_SCHEMA)
    assert old["schema_version"] == 1 and old["thumbnails"] is None

    *reports, summary = reconcile(gallery, "--dry-run")
    assert [(r["key"], r["drift"], r["outcome"]) for r in reports] == [
        (OLD_SCHEMA, "stale", "would_repair")
    ]
    assert summary["summary"]["stale"] == summary["summary"]["older_schema"] == 1
    assert gallery.show(OLD_SCHEMA)["schema_version"] == 1  # a dry run changes nothing

    *reports, summary = reconcile(gallery)
    assert [(r["key"], r["drift"], r["outcome"]) for r in reports] == [
        (OLD_SCHEMA, "stale", "indexed")
    ]
    repaired = gallery.show(OLD_SCHEMA)
    assert repaired["schema_version"] == SCHEMA_VERSION
    assert repaired["version_id"] == old["version_id"]
    for box in THUMBNAIL_BOXES:
        check_thumbnail(gallery, OLD_SCHEMA, box, repaired["thumbnails"][str(box)])
    *reports, summary = reconcile(gallery, "--dry-run")
    assert reports == [] and summary["summary"]["older_schema"] == 0
