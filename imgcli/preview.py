"""``imgcli show KEY --preview``: the image's thumbnail drawn in the terminal.

Decisions:

* **Our own renderer, no dependency.** A half-block renderer is some forty lines over
  rich, which imgcli already uses: each cell is ``▀`` with the upper pixel as foreground
  and the lower one as background, so a cell is two square-ish pixels. rich picks the
  colour system (24-bit where ``COLORTERM`` says so, else 256 or 8 colours, each colour
  mapped down by rich). ``rich-pixels`` does the same with less control over alpha and
  fitting; ``term-image`` brings far more than this needs.
* **Fitted** to the terminal's width and to its height less two lines, never upscaled
  (a 16 px image stays 16 cells wide).
* **Alpha** is composited over a dark checkerboard (``CHECKER``), so transparency shows
  as such on the dark terminals most people use, instead of as black.
* **Graphics protocols** where detected (``detect_graphics``): kitty's
  (``TERM=xterm-kitty`` or ``KITTY_WINDOW_ID``) and iTerm2's inline images
  (``TERM_PROGRAM=iTerm.app``, or ``LC_TERMINAL=iTerm2``), each sent the 1,024 px
  thumbnail as PNG, sized in cells as the half-block drawing would be. Not inside tmux
  or screen (they swallow the escapes without passthrough), and only on a terminal.
  Sixel is not done: few terminals people use for this have it on by default.
* **Thumbnails only** (the 256 px one for half-blocks, it is already more pixels than
  the cells): never the original, which may be 50 MB. Fetched with the user's
  credentials from the thumbnails bucket, at most ``MAX_THUMBNAIL_BYTES``, opened as
  WebP, JPEG or PNG only, at most ``MAX_THUMBNAIL_SIDE`` px a side.
* **No thumbnail** is not a failure: the details were shown; the reason is said on stderr
  (the record's ``thumbnail_reason``, or "indexed before thumbnails: run imgcli
  reconcile") and the exit code stays 0. A thumbnail the record names but the bucket
  lacks is not drift ``reconcile`` sees (it compares records with the gallery bucket), so
  that hint is a restore, a new version the save function indexes anew.
* **A pipe** gets the drawing too, in 24-bit colour, since it was asked for by name
  (``imgcli show k --preview | less -R``); ``NO_COLOR`` gets a note instead, as blocks
  without colour show nothing.
"""

from __future__ import annotations

import base64
import io
import shlex
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal, TextIO

from imgcli.share_links import NoThumbnail, thumbnail_key, thumbnails_bucket_for

if TYPE_CHECKING:
    from PIL.Image import Image
    from rich.console import Console
    from rich.segment import Segment

    from imgcli.invocation import Invocation

GraphicsProtocol = Literal["kitty", "iterm2"]
UPPER_HALF: Final = "▀"
#: The thumbnail drawn with half-blocks, and the one sent to a graphics protocol.
HALF_BLOCK_BOX: Final = 256
GRAPHICS_BOX: Final = 1024
MAX_THUMBNAIL_BYTES: Final = 8 * 1024 * 1024
MAX_THUMBNAIL_SIDE: Final = 4096
#: Two dark greys in squares of CHECKER_PX pixels, behind transparent pixels.
CHECKER: Final = ((0x26, 0x26, 0x26), (0x3A, 0x3A, 0x3A))
CHECKER_PX: Final = 4
#: Lines kept free below the drawing (the prompt), and the fewest rows ever drawn.
SPARE_ROWS: Final = 2
MIN_ROWS: Final = 4
_KITTY_CHUNK: Final = 4096

RGB = tuple[int, int, int]


def detect_graphics(environ: Mapping[str, str]) -> GraphicsProtocol | None:
    """The inline-image protocol the terminal speaks, from its environment, or None."""
    if environ.get("TMUX") or environ.get("TERM", "").startswith("screen"):
        return None
    if environ.get("TERM") == "xterm-kitty" or environ.get("KITTY_WINDOW_ID"):
        return "kitty"
    if environ.get("TERM_PROGRAM") == "iTerm.app" or environ.get("LC_TERMINAL") == "iTerm2":
        return "iterm2"
    return None


