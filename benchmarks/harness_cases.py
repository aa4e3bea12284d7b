"""The cases of the benchmark harness: imgcli timed against raw boto3 (``raw_client.py``)
and, when installed, the AWS CLI.

Every case runs for several rounds with the compared clients back to back in each round
(fresh key prefixes per round and client, the client order rotated per round) and adds its
rows and notes to the report.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from harness import (
    AWS,
    IMGCLI,
    PYTHON,
    RAW,
    Cloud,
    Run,
    Settings,
    folder_bytes,
    log,
    timed,
    write_files,
)
from harness_report import Report, Row, rate_row, secs, time_row
from PIL import Image

from imgcli.lambdas.image_metadata import FULL_DECODE_BYTES, describe_image
from imgcli.lambdas.logs import JsonLogger
from imgcli.lambdas.records import ImageRecord, to_item
from imgcli.lambdas.save_delete import Indexer, process_event
from tests.eventdata import load_event
from tests.localstack import local_client


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
            describe_image(io.BytesIO(data), len(data))
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
                bucket=bucket,
                thumbnails_bucket=cloud.stack["thumbnails_bucket"],
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
