"""What the benchmark harness's modules share: paths and commands, settings, test data,
the local cloud and timed processes.

Importing it puts the repository on ``sys.path`` (the harness runs as
``python benchmarks/run.py``, which puts only ``benchmarks/`` there), so the modules that
import it first can import ``imgcli`` and ``tests``.

Every client is timed as a process (interpreter start-up included) and its peak memory is
the process's own ``ru_maxrss`` from ``wait4``. Between two clients the harness waits until
the stack has indexed what the previous one uploaded, so no client pays for another's
indexing; the local cloud's CPU time (its whole process group, Lambda workers included)
is sampled around each client to show when the local cloud, not the client, is the limit.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageChops

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from imgcli.lambdas.records import STATUS_INDEX  # noqa: E402
from imgcli.localcloud import process  # noqa: E402
from tests.images import noisy_jpeg  # noqa: E402
from tests.localstack import KEY, SECRET, bootstrap, local_client, local_cloud_env  # noqa: E402

BENCH = REPO / "benchmarks"
RESULTS = BENCH / "RESULTS.md"
AWS_VENV = BENCH / ".venv-awscli"
AWS = AWS_VENV / "bin" / "aws"
RAW = BENCH / "raw_client.py"
PYTHON = sys.executable
_console_script = Path(PYTHON).parent / "imgcli"
IMGCLI = [str(_console_script)] if _console_script.exists() else [PYTHON, "-m", "imgcli"]
TIME = Path("/usr/bin/time")
STARTED = time.perf_counter()


def log(message: str) -> None:
    print(f"[bench {time.perf_counter() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


# --- settings -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    smoke: bool
    rounds: int
    startup_rounds: int
    small_count: int
    medium_count: int
    medium_bytes: int
    large_count: int
    large_bytes: int
    many_count: int  # tiny files / index items for the memory and listing cases; 0 skips
    use_aws: bool
    photo_size: tuple[int, int]  # the photo-like JPEG's width and height


def settings(smoke: bool, rounds: int | None, use_aws: bool) -> Settings:
    if smoke:
        return Settings(
            True, rounds or 1, rounds or 1, 10, 2, 200_000, 0, 0, 0, use_aws, (400, 300)
        )
    return Settings(
        False,
        rounds or 3,
        max(rounds or 0, 10),
        1000,
        20,
        2_000_000,
        2,
        50_000_000,
        10_000,
        use_aws,
        (4000, 3000),
    )


# --- test data ----------------------------------------------------------------------------

_BYTES_PER_PIXEL: dict[int, float] = {}


def sized_jpeg(target_bytes: int, quality: int) -> bytes:
    """A noise JPEG of about ``target_bytes`` (noise compresses at a steady bytes/pixel)."""
    if quality not in _BYTES_PER_PIXEL:
        _BYTES_PER_PIXEL[quality] = len(noisy_jpeg(400, 300, quality)) / (400 * 300)
    pixels = target_bytes / _BYTES_PER_PIXEL[quality]
    width = max(8, int(math.sqrt(pixels * 4 / 3)))
    return noisy_jpeg(width, max(8, width * 3 // 4), quality)


def photo_like_jpeg(width: int, height: int) -> bytes:
    """A JPEG with a photo's structure (smooth areas, hard edges, fine grain) and camera
    EXIF, so that its size and decode time are a camera's, not a noise image's."""
    size = (width, height)
    shapes = Image.effect_mandelbrot(size, (-2.2, -1.2, 1.0, 1.2), 48)
    sky = Image.linear_gradient("L").resize(size)
    grain = Image.effect_noise(size, 24)
    image = Image.merge("RGB", (shapes, ImageChops.add(sky, grain, 2.0), grain))
    exif = Image.Exif()
    exif.update({0x010F: "imgcli-bench", 0x0110: "Photo-like 12 MP", 0x0132: "2026:11:27 12:00:00"})
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, exif=exif)
    return out.getvalue()


def write_files(folder: Path, count: int, target_bytes: int, quality: int, stem: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(count):
        (folder / f"{stem}{number:05d}.jpg").write_bytes(sized_jpeg(target_bytes, quality))
    return folder


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# --- the local cloud and timed processes ---------------------------------------------------


def group_cpu_seconds(group: int) -> float:
    """CPU time (user and system) of the processes in process group ``group``."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2 :].split()
        if int(fields[2]) == group:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def indexed_count(dynamodb: Any, table: str, prefix: str) -> int:
    """How many images under ``prefix`` the stack's index lists as active."""
    total = 0
    for page in dynamodb.get_paginator("query").paginate(
        TableName=table,
        IndexName=STATUS_INDEX,
        KeyConditionExpression="#s = :s AND begins_with(#k, :p)",
        ExpressionAttributeNames={"#s": "status", "#k": "key"},
        ExpressionAttributeValues={":s": {"S": "active"}, ":p": {"S": prefix}},
        Select="COUNT",
    ):
        total += int(page["Count"])
    return total


