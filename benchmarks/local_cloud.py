"""The local cloud's own speed: indexing latency and the Lambda runtime's overhead.

Two figures issue 4 asks for, measured (never asserted in tests):

* **Upload → listed**: a private local cloud and stack; 100 x ~20 KB JPEGs are PUT with
  plain boto3 (16 threads); the signed API is polled every 20 ms, and each image's latency
  is the time from the end of its PUT to the first listing that shows it.
* **Local cloud CPU per round**: the CPU seconds the local cloud's server process and its
  Lambda workers used during one round of that figure (from ``/proc``, Linux only). The
  server is one Python process, so its share is what bounds the latency: 100 events
  cannot be indexed faster than the server can answer their calls one GIL at a time.
* **Runtime overhead**: a warm invocation of a trivial handler through ``LambdaRuntime``
  (a worker subprocess) against calling the same handler in this process.

Run from the repository root: ``.venv/bin/python benchmarks/local_cloud.py [rounds]``;
prints a Markdown table of medians and spreads over the rounds.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imgcli.gallery_api import GalleryApi
from imgcli.localcloud import process
from imgcli.localcloud.runtime import FunctionSpec, LambdaRuntime
from tests.images import noisy_jpeg
from tests.localstack import (
    KEY,
    SECRET,
    bootstrap,
    local_client,
    local_cloud_env,
)


def indexing_latencies(stack: dict[str, Any], round_number: int) -> list[float]:
    from botocore.credentials import Credentials

    s3 = local_client(stack, "s3")
    api = GalleryApi(stack["api_url"], Credentials(KEY, SECRET), "us-east-1")
    prefix = f"bench{round_number}/"
    keys = [f"{prefix}{n:03d}.jpg" for n in range(100)]
    bodies = {key: noisy_jpeg(150, 110, quality=90) for key in keys}
    put_done: dict[str, float] = {}
    seen: dict[str, float] = {}
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set() and len(seen) < len(keys):
            listed = {item["key"] for item in api.list_images(prefix=prefix)}
            now = time.perf_counter()
            for key in listed:
                seen.setdefault(key, now)
            time.sleep(0.02)

    watcher = threading.Thread(target=poll)
    watcher.start()

    def put(key: str) -> None:
        s3.put_object(Bucket=stack["bucket"], Key=key, Body=bodies[key])
        put_done[key] = time.perf_counter()

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, keys))
    watcher.join(timeout=60)
    stop.set()
    return [seen[key] - put_done[key] for key in keys if key in seen]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` so far; 0 if it is gone or this is not Linux."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_pids(pid: int) -> list[int]:
    """The server's child processes, its Lambda workers, whichever thread started them."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue  # the thread ended meanwhile
    return children


class CloudCpu:
    """CPU seconds the local cloud (server, workers) used between ``start`` and ``stop``."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self._started: dict[int, float] = {}

    def start(self) -> None:
        if self.pid is not None:
            pids = [self.pid, *worker_pids(self.pid)]
            self._started = {pid: cpu_seconds(pid) for pid in pids}

    def stop(self) -> tuple[float, float]:
        if self.pid is None:
            return 0.0, 0.0
        server = cpu_seconds(self.pid) - self._started.get(self.pid, 0.0)
        workers = sum(
            cpu_seconds(pid) - self._started.get(pid, 0.0) for pid in worker_pids(self.pid)
        )
        return server, workers


def runtime_overhead(workdir: Path, calls: int = 300) -> tuple[float, float]:
    source = "def handler(event, context):\n    return {'echo': event}\n"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("h.py", source)
    spec = FunctionSpec(
        name="bench",
        arn="arn:aws:lambda:us-east-1:123456789012:function:bench",
        code_sha256="bench",
        zip_bytes=archive.getvalue(),
        handler="h.handler",
        environment={},
        timeout_s=10,
        memory_mb=128,
    )
    runtime = LambdaRuntime(
        workdir=workdir,
        endpoint_url="http://127.0.0.1:9",
        region="us-east-1",
        credentials=("a", "b"),
    )
    namespace: dict[str, Any] = {}
    exec(source, namespace)  # noqa: S102 - the benchmark's own two-line handler
    payload = json.dumps({"n": 1}).encode()
    try:
        runtime.invoke(spec, payload)  # cold start, not measured
        warm = []
        direct = []
        for _ in range(calls):
            started = time.perf_counter()
            runtime.invoke(spec, payload)
            warm.append(time.perf_counter() - started)
            started = time.perf_counter()
            json.dumps(namespace["handler"](json.loads(payload), None))
            direct.append(time.perf_counter() - started)
    finally:
        runtime.shutdown()
    return statistics.median(warm), statistics.median(direct)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    medians: list[float] = []
    p95s: list[float] = []
    overheads: list[float] = []
    server_cpu: list[float] = []
    worker_cpu: list[float] = []
    with tempfile.TemporaryDirectory() as base, local_cloud_env(Path(base), "bench") as env:
        os.environ.update({k: v for k, v in env.items() if k.startswith("IMGCLI_")})
        stack = bootstrap(env)
        cloud = CloudCpu(process.status(int(env["IMGCLI_LOCAL_PORT"]), env).pid)
        for number in range(rounds):
            cloud.start()
            latencies = sorted(indexing_latencies(stack, number))
            server, workers = cloud.stop()
            server_cpu.append(server)
            worker_cpu.append(workers)
            medians.append(statistics.median(latencies))
            p95s.append(latencies[int(len(latencies) * 0.95) - 1])
            warm, direct = runtime_overhead(Path(base) / f"runtime{number}")
            overheads.append(warm - direct)

    def row(name: str, values: list[float], unit: float, label: str, digits: int = 2) -> str:
        shown = [v * unit for v in values]
        return (
            f"| {name} | {statistics.median(shown):.{digits}f} {label} "
            f"| {min(shown):.{digits}f}-{max(shown):.{digits}f} {label} |"
        )

    print(f"| figure | median of {rounds} rounds | spread |")
    print("|---|---:|---:|")
    print(row("upload → listed, median of 100 x ~20 KB", medians, 1, "s"))
    print(row("upload → listed, 95th percentile", p95s, 1, "s"))
    print(row("local cloud server CPU per round", server_cpu, 1, "s"))
    print(row("Lambda workers' CPU per round", worker_cpu, 1, "s"))
    print(row("runtime overhead per warm invocation", overheads, 1_000_000, "µs", digits=1))


if __name__ == "__main__":
    main()
