"""``imgcli show --preview`` and ``imgcli url --thumbnail`` on a local cloud of this module's
own, with the thumbnails the save function makes: drawn on a pseudo-terminal, linked for a
plain HTTP client; an image without thumbnails says why and still exits 0."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from PIL import Image
from typer.testing import CliRunner, Result

from imgcli.cli import app
from imgcli.errors import ExitCode
from tests.localstack import (
    REPO,
    api_of,
    bootstrap,
    eventually,
    local_client,
    local_cloud_env,
)

HTTP = urllib3.PoolManager(retries=False)
runner = CliRunner()
PICTURE = "p/picture one.png"
NOT_AN_IMAGE = "p/not-an-image.jpg"


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with local_cloud_env(tmp_path_factory.mktemp("preview"), "preview") as env:
        yield env


@pytest.fixture(scope="module")
def stack(stack_env: dict[str, str]) -> dict[str, Any]:
    return bootstrap(stack_env)


@pytest.fixture(scope="module")
def gallery(stack: dict[str, Any]) -> dict[str, Any]:
    """A 600 x 300 picture (red left half, blue right half) and an object that is not one."""
    picture = Image.new("RGB", (600, 300), (255, 0, 0))
    picture.paste((0, 0, 255), (300, 0, 600, 300))
    out = io.BytesIO()
    picture.save(out, format="PNG")
    s3 = local_client(stack, "s3")
    s3.put_object(Bucket=stack["bucket"], Key=PICTURE, Body=out.getvalue())
    s3.put_object(Bucket=stack["bucket"], Key=NOT_AN_IMAGE, Body=b"hello")
    api = api_of(stack)
    eventually(lambda: api.get_image(NOT_AN_IMAGE) is not None)
    eventually(lambda: bool((api.get_image(PICTURE) or {}).get("thumbnails")))
    return stack


def imgcli(env: dict[str, str], *args: str) -> Result:
    return runner.invoke(app, list(args), env=env)


@pytest.mark.parametrize(("box", "size"), [("256", (256, 128)), ("1024", (600, 300))])
def test_a_thumbnail_link_opens_the_thumbnail(
    stack_env: dict[str, str], gallery: dict[str, Any], box: str, size: tuple[int, int]
) -> None:
    result = imgcli(stack_env, "url", PICTURE, "--thumbnail", box, "--json")

    assert result.exit_code == 0, result.stderr
    link = json.loads(result.stdout)
    assert link["bucket"] == gallery["thumbnails_bucket"]
    assert link["image_key"] == PICTURE  # "key" is the thumbnail's own, hashed key
    record = api_of(gallery).get_image(PICTURE)
    assert record is not None and link["key"] == record["thumbnails"][box]["key"]
    opened = HTTP.request("GET", link["url"])
    assert opened.status == 200
    assert opened.headers["Content-Type"] == "image/webp"  # stored as an image: served so
    thumbnail = Image.open(io.BytesIO(opened.data))
    assert thumbnail.format == "WEBP"
    assert thumbnail.size == size  # never upscaled


def test_an_image_without_a_thumbnail_has_no_thumbnail_link(
    stack_env: dict[str, str], gallery: dict[str, Any]
) -> None:
    result = imgcli(stack_env, "url", NOT_AN_IMAGE, "--thumbnail", "256")

    assert result.exit_code == ExitCode.SOME_FAILED
    assert "could not read it as an image" in result.stderr
    assert result.stdout == ""


def test_preview_without_a_thumbnail_says_why_and_exits_0(
    stack_env: dict[str, str], gallery: dict[str, Any]
) -> None:
    result = imgcli(stack_env, "show", NOT_AN_IMAGE, "--preview")

    assert result.exit_code == 0, result.stderr
    assert NOT_AN_IMAGE in result.stdout  # the details were shown
    assert "no preview" in result.stderr
    assert "could not read it as an image" in result.stderr


def test_a_thumbnail_gone_from_its_bucket_says_what_makes_it_again(
    stack_env: dict[str, str], gallery: dict[str, Any]
) -> None:
    key = "p/lost thumbnail's.png"
    picture = io.BytesIO()
    Image.new("RGB", (40, 30), (0, 200, 0)).save(picture, format="PNG")
    local_client(gallery, "s3").put_object(
        Bucket=gallery["bucket"], Key=key, Body=picture.getvalue()
    )
    api = api_of(gallery)
    eventually(lambda: bool((api.get_image(key) or {}).get("thumbnails")))
    thumbnails = (api.get_image(key) or {})["thumbnails"]
    local_client(gallery, "s3").delete_object(
        Bucket=gallery["thumbnails_bucket"], Key=thumbnails["256"]["key"]
    )

    result = imgcli(stack_env, "show", key, "--preview")

    assert result.exit_code == 0, result.stderr
    assert "missing from the thumbnails bucket" in result.stderr
    # reconcile compares records with the gallery bucket: it would report this key unchanged.
    assert "reconcile" not in result.stderr
    commands = [shlex.split(command) for command in re.findall(r"`([^`]*)`", result.stderr)]
    assert ["imgcli", "restore", key, "--version-id", "VERSION"] in commands
    assert ["imgcli", "versions", key] in commands


def test_preview_with_json_is_a_usage_error(
    stack_env: dict[str, str], gallery: dict[str, Any]
) -> None:
    result = imgcli(stack_env, "show", PICTURE, "--preview", "--json")

    assert result.exit_code == ExitCode.USAGE


def test_preview_draws_24_bit_half_blocks_on_a_pseudo_terminal(
    stack_env: dict[str, str], gallery: dict[str, Any]
) -> None:
    env = {**stack_env, "TERM": "xterm-256color", "COLORTERM": "truecolor", "COLUMNS": "80"}
    for name in ("NO_COLOR", "KITTY_WINDOW_ID", "TERM_PROGRAM", "LC_TERMINAL", "TMUX"):
        env.pop(name, None)
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "imgcli", "show", PICTURE, "--preview"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=terminal,
            stderr=subprocess.PIPE,
        )
        os.close(terminal)
        terminal = -1
        shown = _read_all(controller)
        _, stderr = process.communicate(timeout=120)
    finally:
        os.close(controller)
        if terminal != -1:
            os.close(terminal)

    assert process.returncode == 0, stderr
    assert "picture one.png" in shown
    assert "▀" in shown
    # 24-bit SGR colours (foreground 38;2, background 48;2), near enough to the picture's
    # red and blue halves: the thumbnail is lossy WebP.
    assert "\x1b[38;2;" in shown
    colours = {
        (layer, tuple(int(c) for c in rgb.split(";")))
        for layer, rgb in re.findall(r"(38|48);2;(\d+;\d+;\d+)", shown)
    }
    assert any(layer == "38" and near(rgb, (255, 0, 0)) for layer, rgb in colours)
    assert any(layer == "48" and near(rgb, (0, 0, 255)) for layer, rgb in colours)


def near(rgb: tuple[int, ...], expected: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 24 for a, b in zip(rgb, expected, strict=True))


def _read_all(descriptor: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(descriptor, 65536)
        except OSError:  # EIO: the writer is gone and everything was read
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")