def fitted_size(width: int, height: int, max_columns: int, max_rows: int) -> tuple[int, int]:
    """Pixels to draw a ``width`` x ``height`` image at with half-blocks: at most
    ``max_columns`` wide and ``2 * max_rows`` high, aspect kept, never upscaled."""
    scale = min(1.0, max_columns / width, 2 * max_rows / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def composited(pixel: tuple[int, int, int, int], x: int, y: int) -> RGB:
    """``pixel`` (RGBA) over the checkerboard at (x, y)."""
    red, green, blue, alpha = pixel
    if alpha == 255:
        return red, green, blue
    under = CHECKER[(x // CHECKER_PX + y // CHECKER_PX) % 2]
    return (
        (red * alpha + under[0] * (255 - alpha) + 127) // 255,
        (green * alpha + under[1] * (255 - alpha) + 127) // 255,
        (blue * alpha + under[2] * (255 - alpha) + 127) // 255,
    )


def half_block_lines(image: Image) -> list[list[Segment]]:
    """``image`` as lines of half-block cells, one per two pixel rows (a last odd row
    has the terminal's own background below it)."""
    from rich.color import Color
    from rich.segment import Segment
    from rich.style import Style

    rgba = image.convert("RGBA")
    width, height = rgba.size
    pixels = rgba.load()
    assert pixels is not None
    lines = []
    for top in range(0, height, 2):
        line = []
        for x in range(width):
            upper = composited(pixels[x, top], x, top)  # type: ignore[arg-type]
            lower = (
                Color.from_rgb(*composited(pixels[x, top + 1], x, top + 1))  # type: ignore[arg-type]
                if top + 1 < height
                else None
            )
            line.append(Segment(UPPER_HALF, Style(color=Color.from_rgb(*upper), bgcolor=lower)))
        lines.append(line)
    return lines


class HalfBlocks:
    """A rich renderable: the lines of ``half_block_lines``, each ended by a newline."""

    def __init__(self, image: Image) -> None:
        self.image = image

    def __rich_console__(self, console: Console, options: Any) -> Iterator[Segment]:
        from rich.segment import Segment

        for line in half_block_lines(self.image):
            yield from line
            yield Segment.line()


def kitty_escape(png: bytes, columns: int) -> str:
    """kitty's graphics protocol: transmit and show ``png``, ``columns`` cells wide."""
    data = base64.standard_b64encode(png).decode("ascii")
    chunks = [data[i : i + _KITTY_CHUNK] for i in range(0, len(data), _KITTY_CHUNK)] or [""]
    parts = []
    for index, chunk in enumerate(chunks):
        more = int(index < len(chunks) - 1)
        keys = f"a=T,f=100,q=2,c={columns},m={more}" if index == 0 else f"m={more}"
        parts.append(f"\x1b_G{keys};{chunk}\x1b\\")
    return "".join(parts) + "\n"


def iterm2_escape(png: bytes, columns: int) -> str:
    """iTerm2's inline image: ``png`` shown ``columns`` cells wide, aspect kept."""
    data = base64.standard_b64encode(png).decode("ascii")
    return (
        f"\x1b]1337;File=inline=1;size={len(png)};width={columns};preserveAspectRatio=1:"
        f"{data}\x07\n"
    )


def decoded_thumbnail(data: bytes) -> Image:
    """A thumbnail's bytes as an image: WebP, JPEG or PNG, bounded in size."""
    from PIL import Image as PILImage

    image = PILImage.open(io.BytesIO(data), formats=("WEBP", "JPEG", "PNG"))
    if max(image.size) > MAX_THUMBNAIL_SIDE:
        raise ValueError(f"a thumbnail of {image.size[0]}x{image.size[1]} px is not one")
    image.load()
    return image


def preview_console(stdout: TextIO, on_terminal: bool) -> Console:
    """A console on ``stdout``: the terminal's own colour system, 24-bit in a pipe."""
    from rich.console import Console

    return Console(
        file=stdout,
        force_terminal=True,
        color_system="auto" if on_terminal else "truecolor",
        highlight=False,
        emoji=False,
    )


def show_preview(run: Invocation, image: Mapping[str, Any]) -> None:
    """Draw ``image``'s thumbnail on stdout, or say on stderr why there is none."""
    streams = run.output.streams
    if streams.no_color:
        run.output.info("no preview: NO_COLOR is set, and blocks without colour show nothing")
        return
    protocol = detect_graphics(run.environ) if streams.stdout_isatty else None
    box = GRAPHICS_BOX if protocol else HALF_BLOCK_BOX
    try:
        key = thumbnail_key(image, box)
    except NoThumbnail as missing:
        hint = f" ({missing.hint})" if missing.hint else ""
        run.output.info(f"no preview: {missing.message}{hint}")
        return
    data = _fetched(run, thumbnails_bucket_for(run), key)
    if data is None:
        run.output.info(f"no preview: {missing_thumbnail_note(str(image.get('key', '')))}")
        return
    try:
        thumbnail = decoded_thumbnail(data)
    except (OSError, ValueError) as exc:  # PIL's UnidentifiedImageError is an OSError
        run.output.info(f"no preview: thumbnail '{key}' could not be read ({exc})")
        return
    draw(preview_console(streams.stdout, streams.stdout_isatty), thumbnail, protocol)


def missing_thumbnail_note(key: str) -> str:
    """Why there is no preview when the record names a thumbnail the bucket lacks, and
    what makes one: only a new version of the image (reconcile compares records with the
    gallery bucket and sees nothing to do; upload skips the same content)."""
    quoted = shlex.quote(key)
    return (
        "the thumbnail is missing from the thumbnails bucket; the stack makes thumbnails "
        f"when a version of the image is written: `imgcli restore {quoted} --version-id "
        f"VERSION` brings back an earlier one (`imgcli versions {quoted}` lists them)"
    )


def draw(console: Console, thumbnail: Image, protocol: GraphicsProtocol | None) -> None:
    """``thumbnail`` on ``console``, fitted to it, by ``protocol`` or with half-blocks."""
    max_rows = max(MIN_ROWS, console.size.height - SPARE_ROWS)
    columns, rows = fitted_size(*thumbnail.size, console.width, max_rows)
    if protocol is None:
        from PIL.Image import Resampling

        console.print(HalfBlocks(thumbnail.resize((columns, rows), Resampling.LANCZOS)))
        return
    png = io.BytesIO()
    thumbnail.save(png, format="PNG")
    escape = kitty_escape if protocol == "kitty" else iterm2_escape
    console.file.write(escape(png.getvalue(), columns))
    console.file.flush()


def _fetched(run: Invocation, bucket: str, key: str) -> bytes | None:
    from botocore.exceptions import ClientError

    s3 = run.aws().client("s3")
    try:
        answer = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    body = answer["Body"]
    try:
        data: bytes = body.read(MAX_THUMBNAIL_BYTES + 1)
    finally:
        body.close()
    if len(data) > MAX_THUMBNAIL_BYTES:
        return b""  # not a thumbnail of ours: decoded_thumbnail refuses it
    return data
