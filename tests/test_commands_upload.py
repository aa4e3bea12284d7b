"""``imgcli upload`` as people and scripts run it: the command line (CliRunner, no AWS),
then end to end against a local cloud of this module's own, with a bootstrapped stack."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
from botocore.credentials import Credentials
from typer.testing import CliRunner

from imgcli.cli import build_app
from imgcli.commands.upload import (
    FILTER_ORDER,
    UploadCommand,
    ordered_filters,
    parse_size,
    summary_line,
)
from imgcli.errors import ExitCode
from imgcli.gallery_api import GalleryApi
from imgcli.index_wait import IndexWait
from imgcli.output import Streams
from imgcli.upload_types import UploadSummary
from imgcli.upload_walk import PathFilter
from tests.images import image_bytes, png_header_only
from tests.localstack import KEY, SECRET, bootstrap, local_client, local_cloud_env, run_imgcli

REPO = Path(__file__).resolve().parents[1]


# The command line, without AWS


def invoke(*args: str) -> Any:
    return CliRunner().invoke(build_app(), list(args))


def test_a_folder_without_recursive_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke("upload", str(tmp_path))
    assert result.exit_code == ExitCode.USAGE
    assert "is a folder" in result.stderr
    assert "--recursive" in result.stderr


def test_a_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke("upload", str(tmp_path / "nope.jpg"))
    assert result.exit_code == ExitCode.USAGE
    assert "no such file or folder" in result.stderr


@pytest.mark.parametrize(
    ("text", "size"),
    [("5000", 5000), ("20M", 20 * 1024**2), ("512KiB", 512 * 1024), ("1g", 1024**3)],
)
def test_sizes_take_binary_units(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["0", "1.5G", "ten", "-5", "5X"])
def test_nonsense_sizes_are_refused(text: str, tmp_path: Path) -> None:
    with pytest.raises(typer.BadParameter):
        parse_size(text)
    result = invoke("upload", "--max-size", text, str(tmp_path))
    assert result.exit_code == ExitCode.USAGE


def test_the_order_of_include_and_exclude_is_kept() -> None:
    probe = typer.Typer()
    seen: dict[str, Any] = {}

    @probe.command(cls=UploadCommand)
    def command(
        ctx: typer.Context,
        include: Annotated[list[str] | None, typer.Option("--include")] = None,
        exclude: Annotated[list[str] | None, typer.Option("--exclude")] = None,
        prefix: Annotated[str, typer.Option("--prefix")] = "",
    ) -> None:
        seen["filters"] = ordered_filters(ctx.meta[FILTER_ORDER], include or [], exclude or [])

    args = ["--exclude", "*", "--prefix", "--include", "--include", "*.png", "--exclude=raw/*"]
    result = CliRunner().invoke(probe, args)

    assert result.exit_code == 0, result.output
    # "--include" right after --prefix is the prefix's value, not a filter.
    assert seen["filters"] == [
        PathFilter("*", False),
        PathFilter("*.png", True),
        PathFilter("raw/*", False),
    ]


def test_help_documents_the_filters_and_an_example() -> None:
    result = invoke("upload", "--help")
    assert result.exit_code == 0
    assert "Example: imgcli upload" in result.stdout
    # The option's help wraps inside the table's cell: read it without the borders.
    words = [word for word in result.stdout.split() if word not in "│╭╮╰╯─"]
    assert "last one matching" in " ".join(words)


def test_the_summary_says_what_happened() -> None:
    done = UploadSummary(uploaded=3, skipped=2, refused=1, bytes_sent=3072, seconds=1.5)
    waited = IndexWait(listed=3, invalid={}, pending=frozenset())
    assert summary_line(done, waited) == (
        "uploaded 3 files (3.0 KiB) in 1.5 s (2 files/s, 2.0 KiB/s); the API lists 3 of them; "
        "2 skipped (already uploaded), 1 refused"
    )
    assert summary_line(UploadSummary(skipped=200)) == (
        "nothing to upload: 200 skipped (already uploaded)"
    )
    assert summary_line(UploadSummary()) == "nothing to upload: no files found"
    assert summary_line(UploadSummary(dry_run=True, would_upload=1, excluded=4)) == (
        "dry run: would upload 1 file; 4 excluded by filters; nothing sent"
    )
    assert summary_line(UploadSummary(uploaded=1, failed=1, interrupted=True)) == (
        "interrupted: 1 file uploaded before Ctrl-C; 1 failed; "
        "multipart uploads in progress were aborted"
    )


# End to end: a local cloud in a subprocess, the CLI in subprocesses


@pytest.fixture(scope="module")
def local_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with local_cloud_env(tmp_path_factory.mktemp("upload-cloud"), "upload-e2e") as env:
        yield env


def imgcli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_imgcli(env, *args, timeout=120)


@pytest.fixture(scope="module")
def stack(local_env: dict[str, str]) -> dict[str, Any]:
    return bootstrap(local_env)


@pytest.fixture(scope="module")
def s3(stack: dict[str, Any]) -> Any:
    return local_client(stack, "s3")


@pytest.fixture(scope="module")
def api(stack: dict[str, Any]) -> GalleryApi:
    return GalleryApi(stack["api_url"], Credentials(KEY, SECRET), "us-east-1")


def json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]  # every line must parse


def versions(s3: Any, bucket: str, prefix: str) -> list[tuple[str, str]]:
    pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(
        (version["Key"], version["VersionId"])
        for page in pages
        for version in page.get("Versions", [])
    )


EXTENSIONS = {
    "JPEG": "jpg",
    "PNG": "png",
    "GIF": "gif",
    "WEBP": "webp",
    "TIFF": "tif",
    "BMP": "bmp",
}


def gallery_folder(root: Path, count: int) -> dict[str, tuple[str, int, int]]:
    """``count`` small images of every format; returns name -> (format, width, height)."""
    made = {}
    formats = list(EXTENSIONS)
    for index in range(count):
        fmt = formats[index % len(formats)]
        name = f"{index // 50:02d}/photo-{index:03d}.{EXTENSIONS[fmt]}"
        width, height = 8 + index % 13, 6 + index % 7
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image_bytes(fmt, size=(width, height)))
        made[name] = (fmt, width, height)
    return made


BAD_FILES = ("text.jpg", "truncated.jpg", "empty.jpg", "bomb.png", "broken.jpg")


def add_bad_files(root: Path) -> None:
    jpeg = image_bytes("JPEG", size=(160, 120))
    (root / "text.jpg").write_text("a text file pretending to be a photo")
    (root / "truncated.jpg").write_bytes(jpeg[: len(jpeg) * 3 // 4])
    (root / "empty.jpg").write_bytes(b"")
    (root / "bomb.png").write_bytes(png_header_only(20000, 20000))
    (root / "broken.jpg").symlink_to(root / "gone.jpg")


def test_a_folder_uploads_bad_files_are_refused_and_a_second_run_sends_nothing(
    local_env: dict[str, str],
    stack: dict[str, Any],
    s3: Any,
    api: GalleryApi,
    tmp_path: Path,
) -> None:
    folder = tmp_path / "gallery"
    made = gallery_folder(folder, 200)
    add_bad_files(folder)

    first = imgcli(local_env, "upload", str(folder), "-r", "--prefix", "e2e/", "--wait")

    assert first.returncode == ExitCode.SOME_FAILED, first.stderr
    for name in BAD_FILES:
        assert f"{folder / name}: refused: " in first.stderr
    assert "refused: empty file" in first.stderr
    assert "truncated" in first.stderr
    assert "over the pixel limit" in first.stderr
    assert "broken symlink" in first.stderr
    assert "not an image in an accepted format" in first.stderr
    assert "uploaded 200 files" in first.stderr
    assert "the API lists 200 of them" in first.stderr
    assert "5 of 205 files not uploaded: 5 refused, 0 failed" in first.stderr
    # --wait returned only once all 200 were indexed, with their real dimensions.
    listed = {image["key"]: image for image in api.list_images(prefix="e2e/")}
    assert set(listed) == {f"e2e/{name}" for name in made}
    for name, (fmt, width, height) in made.items():
        image = listed[f"e2e/{name}"]
        assert (image["format"], image["width"], image["height"]) == (fmt, width, height), name
    sent = versions(s3, stack["bucket"], "e2e/")
    assert len(sent) == 200

    again = imgcli(local_env, "--json", "upload", str(folder), "-r", "--prefix", "e2e/")

    assert again.returncode == ExitCode.SOME_FAILED
    records = json_lines(again.stdout)
    summary = records.pop()["summary"]
    assert (summary["skipped"], summary["refused"], summary["uploaded"]) == (200, 5, 0)
    assert {Path(r["path"]).name for r in records if r["status"] == "refused"} == set(BAD_FILES)
    assert all(r["reason"] for r in records if r["status"] == "refused")
    for name in BAD_FILES:
        (folder / name).unlink()

    third = imgcli(local_env, "upload", str(folder), "-r", "--prefix", "e2e/")

    assert third.returncode == 0, third.stderr
    assert "nothing to upload: 200 skipped (already uploaded)" in third.stderr
    assert versions(s3, stack["bucket"], "e2e/") == sent  # not one object written


def test_changed_content_is_refused_then_replaced_with_overwrite(
    local_env: dict[str, str], stack: dict[str, Any], api: GalleryApi, tmp_path: Path
) -> None:
    photo = tmp_path / "portrait.png"
    photo.write_bytes(image_bytes("PNG", size=(30, 40)))
    first = imgcli(local_env, "upload", str(photo), "--prefix", "changing/", "--wait")
    assert first.returncode == 0, first.stderr
    before = api.get_image("changing/portrait.png")
    assert before is not None and (before["width"], before["height"]) == (30, 40)
    photo.write_bytes(image_bytes("PNG", size=(50, 20)))

    refused = imgcli(local_env, "--json", "upload", str(photo), "--prefix", "changing/")

    assert refused.returncode == ExitCode.SOME_FAILED
    record = json_lines(refused.stdout)[0]
    assert record["status"] == "refused"
    assert "different content" in record["reason"]

    replaced = imgcli(
        local_env, "--json", "upload", str(photo), "--prefix", "changing/", "--overwrite", "--wait"
    )

    assert replaced.returncode == 0, replaced.stderr
    record, summary = json_lines(replaced.stdout)
    assert (record["status"], record["replaced"]) == ("uploaded", True)
    assert summary["summary"]["listed"] == 1
    after = api.get_image("changing/portrait.png")
    # --wait waited for the new details, not the old ones still listed before indexing.
    assert after is not None and (after["width"], after["height"]) == (50, 20)
    assert after["etag"] == record["etag"] != before["etag"]


AWKWARD_NAMES = ("with space.jpg", "plus+sign.png", "per%cent.gif", "unicodé 日本.webp")


def test_awkward_keys_round_trip(
    local_env: dict[str, str], s3: Any, stack: dict[str, Any], api: GalleryApi, tmp_path: Path
) -> None:
    folder = tmp_path / "awkward names"
    folder.mkdir()
    for index, name in enumerate(AWKWARD_NAMES):
        fmt = {"jpg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WEBP"}[name.rsplit(".", 1)[1]]
        (folder / name).write_bytes(image_bytes(fmt, size=(10 + index, 10)))

    uploaded = imgcli(local_env, "--json", "upload", str(folder), "-r", "-p", "odd/", "--wait")

    assert uploaded.returncode == 0, uploaded.stderr
    keys = {f"odd/{name}" for name in AWKWARD_NAMES}
    assert {r["key"] for r in json_lines(uploaded.stdout)[:-1]} == keys
    for index, name in enumerate(AWKWARD_NAMES):
        image = api.get_image(f"odd/{name}")
        assert image is not None and image["width"] == 10 + index, name
    listed = s3.list_objects_v2(Bucket=stack["bucket"], Prefix="odd/")["Contents"]
    assert {item["Key"] for item in listed} == keys

    again = imgcli(local_env, "--json", "upload", str(folder), "-r", "-p", "odd/")

    assert again.returncode == 0, again.stderr
    assert json_lines(again.stdout)[-1]["summary"]["skipped"] == len(AWKWARD_NAMES)


def test_a_dry_run_sends_nothing_and_filters_apply_in_order(
    local_env: dict[str, str], s3: Any, stack: dict[str, Any], tmp_path: Path
) -> None:
    folder = tmp_path / "dry"
    gallery_folder(folder, 12)

    planned = imgcli(
        local_env,
        "upload",
        str(folder),
        "-r",
        "--prefix",
        "dry/",
        "--dry-run",
        "--json",
        "--exclude",
        "*",
        "--include",
        "*.png",
        "--exclude",
        "01/*",
    )

    assert planned.returncode == 0, planned.stderr
    records = json_lines(planned.stdout)
    summary = records.pop()["summary"]
    assert {r["status"] for r in records} == {"would_upload"}
    assert sorted(r["key"] for r in records) == ["dry/00/photo-001.png", "dry/00/photo-007.png"]
    assert (summary["dry_run"], summary["excluded"]) == (True, 10)
    assert "Contents" not in s3.list_objects_v2(Bucket=stack["bucket"], Prefix="dry/")

    people = imgcli(local_env, "upload", str(folder), "-r", "--prefix", "dry/", "--dry-run")

    assert people.returncode == 0, people.stderr
    assert "would_upload" in people.stdout  # the table of what would happen
    assert "dry run: would upload 12 files; nothing sent" in people.stderr
    assert "Contents" not in s3.list_objects_v2(Bucket=stack["bucket"], Prefix="dry/")


def test_ctrl_c_aborts_the_multipart_upload_prints_a_summary_and_exits_130(
    local_env: dict[str, str], s3: Any, stack: dict[str, Any], tmp_path: Path
) -> None:
    big = tmp_path / "panorama.bmp"
    big.write_bytes(image_bytes("BMP", size=(3700, 3700)))  # 41 MB: six parts, one at a time
    command = [sys.executable, "-m", "imgcli", "--json", "upload", str(big), "-p", "ctrl-c/"]
    running = subprocess.Popen(
        [*command, "--jobs", "1"],
        cwd=REPO,
        env=local_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As a terminal's Ctrl-C finds it. A suite started in the background (`make test &`)
        # ignores SIGINT, and an ignored signal stays ignored across exec.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while not s3.list_multipart_uploads(Bucket=stack["bucket"], Prefix="ctrl-c/").get("Uploads"):
        assert running.poll() is None, running.communicate()
        assert time.monotonic() < deadline, "the multipart upload never started"
        time.sleep(0.02)
    running.send_signal(signal.SIGINT)
    stdout, stderr = running.communicate(timeout=60)

    assert running.returncode == ExitCode.INTERRUPTED, stderr
    assert "error: interrupted" in stderr
    record, summary = json_lines(stdout)
    assert (record["status"], record["reason"]) == (
        "failed",
        "interrupted (multipart upload aborted)",
    )
    assert summary["summary"]["interrupted"] is True
    assert not s3.list_multipart_uploads(Bucket=stack["bucket"], Prefix="ctrl-c/").get("Uploads")
    assert "Contents" not in s3.list_objects_v2(Bucket=stack["bucket"], Prefix="ctrl-c/")


def test_on_a_terminal_people_see_progress_errors_and_a_summary(
    local_env: dict[str, str], stack: dict[str, Any], tmp_path: Path
) -> None:
    folder = tmp_path / "terminal"
    gallery_folder(folder, 3)
    (folder / "empty.jpg").write_bytes(b"")
    stdout, stderr = io.StringIO(), io.StringIO()
    terminal = Streams(io.StringIO(), stdout, stderr, stdout_isatty=True, stderr_isatty=True)

    result = CliRunner().invoke(
        build_app(), ["upload", str(folder), "-r", "-p", "tty/"], env=local_env, obj=terminal
    )

    assert result.exit_code == ExitCode.SOME_FAILED, stderr.getvalue()
    messages = stderr.getvalue()
    assert f"{folder / 'empty.jpg'}: refused: empty file" in messages
    assert "uploaded 3 files" in messages
    assert "1 of 4 files not uploaded: 1 refused, 0 failed" in messages
    assert "3/3 files, " in messages  # the progress line, rendered on the "terminal"
    assert stdout.getvalue() == ""
