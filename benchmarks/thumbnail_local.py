"""What thumbnails cost in the local cloud's Lambda runtime, as its REPORT lines say.

Issue 14 asks for the time and peak memory of the save function for a 12 MP JPEG, a
50 MB JPEG, a 4,000 x 4,000 PNG and a 200-frame GIF, measured in the local runtime
(``thumbnail_cost.py`` measures the same work outside it). On a private local cloud and
stack, each image (``thumbnail_cost``'s generators) is PUT with plain boto3 to a key of
its own, and once its record names its thumbnails, the save function's log for that
invocation is read back with ``imgcli logs save --json``: the REPORT line's Duration
and Max Memory Used, and the function's own "described object" and "made thumbnails"
lines (milliseconds of each step).

**A fresh worker for every image.** A warm worker's Max Memory Used is a high-water mark
of every invocation it served, so each image would otherwise inherit the peak of those
before it. The runtime starts new workers when a function's configuration changes
(``runtime``: a pool belongs to one configuration), so before each image the benchmark
sets a variable of its own (``IMGCLI_BENCH_ROUND``) in the function's environment, the
other variables kept. The image's invocation is then a cold start (its REPORT has an Init
Duration, which is not part of Duration).

**Two peaks, because the REPORT's is not the worker's own.** ``worker.py`` reports
``ru_maxrss``, and Linux keeps that across ``exec``: ``subprocess.Popen`` starts a worker
with ``vfork``, so the exec'd worker inherits the local cloud server's *own* peak RSS as
its starting high-water mark (a plain ``fork`` would pass the server's RSS at the fork).
The server holds every object it stores, so after a 50 MB upload its peak dwarfs the
worker's. The table therefore also shows the worker's ``VmHWM`` read from
``/proc/<worker>/status`` right after the invocation (the worker stays alive, idle in its
pool; ``VmHWM`` belongs to the address space, which ``exec`` replaces) and the server's
own ``VmHWM``: the worker's figure is the one to trust. Linux only.

Run from the repository root: ``.venv/bin/python benchmarks/thumbnail_local.py [--runs 3]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import Cloud, local_cloud, log
from local_cloud import worker_pids
from thumbnail_cost import long_gif, noisy_jpeg, photo_like_jpeg, screenshot_png

from tests.localstack import local_client

BENCH_VARIABLE = "IMGCLI_BENCH_ROUND"
#: Smallest first (a warm worker would then at least grow monotonically).
CASES: dict[str, Callable[[], bytes]] = {
    "200-frame GIF (480 x 270, noise)": long_gif,
    "12 MP JPEG (4,000 x 3,000, textured, q90)": lambda: photo_like_jpeg(4000, 3000),
    "4,000 x 4,000 PNG (textured)": screenshot_png,
    "50 MB JPEG (7,500 x 5,600, noise, q95)": lambda: noisy_jpeg(7500, 5600, 95),
}


@dataclass(frozen=True)
class Measured:
    """One image's invocation, as its log and ``/proc`` tell it."""

    duration_ms: float
    report_memory_mb: int
    init_ms: float
    describe_ms: float
    thumbnails_ms: float
    #: Bytes of the object the invocation fetched (the check's ranges, then the rest) and
    #: the check's GET requests.
    bytes_read: int
    requests: int
    worker_hwm_mb: float
    server_hwm_mb: float


def fresh_workers(cloud: Cloud, round_id: str) -> None:
    """Change the save function's configuration, so its next invocation starts a worker."""
    functions = local_client(cloud.stack, "lambda")
    name = cloud.stack["functions"]["save_delete"]
    variables = functions.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
    variables[BENCH_VARIABLE] = round_id
    functions.update_function_configuration(FunctionName=name, Environment={"Variables": variables})


def wait_for_thumbnails(cloud: Cloud, key: str, timeout_s: float = 300) -> dict[str, Any]:
    dynamodb = local_client(cloud.stack, "dynamodb")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        item: dict[str, Any] = dynamodb.get_item(
            TableName=cloud.stack["table"], Key={"key": {"S": key}}, ConsistentRead=True
        ).get("Item", {})
        if "thumbnails" in item or "thumbnail_reason" in item:
            return item
        time.sleep(0.2)
    raise RuntimeError(f"{key}: not indexed with thumbnails within {timeout_s:.0f} s")


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def save_worker_hwm_mb(cloud: Cloud) -> float:
    """The save function's live worker's own peak RSS (the largest, if there are more)."""
    name = cloud.stack["functions"]["save_delete"].encode()
    peaks = []
    for pid in worker_pids(cloud.pid):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if b"AWS_LAMBDA_FUNCTION_NAME=" + name in environ:
                peaks.append(vm_hwm_mb(pid))
        except OSError:
            continue  # a retired worker that exited meanwhile
    if not peaks:
        raise RuntimeError("no live worker of the save function")
    return max(peaks)


