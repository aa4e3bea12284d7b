"""One object fetched by ``Fetcher``, with a small recording double for the S3 client: what
is asked for, what is verified, and that a failed or stopped fetch leaves no file."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import FlexibleChecksumError

from imgcli.download_files import PartFiles
from imgcli.download_transfer import Fetcher, FetchStopped, Planned, likely_part_sizes
from imgcli.upload_listing import SHA256_METADATA, multipart_etag

MiB = 1024 * 1024
MODIFIED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


class Body(io.BytesIO):
    """A response body that may raise what botocore's checksum check raises at its end."""

    def __init__(self, data: bytes, *, fail_at_end: bool = False) -> None:
        super().__init__(data)
        self.fail_at_end = fail_at_end

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        if not chunk and self.fail_at_end:
            raise FlexibleChecksumError(error_msg="Expected checksum x did not match y")
        return chunk


class FakeS3:
    def __init__(self, data: bytes, **response: Any) -> None:
        self.data = data
        self.response = {
            "ContentLength": len(data),
            "ETag": f'"{hashlib.md5(data).hexdigest()}"',
            "LastModified": MODIFIED,
            "VersionId": "v1",
            "Metadata": {},
            **response,
        }
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail_at_end = False

    def head_object(self, **arguments: Any) -> dict[str, Any]:
        self.calls.append(("head_object", arguments))
        return dict(self.response)

    def get_object(self, **arguments: Any) -> dict[str, Any]:
        self.calls.append(("get_object", arguments))
        body = Body(self.data, fail_at_end=self.fail_at_end)
        return {**self.response, "Body": body}


def fetcher(client: FakeS3, root: Path, **options: Any) -> tuple[Fetcher, PartFiles]:
    parts = PartFiles()
    settings: dict[str, Any] = {
        "stop": threading.Event(),
        "umask": 0o022,
        "chunk_size": 4,
        "overwrite": False,
        "dry_run": False,
        **options,
    }
    return Fetcher(client, "bucket", str(root), parts=parts, **settings), parts


def planned(root: Path, key: str = "k/a.jpg", **fields: Any) -> Planned:
    return Planned(key, ("a.jpg",), str(root / "a.jpg"), **fields)


def test_a_named_key_is_asked_for_then_written_verified_and_dated(tmp_path: Path) -> None:
    client = FakeS3(b"hello world")
    fetch, parts = fetcher(client, tmp_path)
    seen: list[int] = []

    result = fetch.fetch(planned(tmp_path, version_id="v1"), seen.append)

    assert (result.status, result.verified, result.bytes) == ("downloaded", "md5", 11)
    assert [name for name, _ in client.calls] == ["head_object", "get_object"]
    assert client.calls[1][1] == {"Bucket": "bucket", "Key": "k/a.jpg", "VersionId": "v1"}
    final = tmp_path / "a.jpg"
    assert final.read_bytes() == b"hello world"
    assert final.stat().st_mtime == MODIFIED.timestamp()
    assert final.stat().st_mode & 0o777 == 0o644
    assert sum(seen) == 11
    assert len(parts) == 0


def test_the_stored_sha256_is_preferred_and_a_mismatch_leaves_nothing(tmp_path: Path) -> None:
    data = b"hello world"
    good = FakeS3(data, Metadata={SHA256_METADATA: hashlib.sha256(data).hexdigest()})
    result = fetcher(good, tmp_path)[0].fetch(planned(tmp_path), lambda n: None)
    assert result.verified == "sha256"

    lying = FakeS3(data, Metadata={SHA256_METADATA: hashlib.sha256(b"x").hexdigest()})
    fetch, parts = fetcher(lying, tmp_path / "other")
    (tmp_path / "other").mkdir()
    result = fetch.fetch(planned(tmp_path / "other"), lambda n: None)
    assert (result.status, result.reason) == (
        "failed",
        "the bytes received do not match the stored SHA-256",
    )
    assert list((tmp_path / "other").iterdir()) == []
    assert len(parts) == 0


