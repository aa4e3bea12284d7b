"""The benchmark harness (issue 6): imgcli against raw boto3 and the AWS CLI, in one run.

``make bench`` runs this with the project's venv. It installs ``awscli`` into
``benchmarks/.venv-awscli`` when missing, starts private local clouds on free ports with a
bootstrapped stack (a fresh one per group of cases, since the local cloud's cost grows with
its state), generates the test data with Pillow under a temporary directory, runs every
case for several rounds with the compared clients back to back in each round (fresh key
prefixes per round and client, the client order rotated per round), prints a Markdown table
to stdout and writes it into ``benchmarks/RESULTS.md`` as the ``## make bench`` section.

Every client is timed as a process (interpreter start-up included) and its peak memory is
the process's own ``ru_maxrss`` from ``wait4``. Between two clients the harness waits until
the stack has indexed what the previous one uploaded, so no client pays for another's
indexing; the local cloud's CPU time (its whole process group, Lambda workers included)
is sampled around each client to show when the local cloud, not the client, is the limit.

Usage: ``.venv/bin/python benchmarks/run.py [--smoke] [--rounds N] [--output PATH]``.
``--smoke`` runs tiny data for one round, skips the 10,000-item cases and the AWS CLI when
its venv is missing, and writes no file unless ``--output`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from PIL import Image, ImageChops

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from imgcli.lambdas.image_metadata import FULL_DECODE_BYTES, describe_image  # noqa: E402
from imgcli.lambdas.logs import JsonLogger  # noqa: E402
from imgcli.lambdas.records import STATUS_INDEX, ImageRecord, to_item  # noqa: E402
from imgcli.lambdas.save_delete import Indexer, process_event  # noqa: E402
from imgcli.localcloud import process  # noqa: E402
from tests.eventdata import load_event  # noqa: E402
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
SECTION = "## make bench"
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
        ticks = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            fields = text[text.rfind(")") + 2 :].split()
            if int(fields[2]) == self.pid:
                ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def indexed(self, prefix: str) -> int:
        dynamodb = local_client(self.stack, "dynamodb")
        total = 0
        for page in dynamodb.get_paginator("query").paginate(
            TableName=self.stack["table"],
            IndexName=STATUS_INDEX,
            KeyConditionExpression="#s = :s AND begins_with(#k, :p)",
            ExpressionAttributeNames={"#s": "status", "#k": "key"},
            ExpressionAttributeValues={":s": {"S": "active"}, ":p": {"S": prefix}},
            Select="COUNT",
        ):
            total += int(page["Count"])
        return total

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


# --- results --------------------------------------------------------------------------------


@dataclass
class Row:
    case: str
    imgcli: str
    comparison: str
    ratio: float | None
    spread: str
    target: str
    met: bool | None

    def markdown(self) -> str:
        ratio = "—" if self.ratio is None else f"{self.ratio:.2f}"
        met = {True: "yes", False: "**no**", None: "—"}[self.met]
        return (
            f"| {self.case} | {self.imgcli} | {self.comparison} | {ratio} | {self.spread} "
            f"| {self.target} | {met} |"
        )


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cpu: dict[str, list[float]] = field(default_factory=dict)  # local cloud CPU, by run

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(row.markdown(), file=sys.stderr, flush=True)

    def table(self) -> str:
        lines = [
            "| case | imgcli median | comparison median | ratio median | spread | target | met? |",
            "|---|---:|---:|---:|---:|---|---|",
        ]
        return "\n".join(lines + [row.markdown() for row in self.rows])


def secs(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s"


def rate_row(case: str, mine: list[float], theirs: list[float], name: str, minimum: float) -> Row:
    """Throughput ratio per round (their time / my time): higher is better for imgcli."""
    return _ratio_row(
        case,
        mine,
        theirs,
        name,
        f"throughput ≥ {minimum:g} x {name}",
        [t / m for m, t in zip(mine, theirs, strict=True)],
        lambda ratio: ratio >= minimum,
    )


def time_row(case: str, mine: list[float], theirs: list[float], name: str, maximum: float) -> Row:
    """Time ratio per round (my time / their time): lower is better for imgcli."""
    return _ratio_row(
        case,
        mine,
        theirs,
        name,
        f"time ≤ {maximum:g} x {name}",
        [m / t for m, t in zip(mine, theirs, strict=True)],
        lambda ratio: ratio <= maximum,
    )


def _ratio_row(
    case: str,
    mine: list[float],
    theirs: list[float],
    name: str,
    target: str,
    ratios: list[float],
    met: Callable[[float], bool],
) -> Row:
    ratio = statistics.median(ratios)
    return Row(
        case,
        secs(mine),
        f"{secs(theirs)} ({name})",
        ratio,
        f"{min(ratios):.2f}-{max(ratios):.2f}",
        target,
        met(ratio),
    )


# --- cases ---------------------------------------------------------------------------------


@dataclass
class Bench:
    config: Settings
    base: Path
    report: Report

    def clients(self) -> list[str]:
        return ["imgcli", "raw", "aws"] if self.config.use_aws else ["imgcli", "raw"]

    def upload_command(self, client: str, cloud: Cloud, folder: Path, prefix: str) -> list[str]:
        bucket = cloud.stack["bucket"]
        if client == "imgcli":
            return [*IMGCLI, "--quiet", "upload", "--recursive", str(folder), "--prefix", prefix]
        if client == "raw":
            return [PYTHON, str(RAW), "put", str(folder), bucket, prefix]
        return [
            str(AWS),
            "s3",
            "cp",
            "--recursive",
            "--quiet",
            str(folder),
            f"s3://{bucket}/{prefix}",
            "--endpoint-url",
            cloud.endpoint,
        ]

    def env_for(self, client: str, cloud: Cloud) -> dict[str, str]:
        return cloud.env if client == "imgcli" else cloud.client_env(self.base)

    def uploads(self, cloud: Cloud, label: str, folder: Path, tag: str) -> dict[str, list[float]]:
        """Each client uploads ``folder`` once per round; their times, by client."""
        count = sum(1 for p in folder.rglob("*") if p.is_file())
        times: dict[str, list[float]] = {client: [] for client in self.clients()}
        for number in range(self.config.rounds):
            order = self.clients()
            order = order[number % len(order) :] + order[: number % len(order)]
            for client in order:
                prefix = f"{tag}/r{number}/{client}/"
                run = timed(
                    self.upload_command(client, cloud, folder, prefix),
                    self.env_for(client, cloud),
                    cloud,
                )
                times[client].append(run.seconds)
                self.report.cpu.setdefault(f"{label}: {client}", []).append(run.cloud_cpu)
                log(
                    f"{label} round {number + 1}: {client} {run.seconds:.2f} s, "
                    f"local cloud CPU {run.cloud_cpu * 100:.0f} %"
                )
                cloud.settle(prefix, count)
        return times

    def small_uploads(self, cloud: Cloud, folder: Path) -> None:
        n = self.config.small_count
        label = f"upload {n:,} x 20 KB"
        times = self.uploads(cloud, label, folder, "small")
        self.report.add(rate_row(label, times["imgcli"], times["raw"], "raw boto3", 0.9))
        if "aws" in times:
            self.report.add(rate_row(label, times["imgcli"], times["aws"], "aws s3 cp", 1.0))

        # Re-upload: everything is present under each round's prefixes.
        again: dict[str, list[float]] = {"imgcli": [], "aws": []}
        for number in range(self.config.rounds):
            mine = f"small/r{number}/imgcli/"
            run = timed(
                [*IMGCLI, "--quiet", "upload", "--recursive", str(folder), "--prefix", mine],
                cloud.env,
                cloud,
            )
            again["imgcli"].append(run.seconds)
            if self.config.use_aws:
                theirs = f"s3://{cloud.stack['bucket']}/small/r{number}/aws/"
                sync = [str(AWS), "s3", "sync", str(folder), theirs, "--endpoint-url"]
                run = timed([*sync, cloud.endpoint], cloud.client_env(self.base), cloud)
                again["aws"].append(run.seconds)
            log(f"re-upload round {number + 1}: " + str({k: v[-1:] for k, v in again.items()}))
        case = f"re-upload {n:,} x 20 KB, all present"
        if again["aws"]:
            self.report.add(time_row(case, again["imgcli"], again["aws"], "aws s3 sync", 1.0))
        self.report.add(
            time_row(case, again["imgcli"], times["imgcli"], "imgcli first upload", 0.2)
        )

    def large_uploads(self, cloud: Cloud, folder: Path) -> None:
        config = self.config
        label = f"upload {config.medium_count} x {config.medium_bytes / 1e6:g} MB"
        if config.large_count:
            label += f" + {config.large_count} x {config.large_bytes / 1e6:g} MB"
        times = self.uploads(cloud, label, folder, "large")
        mb = folder_bytes(folder) / 1e6
        self.report.notes.append(
            f"{label}: {mb:.1f} MB per client; imgcli at "
            f"{mb / statistics.median(times['imgcli']):.1f} MB/s (median)."
        )
        self.report.add(rate_row(label, times["imgcli"], times["raw"], "raw boto3", 0.9))
        if "aws" in times:
            self.report.add(rate_row(label, times["imgcli"], times["aws"], "aws s3 cp", 2.0))

    def check_time(self, photo: Path) -> None:
        """The upload's Pillow check of one 12 MP photo, against decoding it in full."""
        data = photo.read_bytes()
        quick: list[float] = []
        full: list[float] = []
        for _ in range(max(self.config.rounds, 10)):
            started = time.perf_counter()
            describe_image(io.BytesIO(data), len(data), full_decode_bytes=0)
            quick.append(time.perf_counter() - started)
            started = time.perf_counter()
            with Image.open(io.BytesIO(data)) as image:
                image.load()
            full.append(time.perf_counter() - started)
        with Image.open(photo) as image:
            pixels = image.width * image.height
        ms = [value * 1000 for value in quick]
        case = f"upload's check of a {pixels / 1e6:.3g} MP photo-like JPEG"
        self.report.add(
            Row(f"{case} ({len(data) / 1e6:.1f} MB)",
                f"{statistics.median(ms):.2f} ms",
                f"{statistics.median(full) * 1000:.0f} ms (full decode)",
                statistics.median(quick) / statistics.median(full),
                f"{min(ms):.2f}-{max(ms):.2f} ms", "—", None)
        )  # fmt: skip

    def save_reads(self, cloud: Cloud, images: list[Path]) -> None:
        """Bytes the save function reads from S3 to index each image, by its own log line.

        The function's code runs here, in process, against the stack's local cloud: its log
        says what it read, which the deployed copy's asynchronous runs do not report back.
        """
        s3 = local_client(cloud.stack, "s3")
        bucket = cloud.stack["bucket"]
        for path in images:
            key = f"save-reads/{path.name}"
            data = path.read_bytes()
            put = s3.put_object(Bucket=bucket, Key=key, Body=data)
            event = load_event("s3_put")
            record = event["Records"][0]
            record["s3"]["bucket"] = {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"}
            record["s3"]["object"] = {
                "key": quote_plus(key, safe="/"),
                "size": len(data),
                "eTag": put["ETag"].strip('"'),
                "versionId": put["VersionId"],
                "sequencer": f"{time.time_ns():020X}",
            }
            lines = io.StringIO()
            indexer = Indexer(
                s3=s3,
                dynamodb=local_client(cloud.stack, "dynamodb"),
                table_name=cloud.stack["table"],
                log=JsonLogger("save_delete", stream=lines),
            )
            process_event(event, indexer)
            (described,) = [
                entry
                for entry in map(json.loads, lines.getvalue().splitlines())
                if entry["message"] == "described object"
            ]
            share = described["bytes_read"] / len(data)
            big = len(data) > FULL_DECODE_BYTES
            self.report.add(
                Row(f"save function on a {len(data) / 1e6:.1f} MB JPEG ({path.stem})",
                    f"{described['bytes_read']:,} bytes read in {described['requests']} "
                    + ("request" if described["requests"] == 1 else "requests"),
                    f"{len(data):,} bytes (the object)", share, "— (deterministic)",
                    "≤ 1 % of the object" if big else "— (decoded in full: under 16 MiB)",
                    share <= 0.01 if big else None)
            )  # fmt: skip

    def startup(self, cloud: Cloud) -> None:
        commands: dict[str, tuple[list[str], dict[str, str]]] = {
            "python -c pass": ([PYTHON, "-c", "pass"], cloud.env),
            "imgcli --version": ([*IMGCLI, "--version"], cloud.env),
            "imgcli --help": ([*IMGCLI, "--help"], cloud.env),
            "imgcli list": ([*IMGCLI, "list", "--prefix", "none/"], cloud.env),
        }
        if self.config.use_aws:
            commands["aws --version"] = ([str(AWS), "--version"], cloud.client_env(self.base))
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(self.config.startup_rounds):
            for name, (command, env) in commands.items():
                times[name].append(timed(command, env).seconds)
        log("start-up: " + ", ".join(f"{k} {statistics.median(v):.3f} s" for k, v in times.items()))
        help_times = times["imgcli --help"]
        median = statistics.median(help_times)
        spread = f"{min(help_times):.2f}-{max(help_times):.2f} s"
        if "aws --version" in times:
            aws = times["aws --version"]
            row = time_row("`imgcli --help` start-up", help_times, aws, "aws --version", 99)
            row.target, row.met = "≤ 0.2 s", median <= 0.2
            row.spread = spread
            self.report.add(row)
            row = time_row("`imgcli list` start-up (empty page)", times["imgcli list"], aws, "", 0)
            row.comparison, row.target, row.met = f"{secs(aws)} (aws --version)", "—", None
            self.report.add(row)
        else:
            self.report.add(
                Row("`imgcli --help` start-up", secs(help_times), "—", None, spread, "≤ 0.2 s",
                    median <= 0.2)
            )  # fmt: skip
        self.report.notes.append(
            "start-up medians over "
            f"{self.config.startup_rounds} runs: "
            + ", ".join(f"`{k}` {statistics.median(v) * 1000:.0f} ms" for k, v in times.items())
            + "."
        )

    def indexing(self, cloud: Cloud) -> None:
        from local_cloud import indexing_latencies, runtime_overhead

        os.environ.update({k: v for k, v in cloud.env.items() if k.startswith("IMGCLI_")})
        medians: list[float] = []
        p95s: list[float] = []
        overheads: list[float] = []
        for number in range(self.config.rounds):
            latencies = sorted(indexing_latencies(cloud.stack, number))
            if len(latencies) < 100:
                log(f"warning: only {len(latencies)} of 100 images listed within 60 s")
            medians.append(statistics.median(latencies))
            p95s.append(latencies[max(0, int(len(latencies) * 0.95) - 1)])
            warm, direct = runtime_overhead(self.base / f"runtime{number}")
            overheads.append(warm - direct)
            log(f"indexing round {number + 1}: median {medians[-1]:.2f} s, p95 {p95s[-1]:.2f} s")
        for name, values, limit in (
            ("upload → listed, median of 100 x 20 KB", medians, 0.5),
            ("upload → listed, 95th percentile", p95s, 2.0),
        ):
            median = statistics.median(values)
            self.report.add(
                Row(name, f"{median:.2f} s", "—", None,
                    f"{min(values):.2f}-{max(values):.2f} s", f"≤ {limit:g} s", median <= limit)
            )  # fmt: skip
        ms = [v * 1000 for v in overheads]
        self.report.add(
            Row("Lambda runtime overhead per warm invocation", f"{statistics.median(ms):.2f} ms",
                "—", None, f"{min(ms):.2f}-{max(ms):.2f} ms", "≤ 20 ms",
                statistics.median(ms) <= 20)
        )  # fmt: skip

    def listing(self, cloud: Cloud) -> None:
        n = self.config.many_count
        dynamodb = local_client(cloud.stack, "dynamodb")
        table = cloud.stack["table"]
        log(f"loading {n:,} index items into {table}")

        def item(number: int) -> dict[str, Any]:
            record = ImageRecord(
                key=f"list/{number:05d}.jpg",
                status="active",
                sequencer=f"{number:020X}",
                size=20_000 + number,
                etag=f'"{number:032x}"',
                content_type="image/jpeg",
                format="JPEG",
                width=172,
                height=129,
                mode="RGB",
                uploaded_at="2026-11-27T12:00:00Z",
                indexed_at="2026-11-27T12:00:01Z",
            )
            return {"PutRequest": {"Item": to_item(record)}}

        def write(start: int) -> None:
            batch = [item(k) for k in range(start, min(start + 25, n))]
            while batch:
                answer = dynamodb.batch_write_item(RequestItems={table: batch})
                batch = answer.get("UnprocessedItems", {}).get(table, [])

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(write, range(0, n, 25)))
        imgcli_env, raw_env = cloud.env, cloud.client_env(self.base)
        mine: list[float] = []
        theirs: list[float] = []
        rss: list[float] = []
        for number in range(self.config.rounds):
            pair = [
                ("imgcli", [*IMGCLI, "list", "--json"], imgcli_env),
                ("raw", [PYTHON, str(RAW), "scan", table], raw_env),
            ]
            for client, command, env in pair if number % 2 == 0 else pair[::-1]:
                run = timed(command, env, cloud)
                assert run.stdout_lines == n, f"{client} listed {run.stdout_lines} of {n}"
                (mine if client == "imgcli" else theirs).append(run.seconds)
                if client == "imgcli":
                    rss.append(run.max_rss_mb)
                self.report.cpu.setdefault(f"list {n:,}: {client}", []).append(run.cloud_cpu)
                log(f"list round {number + 1}: {client} {run.seconds:.2f} s")
        self.report.add(
            time_row(f"`imgcli list --json` of {n:,} images", mine, theirs, "raw Scan", 1.3)
        )
        small = timed([*IMGCLI, "list", "--json", "--prefix", "list/00"], imgcli_env)
        self.memory_row(f"peak RSS of `imgcli list` over {n:,} images", rss, small.max_rss_mb,
                        n // 10)  # fmt: skip

    def memory_row(self, case: str, big: list[float], small: float, small_n: int) -> None:
        median = statistics.median(big)
        growth = median / small
        self.report.add(
            Row(case, f"{median:.0f} MB", f"{small:.0f} MB (at {small_n:,})", growth,
                f"{min(big):.0f}-{max(big):.0f} MB", "≤ 150 MB, ≤ 1.25 x the smaller run",
                median <= 150 and growth <= 1.25)
        )  # fmt: skip

    def upload_memory(self, cloud: Cloud) -> None:
        n = self.config.many_count
        runs: dict[int, Run] = {}
        for count in (n // 10, n):
            folder = write_files(self.base / f"tiny{count}", count, 900, 90, "t")
            run = timed(
                [
                    *IMGCLI,
                    "--quiet",
                    "upload",
                    "--recursive",
                    str(folder),
                    "--prefix",
                    f"m{count}/",
                ],
                cloud.env,
                cloud,
            )
            runs[count] = run
            log(f"upload of {count:,} tiny files: {run.seconds:.1f} s, {run.max_rss_mb:.0f} MB")
        self.report.notes.append(
            f"`imgcli upload` of {n:,} tiny (~0.9 KB) files took {runs[n].seconds:.0f} s "
            f"({n / runs[n].seconds:.0f} files/s, one run; the stack indexing alongside)."
        )
        self.memory_row(f"peak RSS of `imgcli upload` over {n:,} files", [runs[n].max_rss_mb],
                        runs[n // 10].max_rss_mb, n // 10)  # fmt: skip


# --- main -----------------------------------------------------------------------------------


def ensure_awscli() -> bool:
    if AWS.exists():
        return True
    log(f"installing awscli from PyPI into {AWS_VENV.relative_to(REPO)}")
    try:
        subprocess.run([PYTHON, "-m", "venv", str(AWS_VENV)], check=True)  # noqa: S603
        pip = [str(AWS_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "awscli"]
        subprocess.run(pip, check=True)  # noqa: S603
    except (OSError, subprocess.CalledProcessError) as error:
        log(f"warning: could not install awscli ({error}); the AWS CLI comparisons are skipped")
        return False
    return AWS.exists()


def section(config: Settings, report: Report, command: str, wall: float) -> str:
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    cores = os.cpu_count()
    cpu_lines = [
        f"| {name} | {statistics.median(values) * 100:.0f} % | "
        f"{min(values) * 100:.0f}-{max(values) * 100:.0f} % |"
        for name, values in report.cpu.items()
    ]
    parts = [
        f"{SECTION} ({today}, {cores} cores, Python {platform.python_version()})",
        "",
        f"Command: `{command}` — {config.rounds} round(s) per case (start-up: "
        f"{config.startup_rounds}), total wall time {wall:.0f} s.",
        "",
        report.table(),
        "",
        "Ratios are per round (clients back to back on the same local cloud), then the median;"
        " spread is the range over rounds. Throughput ratio = comparison time / imgcli time"
        " (higher is better); time ratio = imgcli time / comparison time (lower is better)."
        " Every client is timed as a process, start-up included (peak RSS from"
        " `/usr/bin/time`); the harness waits for the"
        " stack to index one client's upload before the next client starts.",
        "",
        *[f"- {note}" for note in report.notes],
        "",
        "Local cloud CPU (its process group, Lambda workers included; 100 % = one core)"
        " while each client ran:",
        "",
        "| while | median | spread |",
        "|---|---:|---:|",
        *cpu_lines,
    ]
    return "\n".join(parts) + "\n"


def write_results(path: Path, text: str) -> None:
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    lines = old.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.startswith(SECTION)), None)
    if start is None:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        tail = "".join(lines[end:])
        new = "".join(lines[:start]) + text + ("\n" + tail if tail else "")
    path.write_text(new)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny data, one round, no file")
    parser.add_argument("--rounds", type=int, help="rounds per case (default 3; smoke 1)")
    parser.add_argument("--output", type=Path, help="results file (default benchmarks/RESULTS.md)")
    args = parser.parse_args(argv)
    use_aws = AWS.exists() if args.smoke else ensure_awscli()
    config = settings(args.smoke, args.rounds, use_aws)
    output: Path | None = args.output or (None if args.smoke else RESULTS)
    given = sys.argv[1:] if argv is None else argv
    command = " ".join(["make bench" if not given else "benchmarks/run.py", *given])
    report = Report()
    with tempfile.TemporaryDirectory(prefix="imgcli-bench-") as tmp:
        base = Path(tmp)
        bench = Bench(config, base, report)
        log("generating test data")
        small = write_files(base / "small", config.small_count, 20_000, 90, "s")
        large = write_files(base / "large", config.medium_count, config.medium_bytes, 95, "m")
        write_files(base / "large", config.large_count, config.large_bytes, 100, "L")
        photo = base / "photo" / "photo-12mp.jpg"
        photo.parent.mkdir()
        photo.write_bytes(photo_like_jpeg(*config.photo_size))
        log(f"test data: {folder_bytes(small) / 1e6:.1f} MB small, "
            f"{folder_bytes(large) / 1e6:.1f} MB large")  # fmt: skip

        # (name, warm up first, cases): a fresh local cloud per group.
        groups: list[tuple[str, bool, list[Callable[[Cloud], None]]]] = [
            ("small", True, [bench.startup, lambda cloud: bench.small_uploads(cloud, small)]),
            (
                "large",
                True,
                [
                    lambda cloud: bench.large_uploads(cloud, large),
                    lambda cloud: bench.save_reads(cloud, [*sorted(large.glob("L*")), photo]),
                ],
            ),
            ("indexing", True, [bench.indexing]),
        ]
        if config.many_count:
            groups.append(("many", False, [bench.listing, bench.upload_memory]))
        if config.smoke:  # one local cloud for everything: start-up costs more than the cases
            groups = [("all", True, [case for _, _, cases in groups for case in cases])]
        bench.check_time(photo)
        for name, warm, cases in groups:
            with local_cloud(base, name) as cloud:
                if warm:
                    warm_up(cloud)
                for case in cases:
                    case(cloud)
    wall = time.perf_counter() - STARTED
    text = section(config, report, command, wall)
    print(text)
    if output is not None:
        write_results(output, text)
        log(f"wrote {output}")
    log(f"done in {wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
