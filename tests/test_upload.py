"""The upload engine's entry point against moto in process: dry runs, the JSON records and
summary, and the configuration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from imgcli.upload_types import UploadConfig
from tests.upload_harness import Calls, MiB, images_folder, upload


@pytest.fixture
def calls(s3_client: Any) -> Calls:
    return Calls(s3_client)


# Dry run and records


def test_a_dry_run_lists_and_sends_nothing(
    s3_client: Any, bucket: str, tmp_path: Path, calls: Calls
) -> None:
    folder = images_folder(tmp_path / "photos", 4)
    upload(s3_client, bucket, folder / "img000.jpg")
    (folder / "bad.jpg").write_bytes(b"")
    calls.reset()

    summary, found = upload(s3_client, bucket, folder, recursive=True, dry_run=True)

    assert calls.sends() == 0
    assert calls.counts["ListObjectsV2"] == 1
    assert {result.key: result.status for result in found.results} == {
        "bad.jpg": "refused",
        "img000.jpg": "skipped",
        "img001.png": "would_upload",
        "img002.gif": "would_upload",
        "img003.webp": "would_upload",
    }
    assert summary.as_json()["dry_run"] is True
    assert summary.would_upload == 3


def test_records_and_summary_are_json(s3_client: Any, bucket: str, tmp_path: Path) -> None:
    folder = images_folder(tmp_path / "photos", 2)
    (folder / "empty.jpg").write_bytes(b"")
    summary, found = upload(s3_client, bucket, folder, recursive=True, prefix="j/")

    records = [json.loads(json.dumps(result.as_json())) for result in found.results]
    uploaded = next(record for record in records if record["key"] == "j/img000.jpg")
    assert uploaded["status"] == "uploaded"
    assert uploaded["path"] == str(folder / "img000.jpg")
    assert uploaded["bytes"] == (folder / "img000.jpg").stat().st_size
    assert uploaded["content_type"] == "image/jpeg"
    assert isinstance(uploaded["seconds"], float)
    assert set(uploaded) >= {"path", "key", "status", "reason", "bytes", "seconds"}
    refused = next(record for record in records if record["key"] == "j/empty.jpg")
    assert (refused["status"], refused["reason"]) == ("refused", "empty file")
    document = json.loads(json.dumps(summary.as_json()))
    assert document["files"] == 3
    assert (document["uploaded"], document["refused"]) == (2, 1)
    assert document["bytes_sent"] == sum(r["bytes"] for r in records if r["status"] == "uploaded")


# Configuration


def test_config_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="jobs"):
        UploadConfig(jobs=0)
    assert UploadConfig().jobs == 16
    assert UploadConfig().multipart_threshold == 8 * MiB