def function_log(cloud: Cloud) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "imgcli", "logs", "save", "--json", "--since", "2h"],
        env=cloud.env,
        capture_output=True,
        text=True,
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


def report_fields(message: str) -> dict[str, str]:
    """``REPORT RequestId: x\\tDuration: 1.00 ms\\t...`` as {"Duration": "1.00 ms", ...}."""
    fields: dict[str, str] = {}
    for part in message.removeprefix("REPORT ").split("\t"):
        name, _, value = part.partition(": ")
        fields[name] = value
    return fields


def measured(lines: list[dict[str, Any]], key: str, worker_mb: float, server_mb: float) -> Measured:
    steps = {
        line["record"]["message"]: line["record"]
        for line in lines
        if (line.get("record") or {}).get("key") == key
        and line["record"].get("message") in ("described object", "made thumbnails")
    }
    request_id = steps["made thumbnails"]["request_id"]
    report = next(
        report_fields(line["message"])
        for line in lines
        if line["message"].startswith(f"REPORT RequestId: {request_id}")
    )
    return Measured(
        duration_ms=float(report["Duration"].split()[0]),
        report_memory_mb=int(report["Max Memory Used"].split()[0]),
        init_ms=float(report.get("Init Duration", "0 ms").split()[0]),
        describe_ms=float(steps["described object"]["ms"]),
        thumbnails_ms=float(steps["made thumbnails"]["ms"]),
        bytes_read=int(steps["described object"]["bytes_read"])
        + int(steps["made thumbnails"]["bytes_read"]),
        requests=int(steps["described object"]["requests"]),
        worker_hwm_mb=worker_mb,
        server_hwm_mb=server_mb,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    images = {}
    for name, build in CASES.items():
        log(f"generating {name}")
        images[name] = build()
    peaks: dict[tuple[str, int], tuple[float, float]] = {}
    with (
        tempfile.TemporaryDirectory() as temporary,
        local_cloud(Path(temporary), "thumbs") as cloud,
    ):
        s3 = local_client(cloud.stack, "s3")
        for run in range(runs):
            for number, (name, data) in enumerate(images.items()):
                key = f"bench/{run}/{number}"
                fresh_workers(cloud, f"{run}-{number}")
                log(f"run {run + 1}: {name}")
                s3.put_object(Bucket=cloud.stack["bucket"], Key=key, Body=data)
                item = wait_for_thumbnails(cloud, key)
                if "thumbnails" not in item:
                    raise RuntimeError(f"{name}: no thumbnails: {item['thumbnail_reason']}")
                peaks[key, number] = (save_worker_hwm_mb(cloud), vm_hwm_mb(cloud.pid))
        lines = function_log(cloud)
    results: dict[str, list[Measured]] = {name: [] for name in images}
    for (key, number), (worker_mb, server_mb) in peaks.items():
        name = list(images)[number]
        results[name].append(measured(lines, key, worker_mb, server_mb))

    print(f"\nmedians of {runs} run(s), a fresh worker for each image\n")
    print(
        "| image | file | read (check's GETs) | Duration (REPORT) | described | thumbnails made "
        "| Max Memory Used (REPORT) | worker's own peak (VmHWM) | server's peak (VmHWM) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, found in results.items():

        def median(field: str, found: list[Measured] = found) -> float:
            return statistics.median(float(getattr(m, field)) for m in found)

        print(
            f"| {name} | {len(images[name]) / 1e6:.1f} MB "
            f"| {median('bytes_read') / 1e6:.1f} MB ({median('requests'):.0f}) "
            f"| {median('duration_ms'):.0f} ms "
            f"| {median('describe_ms'):.0f} ms | {median('thumbnails_ms'):.0f} ms "
            f"| {median('report_memory_mb'):.0f} MB | {median('worker_hwm_mb'):.0f} MB "
            f"| {median('server_hwm_mb'):.0f} MB |"
        )
    print(
        "\ncommand: .venv/bin/python benchmarks/thumbnail_local.py"
        + (f" --runs {runs}" if runs != 3 else "")
    )


if __name__ == "__main__":
    main()