@dataclass
class Cloud:
    env: dict[str, str]
    stack: dict[str, Any]
    pid: int

    @property
    def endpoint(self) -> str:
        return str(self.stack["endpoint_url"])

    def client_env(self, base: Path) -> dict[str, str]:
        """Environment for boto3 and the AWS CLI: the local credentials and endpoint only."""
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IMGCLI_"))},
            "AWS_ACCESS_KEY_ID": KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_CONFIG_FILE": str(base / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(base / "no-aws-credentials"),
        }

    def cpu_seconds(self) -> float:
        """CPU time of the local cloud's process group (server and Lambda workers)."""
        return group_cpu_seconds(self.pid)

    def indexed(self, prefix: str) -> int:
        return indexed_count(local_client(self.stack, "dynamodb"), self.stack["table"], prefix)

    def settle(self, prefix: str, count: int, timeout: float = 180) -> None:
        """Wait until the stack has indexed ``count`` images under ``prefix``."""
        deadline = time.monotonic() + timeout
        while self.indexed(prefix) < count:
            if time.monotonic() > deadline:
                log(f"warning: {prefix} not fully indexed after {timeout:.0f} s")
                return
            time.sleep(0.25)


@dataclass(frozen=True)
class Run:
    seconds: float
    max_rss_mb: float
    cloud_cpu: float  # local cloud CPU seconds per wall second while the process ran
    stdout_lines: int


def timed(command: list[str], env: dict[str, str], cloud: Cloud | None = None) -> Run:
    """Run ``command`` to completion; its wall time, own peak RSS and the cloud's CPU use.

    The peak RSS comes from ``/usr/bin/time`` when present: Linux keeps a process's RSS
    high-water mark across fork and exec, so ``wait4`` on a direct child reports at least
    this harness's own peak (over 200 MB once the test data is generated).
    """
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r") as rss,
    ):
        if TIME.exists():
            command = [str(TIME), "-f", "%M", "-o", rss.name, *command]
        cpu_before = cloud.cpu_seconds() if cloud else 0.0
        started = time.perf_counter()
        child = subprocess.Popen(  # noqa: S603 - our own fixed commands
            command, env=env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        cpu = (cloud.cpu_seconds() - cpu_before) / seconds if cloud else 0.0
        if child.returncode != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(command)} exited {child.returncode}:\n{tail}")
        out.seek(0)
        lines = sum(1 for _ in out)
        peak_kb = int(rss.read().split()[-1]) if TIME.exists() else usage.ru_maxrss
    return Run(seconds, peak_kb / 1024, cpu, lines)


@contextlib.contextmanager
def local_cloud(base: Path, name: str) -> Iterator[Cloud]:
    directory = base / f"cloud-{name}"
    directory.mkdir(parents=True)
    log(f"starting local cloud '{name}' and bootstrapping its stack")
    with local_cloud_env(directory, "bench") as env:
        stack = bootstrap(env)
        pid = process.status(int(env["IMGCLI_LOCAL_PORT"]), env).pid
        assert pid is not None, "the local cloud is not running after bootstrap"
        log(f"local cloud '{name}' at {stack['endpoint_url']} (pid {pid})")
        yield Cloud(env, stack, pid)


#: Images the warm-up sends at once: more than the runtime's warm workers per function.
WARM_UP_IMAGES = 32


def warm_up(cloud: Cloud) -> None:
    """Index a burst of images before any client is timed (not before the listing case,
    whose clients must list exactly the items it wrote).

    The first events a fresh stack sees start its Lambda workers (each imports Pillow and
    boto3); measured without this, whichever client went first paid about 1.5 s for them
    (large files: imgcli took 2.7 and 2.8 s in round 1 of two runs, 1.5-2.0 s in rounds 2 and 3).
    """
    s3 = local_client(cloud.stack, "s3")
    body = noisy_jpeg(64, 48)

    def put(number: int) -> None:
        s3.put_object(Bucket=cloud.stack["bucket"], Key=f"warm-up/{number:03d}.jpg", Body=body)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(WARM_UP_IMAGES)))
    cloud.settle("warm-up/", WARM_UP_IMAGES)
