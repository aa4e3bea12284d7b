"""Where imgcli's time goes on large files: its upload engine with one choice changed at a time.

``make bench`` found imgcli slower than raw boto3 on 20 x 2 MB + 2 x 50 MB. This runs the
engine in process (no start-up) against a private local cloud, back to back with the same
raw client, rotating the order each round: as it ships, with single PUTs instead of
multipart (threshold above every file), without the SHA-256 checksum header, and without
both. Each client uploads under a fresh prefix, and the stack finishes indexing each upload
before the next starts.

Run from the repository root: ``.venv/bin/python benchmarks/upload_variants.py [rounds]``.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as bench  # the harness's data and local cloud; it puts the repository on the path
import raw_client

from imgcli.upload import Uploader
from imgcli.upload_types import UploadConfig
from imgcli.upload_walk import Selection

#: Above every file here: every file goes as one PUT.
NO_MULTIPART = 1024**3


def raw(cloud: bench.Cloud, folder: Path, prefix: str) -> None:
    """``benchmarks/raw_client.py put``, in process."""
    raw_client.put(folder, cloud.stack["bucket"], prefix)


def imgcli(multipart: bool, checksum: bool) -> Callable[[bench.Cloud, Path, str], None]:
    def upload(cloud: bench.Cloud, folder: Path, prefix: str) -> None:
        config = UploadConfig() if multipart else UploadConfig(multipart_threshold=NO_MULTIPART)
        s3 = raw_client.client("s3", pool=config.pool_connections)  # as imgcli sizes it
        if not checksum:
            put_object = s3.put_object

            def without_checksum(**request: Any) -> Any:
                request.pop("ChecksumSHA256", None)
                return put_object(**request)

            s3.put_object = without_checksum
        summary = Uploader(s3, cloud.stack["bucket"], config).upload(
            Selection((folder,), prefix=prefix, recursive=True)
        )
        if summary.not_uploaded:
            raise RuntimeError(f"{summary.not_uploaded} files not uploaded")

    return upload


VARIANTS: dict[str, Callable[[bench.Cloud, Path, str], None]] = {
    "raw boto3 (16 threads, one PUT per file)": raw,
    "imgcli as it ships (multipart from 8 MiB, SHA-256 checksum)": imgcli(True, True),
    "imgcli, one PUT per file": imgcli(False, True),
    "imgcli, no checksum header": imgcli(True, False),
    "imgcli, one PUT per file, no checksum header": imgcli(False, False),
}


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="imgcli-variants-") as tmp:
        base = Path(tmp)
        folder = bench.write_files(base / "large" / "m", 20, 2_000_000, 95, "m")
        bench.write_files(base / "large" / "L", 2, 50_000_000, 100, "L")
        folder = folder.parent
        count = sum(1 for path in folder.rglob("*") if path.is_file())
        with bench.local_cloud(base, "variants") as cloud:
            os.environ.update(cloud.client_env(base))  # what raw_client's clients read
            bench.warm_up(cloud)
            names = list(VARIANTS)
            for number in range(rounds):
                for name in names[number % len(names) :] + names[: number % len(names)]:
                    prefix = f"variants/r{number}/{names.index(name)}/"
                    started = time.perf_counter()
                    VARIANTS[name](cloud, folder, prefix)
                    times[name].append(time.perf_counter() - started)
                    bench.log(f"round {number + 1}: {name}: {times[name][-1]:.2f} s")
                    cloud.settle(prefix, count)
    reference = statistics.median(times[names[0]])
    print(f"| client ({rounds} rounds) | median | spread | throughput x raw |")
    print("|---|---:|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"| {name} | {median:.2f} s | {min(values):.2f}-{max(values):.2f} s "
            f"| {reference / median:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
