"""What the save function's image work costs: describe_image, then make_thumbnails.

Issue 14 asks for the time and peak memory of thumbnails for a 12-megapixel JPEG, a 50 MB
JPEG, a 4,000 x 4,000 PNG and a 200-frame GIF. Each image is generated once into a
temporary folder; each measurement runs in a fresh Python process, as the local cloud's
runtime runs a function in a fresh worker process, which reads the whole file into memory
(the save function holds the object's bytes), describes it, then makes its thumbnails. The
child reports its own times and its peak RSS (``ru_maxrss``) after the imports and at the
end; the table shows medians of three runs.

The "50 MB JPEG" is 7,500 x 5,600 pixels of noise at quality 95: 42 megapixels, the most
that makes 50 MB while staying under Pillow's pixel limit (89.5 megapixels; a 16,000 x
12,000 JPEG is a decompression bomb to the check and never reaches the thumbnails).

Run from the repository root: ``.venv/bin/python benchmarks/thumbnail_cost.py``
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RUNS = 3


def noisy_jpeg(width: int, height: int, quality: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(
        out, format="JPEG", quality=quality
    )
    return out.getvalue()


def textured(width: int, height: int) -> Image.Image:
    """Gradients with noise in their low four bits: compresses about as a photo does."""
    from PIL import Image, ImageChops

    gradient = Image.linear_gradient("L").resize((width, height))
    pixels = width * height
    noise = Image.frombytes("L", (width, height), bytes(b & 0x0F for b in os.urandom(pixels)))
    red = ImageChops.add(gradient, noise)
    return Image.merge("RGB", (red, gradient.transpose(Image.Transpose.ROTATE_180), noise))


def photo_like_jpeg(width: int, height: int) -> bytes:
    out = io.BytesIO()
    textured(width, height).save(out, format="JPEG", quality=90)
    return out.getvalue()


def screenshot_png(size: int = 4000) -> bytes:
    out = io.BytesIO()
    textured(size, size).save(out, format="PNG")
    return out.getvalue()


def long_gif(frames: int = 200, size: tuple[int, int] = (480, 270)) -> bytes:
    from PIL import Image

    pixels = size[0] * size[1]
    images = [Image.frombytes("L", size, os.urandom(pixels)).convert("P") for _ in range(frames)]
    out = io.BytesIO()
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:], duration=40)
    return out.getvalue()


CASES: dict[str, Callable[[], bytes]] = {
    "12 MP JPEG (4,000 x 3,000, textured, q90)": lambda: photo_like_jpeg(4000, 3000),
    "12 MP JPEG (4,000 x 3,000, noise, q90)": lambda: noisy_jpeg(4000, 3000, 90),
    "50 MB JPEG (7,500 x 5,600, noise, q95)": lambda: noisy_jpeg(7500, 5600, 95),
    "4,000 x 4,000 PNG (textured)": screenshot_png,
    "200-frame GIF (480 x 270)": long_gif,
}


def peak_rss_mb() -> float:
    """This process's peak RSS. Linux's ``ru_maxrss`` survives ``exec`` (a child started
    by a big parent reports the parent's peak), so ``VmHWM`` is read where there is one."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(path: str) -> None:
    """Measure one image in this (fresh) process; print one JSON line."""
    from imgcli.lambdas.image_metadata import describe_image
    from imgcli.lambdas.thumbnails import make_thumbnails

    after_imports = peak_rss_mb()
    started = time.perf_counter()
    data = Path(path).read_bytes()
    details = describe_image(io.BytesIO(data), len(data))
    described = time.perf_counter()
    made = make_thumbnails(io.BytesIO(data), len(data))
    finished = time.perf_counter()
    peak = peak_rss_mb()
    print(
        json.dumps(
            {
                "describe_s": described - started,
                "thumbnails_s": finished - described,
                "imports_rss_mb": after_imports,
                "peak_rss_mb": peak,
                "size": f"{details.width}x{details.height}, {details.frames} frame(s)",
                "thumbnail_bytes": [len(t.data) for t in made],
            }
        )
    )


def measure(path: Path) -> dict[str, object]:
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, __file__, "--child", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=RUNS)
    arguments = parser.parse_args()
    if arguments.child:
        child(arguments.child)
        return
    print(
        "| image | file | describe_image s | make_thumbnails s | peak RSS MB "
        "(after imports) | thumbnails bytes (256, 1024) |"
    )
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for name, build in CASES.items():
            path = Path(folder) / "image"
            path.write_bytes(build())
            runs = [measure(path) for _ in range(arguments.runs)]

            def median(field: str, runs: list[dict[str, object]] = runs) -> float:
                return statistics.median(float(str(run[field])) for run in runs)

            print(
                f"| {name} | {path.stat().st_size / 1e6:.1f} MB, {runs[0]['size']} | "
                f"{median('describe_s'):.3f} | {median('thumbnails_s'):.3f} | "
                f"{median('peak_rss_mb'):.0f} ({median('imports_rss_mb'):.0f}) | "
                f"{runs[0]['thumbnail_bytes']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