def test_a_body_cut_short_fails_and_leaves_nothing(tmp_path: Path) -> None:
    client = FakeS3(b"hello", ContentLength=10)
    fetch, _ = fetcher(client, tmp_path)
    result = fetch.fetch(planned(tmp_path, size=10, etag="0" * 32), lambda n: None)
    assert result.status == "failed"
    assert "received 5 bytes of 10" in (result.reason or "")
    assert [p.name for p in tmp_path.iterdir()] == ["aws-config"]


def test_a_multipart_object_without_sha256_asks_for_checksums(tmp_path: Path) -> None:
    data = b"x" * 100
    client = FakeS3(data, ETag='"abc-2"')
    fetch, _ = fetcher(client, tmp_path)
    result = fetch.fetch(planned(tmp_path, size=100, etag="abc-2"), lambda n: None)
    assert client.calls[0][1]["ChecksumMode"] == "ENABLED"
    assert result.verified == "size"  # no full-object checksum came back

    client = FakeS3(data, ETag='"abc-2"', ChecksumType="FULL_OBJECT", ChecksumCRC32="AAAA")
    fetch, _ = fetcher(client, tmp_path / "2")
    (tmp_path / "2").mkdir()
    result = fetch.fetch(planned(tmp_path / "2", size=100, etag="abc-2"), lambda n: None)
    assert result.verified == "checksum"

    client.fail_at_end = True  # botocore found the body does not match S3's checksum
    fetch, parts = fetcher(client, tmp_path / "3")
    (tmp_path / "3").mkdir()
    result = fetch.fetch(planned(tmp_path / "3", size=100, etag="abc-2"), lambda n: None)
    assert result.status == "failed"
    assert "do not match S3's checksum" in (result.reason or "")
    assert list((tmp_path / "3").iterdir()) == []
    assert len(parts) == 0


def test_a_stop_ends_the_fetch_at_the_next_chunk_and_removes_its_file(tmp_path: Path) -> None:
    client = FakeS3(b"a fairly long body, read four bytes at a time")
    stop = threading.Event()
    fetch, parts = fetcher(client, tmp_path, stop=stop)
    written: list[int] = []

    def on_bytes(amount: int) -> None:
        written.append(amount)
        stop.set()  # Ctrl-C after the first chunk

    with pytest.raises(FetchStopped):
        fetch.fetch(planned(tmp_path, size=46, etag="0" * 32), on_bytes)
    assert [p.name for p in tmp_path.iterdir()] == ["aws-config"]
    assert sum(written) == 0  # the progress given back
    assert len(parts) == 0


def test_a_local_file_is_compared_before_anything_is_fetched(tmp_path: Path) -> None:
    data = b"same bytes"
    (tmp_path / "a.jpg").write_bytes(data)
    client = FakeS3(data)
    fetch, _ = fetcher(client, tmp_path)
    result = fetch.fetch(planned(tmp_path), lambda n: None)
    assert (result.status, result.reason) == ("skipped", "same content")
    assert [name for name, _ in client.calls] == ["head_object"]

    (tmp_path / "a.jpg").write_bytes(b"diff bytes")
    result = fetch.fetch(planned(tmp_path), lambda n: None)
    assert (result.status, result.reason) == ("refused", "exists; --overwrite to replace")
    assert (tmp_path / "a.jpg").read_bytes() == b"diff bytes"

    fetch, _ = fetcher(client, tmp_path, overwrite=True)
    assert fetch.fetch(planned(tmp_path), lambda n: None).status == "downloaded"
    assert (tmp_path / "a.jpg").read_bytes() == data


def test_a_multipart_etag_is_reproduced_from_the_likely_part_sizes(tmp_path: Path) -> None:
    data = os.urandom(5 * MiB + 10)
    etag = multipart_etag(io.BytesIO(data), 5 * MiB)
    assert 5 * MiB in likely_part_sizes(len(data), etag)
    assert likely_part_sizes(len(data), "not-multipart") == []
    (tmp_path / "a.jpg").write_bytes(data)
    client = FakeS3(data, ETag=f'"{etag}"')
    result = fetcher(client, tmp_path)[0].fetch(planned(tmp_path), lambda n: None)
    assert result.status == "skipped"
