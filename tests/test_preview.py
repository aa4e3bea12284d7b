"""``imgcli.preview``: the half-block renderer (exact cells and colours), fitting, alpha,
graphics-protocol detection and escapes, and a drawing on a real pseudo-terminal."""

from __future__ import annotations

import base64
import io
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from rich.color import Color
from rich.console import Console
from rich.segment import Segment
from rich.style import Style

from imgcli.preview import (
    CHECKER,
    UPPER_HALF,
    composited,
    decoded_thumbnail,
    detect_graphics,
    draw,
    fitted_size,
    half_block_lines,
    iterm2_escape,
    kitty_escape,
)

REPO = Path(__file__).resolve().parents[1]


def cell(upper: tuple[int, int, int], lower: tuple[int, int, int] | None) -> Segment:
    bgcolor = None if lower is None else Color.from_rgb(*lower)
    return Segment(UPPER_HALF, Style(color=Color.from_rgb(*upper), bgcolor=bgcolor))


def test_a_4x4_image_is_two_lines_of_four_cells_upper_pixel_on_lower_pixel() -> None:
    image = Image.new("RGB", (4, 4))
    colours = {(x, y): (x * 60, y * 60, 7) for x in range(4) for y in range(4)}
    for xy, rgb in colours.items():
        image.putpixel(xy, rgb)

    lines = half_block_lines(image)

    assert lines == [
        [cell(colours[x, 0], colours[x, 1]) for x in range(4)],
        [cell(colours[x, 2], colours[x, 3]) for x in range(4)],
    ]


def test_an_odd_last_row_leaves_the_terminal_background_below() -> None:
    image = Image.new("RGB", (2, 3), (10, 20, 30))

    lines = half_block_lines(image)

    assert lines[1] == [cell((10, 20, 30), None)] * 2


def test_alpha_is_composited_over_the_dark_checkerboard() -> None:
    assert composited((200, 100, 50, 255), 0, 0) == (200, 100, 50)
    assert composited((200, 100, 50, 0), 0, 0) == CHECKER[0]
    assert composited((200, 100, 50, 0), 4, 0) == CHECKER[1]
    half = composited((255, 255, 255, 128), 0, 0)
    assert half == tuple((255 * 128 + c * 127 + 127) // 255 for c in CHECKER[0])


def test_a_transparent_image_is_drawn_as_the_checkerboard() -> None:
    lines = half_block_lines(Image.new("RGBA", (8, 2), (255, 0, 0, 0)))

    assert lines == [[cell(CHECKER[0], CHECKER[0])] * 4 + [cell(CHECKER[1], CHECKER[1])] * 4]


@pytest.mark.parametrize(
    ("size", "limits", "fitted"),
    [
        ((256, 192), (80, 40), (80, 60)),  # width decides
        ((192, 256), (200, 20), (30, 40)),  # height decides: two pixels a row
        ((16, 8), (80, 40), (16, 8)),  # never upscaled
        ((1000, 1), (10, 10), (10, 1)),  # never zero
    ],
)
def test_fitted_size(
    size: tuple[int, int], limits: tuple[int, int], fitted: tuple[int, int]
) -> None:
    assert fitted_size(*size, *limits) == fitted


def test_drawing_fits_the_console_and_degrades_to_its_colour_system() -> None:
    out = io.StringIO()
    console = Console(file=out, width=20, height=12, force_terminal=True, color_system="256")

    draw(console, Image.new("RGB", (256, 256), (255, 0, 0)), None)

    lines = out.getvalue().splitlines()
    # 12 rows less 2 for the prompt: 20 px high, and 20 columns wide, the square kept.
    assert len(lines) == 10
    assert all(line.count(UPPER_HALF) == 20 for line in lines)
    assert "\x1b[38;5;" in out.getvalue()
    assert "\x1b[38;2;" not in out.getvalue()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"TERM": "xterm-kitty"}, "kitty"),
        ({"TERM": "xterm-256color", "KITTY_WINDOW_ID": "1"}, "kitty"),
        ({"TERM_PROGRAM": "iTerm.app"}, "iterm2"),
        ({"LC_TERMINAL": "iTerm2"}, "iterm2"),
        ({"TERM": "xterm-256color", "COLORTERM": "truecolor"}, None),
        ({}, None),
        ({"TERM": "xterm-kitty", "TMUX": "/tmp/tmux-1/default,1,0"}, None),
        ({"TERM": "screen-256color", "TERM_PROGRAM": "iTerm.app"}, None),
    ],
)
def test_graphics_protocol_detection(environ: dict[str, str], expected: str | None) -> None:
    assert detect_graphics(environ) == expected


def test_kitty_escape_sends_the_png_in_chunks_sized_in_cells() -> None:
    png = bytes(range(256)) * 40  # 13,656 base64 characters: four chunks

    escape = kitty_escape(png, 30)

    chunks = escape.rstrip("\n").split("\x1b\\")[:-1]
    assert chunks[0].startswith("\x1b_Ga=T,f=100,q=2,c=30,m=1;")
    assert [c.split(";")[0][3:] for c in chunks[1:]] == ["m=1", "m=1", "m=0"]
    sent = "".join(c.split(";", 1)[1] for c in chunks)
    assert base64.standard_b64decode(sent) == png


def test_iterm2_escape_is_one_inline_file() -> None:
    escape = iterm2_escape(b"\x89PNG", 12)

    assert escape == (
        "\x1b]1337;File=inline=1;size=4;width=12;preserveAspectRatio=1:iVBORw==\x07\n"
    )


def test_only_small_webp_jpeg_or_png_thumbnails_are_opened() -> None:
    webp = io.BytesIO()
    Image.new("RGB", (3, 2)).save(webp, format="WEBP")
    assert decoded_thumbnail(webp.getvalue()).size == (3, 2)
    gif = io.BytesIO()
    Image.new("RGB", (3, 2)).save(gif, format="GIF")
    with pytest.raises(OSError):
        decoded_thumbnail(gif.getvalue())
    huge = io.BytesIO()
    Image.new("L", (5000, 1)).save(huge, format="PNG")
    with pytest.raises(ValueError):
        decoded_thumbnail(huge.getvalue())


DRAW_ON_TERMINAL = """
import io, sys
from PIL import Image
from imgcli.preview import draw, preview_console
image = Image.new("RGB", (8, 8), (250, 100, 20))
draw(preview_console(sys.stdout, sys.stdout.isatty()), image, None)
"""


def test_a_pseudo_terminal_with_colorterm_truecolor_gets_24_bit_half_blocks() -> None:
    controller, terminal = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor", "COLUMNS": "80"}
    env.pop("NO_COLOR", None)
    try:
        process = subprocess.run(
            [sys.executable, "-c", DRAW_ON_TERMINAL],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=terminal,
            stderr=subprocess.PIPE,
            timeout=60,
        )
        os.close(terminal)
        terminal = -1
        shown = _read_all(controller)
    finally:
        os.close(controller)
        if terminal != -1:
            os.close(terminal)

    assert process.returncode == 0, process.stderr
    assert UPPER_HALF in shown
    assert "\x1b[38;2;250;100;20" in shown


def _read_all(descriptor: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(descriptor, 65536)
        except OSError:  # EIO: the other end is closed and everything was read
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")
