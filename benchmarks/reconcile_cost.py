"""What `imgcli reconcile` costs: a bucket of N images on the local cloud with 1 % drift.

Issue 13 asks for a reconcile of 10,000 objects with 1 % drift on the local cloud to be
measured. This fills a stack's bucket with N small JPEGs with the bucket's notification
removed (so nothing is indexed behind the benchmark's back), indexes them with one
`imgcli reconcile` (every object is "missing"), then makes 1 % drift of each kind the
command repairs (objects written while the notification is gone: missing; objects
overwritten: stale; objects deleted: orphaned), and times:

- `imgcli reconcile --dry-run --json` (the two listings and the merge alone),
- `imgcli reconcile --json` (the same plus the repairs),
- a second `imgcli reconcile --json`, which must find nothing.

Each run's wall time, its own peak RSS and the local cloud's CPU are reported.

Run from the repository root: ``.venv/bin/python benchmarks/reconcile_cost.py [--count 10000]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from harness import Cloud, Run, local_cloud, log, timed

from tests.images import noisy_jpeg
from tests.localstack import local_client

DRIFT_SHARE = 0.01


def put_all(s3: Any, bucket: str, keys: list[str], body: bytes) -> None:
    def put(key: str) -> None:
        s3.put_object(Bucket=bucket, Key=key, Body=body)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, keys))


def reconcile(cloud: Cloud, *extra: str) -> Run:
    return timed([sys.executable, "-m", "imgcli", "reconcile", "--json", *extra], cloud.env, cloud)


def summary_of(cloud: Cloud, *extra: str) -> dict[str, Any]:
    """The summary a `reconcile --json` run ends with (run once more, untimed)."""
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "imgcli", "reconcile", "--json", *extra],
        env=cloud.env,
        capture_output=True,
        text=True,
        check=False,
    )
    summary: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])["summary"]
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    options = parser.parse_args()
    count = options.count
    drift = max(1, int(count * DRIFT_SHARE))
    with tempfile.TemporaryDirectory() as temporary, local_cloud(Path(temporary), "rc") as cloud:
        s3 = local_client(cloud.stack, "s3")
        bucket = cloud.stack["bucket"]
        notification = s3.get_bucket_notification_configuration(Bucket=bucket)
        notification.pop("ResponseMetadata", None)
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})
        keys = [f"photos/{number:06d}.jpg" for number in range(count)]
        log(f"writing {count} objects with the notification removed")
        put_all(s3, bucket, keys, noisy_jpeg(64, 48))
        log("indexing them with one reconcile (every object is missing)")
        first = reconcile(cloud)
        log(f"first reconcile: {first.seconds:.1f} s")

        log(f"making {drift} of each drift: missing, stale, orphaned")
        put_all(s3, bucket, [f"photos/new-{n:05d}.jpg" for n in range(drift)], noisy_jpeg(64, 48))
        put_all(s3, bucket, keys[:drift], noisy_jpeg(48, 64))
        for start in range(drift, 2 * drift, 1000):
            batch = keys[start : min(start + 1000, 2 * drift)]
            s3.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True}
            )
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration=notification
        )

        dry = reconcile(cloud, "--dry-run")
        found = summary_of(cloud, "--dry-run")
        repair = reconcile(cloud)
        again = reconcile(cloud)
        clean = summary_of(cloud)
    rows = [
        ("first reconcile: index every object", first),
        ("`reconcile --dry-run` (listings and merge)", dry),
        ("`reconcile` (the same plus the repairs)", repair),
        ("`reconcile` again (finds nothing)", again),
    ]
    print(f"\n{count} objects, drift found by the dry run: {json.dumps(found)}")
    print(f"after the repair, a dry run finds: {json.dumps(clean)}\n")
    print("| run | wall time | peak RSS | local cloud CPU |")
    print("|---|---:|---:|---:|")
    for name, run in rows:
        cpu = run.cloud_cpu * run.seconds
        print(f"| {name} | {run.seconds:.1f} s | {run.max_rss_mb:.0f} MB | {cpu:.1f} s |")


if __name__ == "__main__":
    main()
