"""``imgcli download`` end to end: a local cloud of this module's own, objects put straight
into the gallery bucket (S3 is the source of truth: nothing needs to be indexed), the CLI
in subprocesses as scripts run it."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from imgcli.cli import build_app
from imgcli.config import LOCAL_REGION
from imgcli.download import Downloader, DownloadRequest
from imgcli.download_types import DownloadStopped
from imgcli.errors import ExitCode, describe_failure
from imgcli.output import Streams
from imgcli.upload_listing import SHA256_METADATA
from tests.localstack import KEY, bootstrap, local_client, local_cloud_env, run_imgcli

REPO = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def local_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with local_cloud_env(tmp_path_factory.mktemp("download-cloud"), "download-e2e") as env:
        yield env


@pytest.fixture(scope="module")
def stack(local_env: dict[str, str]) -> dict[str, Any]:
    return bootstrap(local_env)


@pytest.fixture(scope="module")
def s3(stack: dict[str, Any]) -> Any:
    return local_client(stack, "s3")


def imgcli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_imgcli(env, *args, timeout=120)


def json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]  # every line must parse


def records_and_summary(stdout: str) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    lines = json_lines(stdout)
    summary = lines.pop()["summary"]
    return {record["key"]: record for record in lines}, summary


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put(s3: Any, bucket: str, key: str, body: bytes, *, with_sha256: bool = False) -> str:
    metadata = {SHA256_METADATA: sha256(body)} if with_sha256 else {}
    version: str = s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata=metadata)["VersionId"]
    return version


def put_multipart(s3: Any, bucket: str, key: str, body: bytes, *, crc32: bool = False) -> None:
    """An object uploaded in two parts, without imgcli's SHA-256: its ETag is no MD5.
    ``crc32``: with a full-object CRC32 checksum, which S3 keeps and returns."""
    checksum = {"ChecksumAlgorithm": "CRC32"} if crc32 else {}
    whole = {"ChecksumType": "FULL_OBJECT"} if crc32 else {}
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key, **checksum, **whole)["UploadId"]
    parts = []
    for number, chunk in enumerate((body[: 5 * MiB], body[5 * MiB :]), start=1):
        sent = s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=chunk, **checksum
        )
        part = {"ETag": sent["ETag"], "PartNumber": number}
        if crc32:
            part["ChecksumCRC32"] = sent["ChecksumCRC32"]
        parts.append(part)
    s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}, **whole
    )


def leftovers(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.name.endswith(".part")]


# A 1,000-byte key whose segments each fit a file name.
LONG_KEY = "awk/" + ("s" * 240 + "/") * 4 + "e" * 28 + ".jpg"
AWKWARD = {
    "awk/with space.jpg": "with space.jpg",
    "awk/plus+sign.jpg": "plus+sign.jpg",
    "awk/per%cent.jpg": "per%cent.jpg",
    "awk/%41.jpg": "%41.jpg",
    "awk/q?mark.jpg": "q?mark.jpg",
    "awk/hash#tag.jpg": "hash#tag.jpg",
    "awk/" + unicodedata.normalize("NFC", "café.jpg"): unicodedata.normalize("NFC", "café.jpg"),
    "awk/" + unicodedata.normalize("NFD", "café.jpg"): unicodedata.normalize("NFD", "café.jpg"),
    "awk/日本/写真.jpg": "日本/写真.jpg",
    "awk/ctrl\x01char\ttab.jpg": "ctrl\x01char\ttab.jpg",
    "awk/trailing space.jpg ": "trailing space.jpg ",
    LONG_KEY: LONG_KEY.removeprefix("awk/"),
}


def test_awkward_keys_round_trip_byte_for_byte_and_a_second_run_skips_them(
    local_env: dict[str, str], stack: dict[str, Any], s3: Any, tmp_path: Path
) -> None:
    assert len(LONG_KEY.encode()) == 1000
    bucket = stack["bucket"]
    bodies = {}
    for index, key in enumerate(AWKWARD):
        bodies[key] = os.urandom(1000 + index)
        put(s3, bucket, key, bodies[key], with_sha256=index % 2 == 0)
    put(s3, bucket, "awk/folder/", b"")  # a folder marker, as the console makes them
    multipart = os.urandom(5 * MiB + 1000)
    put_multipart(s3, bucket, "awk/multipart.bin", multipart)
    put_multipart(s3, bucket, "awk/crc32.bin", multipart, crc32=True)
    target = tmp_path / "gallery"

    first = imgcli(local_env, "--json", "download", "--prefix", "awk", "--to", str(target))

    assert first.returncode == 0, first.stderr
    records, summary = records_and_summary(first.stdout)
    assert (summary["downloaded"], summary["folders"], summary["refused"]) == (14, 1, 0)
    for key, relative in AWKWARD.items():
        path = target / relative
        assert sha256(path.read_bytes()) == sha256(bodies[key]), key
        assert records[key]["status"] == "downloaded"
        assert records[key]["path"] == str(path)
        assert records[key]["verified"] in ("sha256", "md5")
        modified = s3.head_object(Bucket=bucket, Key=key)["LastModified"]
        assert path.stat().st_mtime == modified.timestamp()
    assert (target / "multipart.bin").read_bytes() == multipart
    # Without a full-object checksum only the size can be checked, and the record says so.
    assert records["awk/multipart.bin"]["verified"] == "size"
    assert (target / "crc32.bin").read_bytes() == multipart
    assert records["awk/crc32.bin"]["verified"] == "checksum"
    umask = os.umask(0)
    os.umask(umask)
    assert (target / "with space.jpg").stat().st_mode & 0o777 == 0o666 & ~umask
    assert not leftovers(target)
    written = {path: path.stat().st_ino for path in target.rglob("*") if path.is_file()}

    again = imgcli(local_env, "--json", "download", "--prefix", "awk/", "--to", str(target))

    assert again.returncode == 0, again.stderr
    records, summary = records_and_summary(again.stdout)
    assert (summary["skipped"], summary["downloaded"]) == (14, 0)
    assert {record["status"] for record in records.values()} == {"skipped"}
    # Not one file written again.
    assert {path: path.stat().st_ino for path in written} == written


TRAVERSAL = {
    "trav/../x.jpg": "'..' segment",
    "trav//abs.jpg": "absolute path",
    "trav/a/../../b.jpg": "'..' segment",
    "trav/./c.jpg": "'.' segment",
    "trav/a//d.jpg": "empty path segment",
    "trav/" + "n" * 300 + ".jpg": "304 bytes",
}


def test_keys_that_would_leave_the_folder_are_refused_and_the_others_still_come(
    local_env: dict[str, str], stack: dict[str, Any], s3: Any, tmp_path: Path
) -> None:
    for key in [*TRAVERSAL, "trav/ok.jpg"]:
        put(s3, stack["bucket"], key, b"bytes of " + key.encode())
    target = tmp_path / "deep" / "target"

    result = imgcli(local_env, "--json", "download", "--prefix", "trav/", "--to", str(target))

    assert result.returncode == ExitCode.SOME_FAILED, result.stderr
    records, summary = records_and_summary(result.stdout)
    assert (summary["refused"], summary["downloaded"]) == (len(TRAVERSAL), 1)
    for key, reason in TRAVERSAL.items():
        assert records[key]["status"] == "refused"
        assert reason in records[key]["reason"], key
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.jpg")) == [
        "deep/target/ok.jpg"
    ]

    people = imgcli(local_env, "download", "--prefix", "trav/", "--to", str(target))

    assert people.returncode == ExitCode.SOME_FAILED
    assert "trav/../x.jpg: refused: the key has a '..' segment" in people.stderr
    assert f"{len(TRAVERSAL)} of {len(TRAVERSAL) + 1} files not downloaded" in people.stderr


def test_a_symbolic_link_in_the_folder_cannot_send_bytes_out_of_it(
    local_env: dict[str, str], stack: dict[str, Any], s3: Any, tmp_path: Path
) -> None:
    put(s3, stack["bucket"], "sym/out/a.jpg", b"a")
    put(s3, stack["bucket"], "sym/b.jpg", b"b")
    target, elsewhere = tmp_path / "target", tmp_path / "elsewhere"
    target.mkdir()
    elsewhere.mkdir()
    (target / "out").symlink_to(elsewhere)

    result = imgcli(local_env, "--json", "download", "--prefix", "sym", "--to", str(target))

    assert result.returncode == ExitCode.SOME_FAILED
    records, _ = records_and_summary(result.stdout)
    assert records["sym/out/a.jpg"]["status"] == "refused"
    assert "symbolic link out of the target folder" in records["sym/out/a.jpg"]["reason"]
    assert records["sym/b.jpg"]["status"] == "downloaded"
    assert list(elsewhere.iterdir()) == []


def test_keys_land_as_their_file_names_and_version_id_gives_old_bytes(
    local_env: dict[str, str], stack: dict[str, Any], s3: Any, tmp_path: Path
) -> None:
    bucket = stack["bucket"]
    old = put(s3, bucket, "ver/a/photo.jpg", b"the first photo")
    put(s3, bucket, "ver/a/photo.jpg", b"the second photo")
    put(s3, bucket, "ver/b/photo.jpg", b"another photo of the same name")

    result = imgcli(
        local_env,
        "--json",
        "download",
        "ver/a/photo.jpg",
        "--version-id",
        old,
        "--to",
        str(tmp_path),
    )

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "photo.jpg").read_bytes() == b"the first photo"
    records, _ = records_and_summary(result.stdout)
    assert records["ver/a/photo.jpg"]["version_id"] == old

    both = imgcli(
        local_env,
        "--json",
        "download",
        "ver/b/photo.jpg",
        "ver/a/photo.jpg",
        "ver/missing.jpg",
        "--to",
        str(tmp_path / "both"),
    )

    assert both.returncode == ExitCode.SOME_FAILED
    records, _ = records_and_summary(both.stdout)
    assert records["ver/b/photo.jpg"]["status"] == "downloaded"
    assert records["ver/a/photo.jpg"]["status"] == "refused"
    assert "same file as key 'ver/b/photo.jpg'" in records["ver/a/photo.jpg"]["reason"]
    assert records["ver/missing.jpg"] | {"seconds": 0} == {
        **records["ver/missing.jpg"],
        "status": "failed",
        "reason": "no such key in the bucket",
    }
    assert (tmp_path / "both" / "photo.jpg").read_bytes() == b"another photo of the same name"


def test_different_local_content_is_refused_then_replaced_with_overwrite_and_dry_run_writes_nothing(
    local_env: dict[str, str], stack: dict[str, Any], s3: Any, tmp_path: Path
) -> None:
    put(s3, stack["bucket"], "over/a.jpg", b"in the bucket", with_sha256=True)
    put(s3, stack["bucket"], "over/b.jpg", b"b")
    (tmp_path / "a.jpg").write_bytes(b"on the disk!!")  # the same size, other bytes

    dry = imgcli(
        local_env, "--json", "download", "--prefix", "over", "--to", str(tmp_path), "--dry-run"
    )

    assert dry.returncode == ExitCode.SOME_FAILED
    records, summary = records_and_summary(dry.stdout)
    assert records["over/a.jpg"]["status"] == "refused"
    assert records["over/a.jpg"]["reason"] == "exists; --overwrite to replace"
    assert records["over/b.jpg"]["status"] == "would_download"
    assert summary["dry_run"] is True
    assert not (tmp_path / "b.jpg").exists()
    people = imgcli(
        local_env, "download", "--prefix", "over", "--to", str(tmp_path / "new"), "--dry-run"
    )
    assert people.returncode == 0, people.stderr
    assert "would_download" in people.stdout  # the table
    assert "dry run: would download 2 files; nothing written" in people.stderr
    assert not (tmp_path / "new").exists()

    replaced = imgcli(
        local_env, "--json", "download", "--prefix", "over", "--to", str(tmp_path), "--overwrite"
    )

    assert replaced.returncode == 0, replaced.stderr
    assert (tmp_path / "a.jpg").read_bytes() == b"in the bucket"


def test_bytes_that_fail_verification_leave_nothing(
    local_env: dict[str, str], stack: dict[str, Any], s3: Any, tmp_path: Path
) -> None:
    s3.put_object(
        Bucket=stack["bucket"],
        Key="bad/lying.jpg",
        Body=b"these bytes",
        Metadata={SHA256_METADATA: sha256(b"other bytes")},
    )

    result = imgcli(local_env, "--json", "download", "bad/lying.jpg", "--to", str(tmp_path))

    assert result.returncode == ExitCode.SOME_FAILED
    records, _ = records_and_summary(result.stdout)
    assert records["bad/lying.jpg"]["status"] == "failed"
    assert "do not match the stored SHA-256" in records["bad/lying.jpg"]["reason"]
    assert not (tmp_path / "lying.jpg").exists()
    assert not leftovers(tmp_path)


def test_ctrl_c_removes_the_partial_file_prints_a_summary_and_exits_130(
    local_env: dict[str, str], stack: dict[str, Any], s3: Any, tmp_path: Path
) -> None:
    put(s3, stack["bucket"], "big/panorama.bin", os.urandom(MiB) * 64)
    target = tmp_path / "target"
    target.mkdir()
    command = [sys.executable, "-m", "imgcli", "--json", "download", "big/panorama.bin"]
    running = subprocess.Popen(
        [*command, "--to", str(target), "--jobs", "1"],
        cwd=REPO,
        env=local_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As a terminal's Ctrl-C finds it (a suite started in the background ignores SIGINT).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while not leftovers(target):
        assert running.poll() is None, running.communicate()
        assert time.monotonic() < deadline, "the download never started"
        time.sleep(0.005)
    running.send_signal(signal.SIGINT)
    stdout, stderr = running.communicate(timeout=60)

    assert running.returncode == ExitCode.INTERRUPTED, stderr
    assert "error: interrupted" in stderr
    record, summary = json_lines(stdout)
    assert (record["status"], record["reason"]) == ("failed", "interrupted")
    assert summary["summary"]["interrupted"] is True
    assert list(target.iterdir()) == []  # no .part file, no partial final file


def test_on_a_terminal_people_see_progress_and_a_summary(
    local_env: dict[str, str], stack: dict[str, Any], s3: Any, tmp_path: Path
) -> None:
    for name in ("a", "b", "c"):
        put(s3, stack["bucket"], f"tty/{name}.jpg", name.encode() * 100)
    stdout, stderr = io.StringIO(), io.StringIO()
    terminal = Streams(io.StringIO(), stdout, stderr, stdout_isatty=True, stderr_isatty=True)
    result = CliRunner().invoke(
        build_app(), ["download", "-p", "tty/", "--to", str(tmp_path)], env=local_env, obj=terminal
    )

    assert result.exit_code == 0, stderr.getvalue()
    assert "downloaded 3 files (300 B)" in stderr.getvalue()
    assert "3/3 files, " in stderr.getvalue()  # the progress line, rendered on the "terminal"
    assert stdout.getvalue() == ""


def test_a_missing_bucket_and_refused_credentials_stop_the_run_with_their_codes(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    s3 = local_client(stack, "s3")
    with pytest.raises(DownloadStopped) as gone:
        Downloader(s3, "no-such-bucket").download(DownloadRequest(tmp_path, prefix="p/"))
    assert describe_failure(gone.value.cause).exit_code == ExitCode.NO_STACK
    with pytest.raises(DownloadStopped) as gone_too:
        Downloader(s3, "no-such-bucket").download(DownloadRequest(tmp_path, keys=("a.jpg",)))
    assert describe_failure(gone_too.value.cause).exit_code == ExitCode.NO_STACK
    stranger = boto3.client(
        "s3",
        endpoint_url=stack["endpoint_url"],
        region_name=LOCAL_REGION,
        aws_access_key_id=KEY,
        aws_secret_access_key="not-the-secret",
    )
    with pytest.raises(DownloadStopped) as refused:
        Downloader(stranger, stack["bucket"]).download(DownloadRequest(tmp_path, prefix=""))
    assert describe_failure(refused.value.cause).exit_code == ExitCode.AUTH
    assert list(tmp_path.glob("*.jpg")) == []
