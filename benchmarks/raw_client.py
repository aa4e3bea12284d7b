"""The reference clients the harness compares imgcli with: plain boto3, nothing else.

Run as a subprocess by ``benchmarks/run.py`` so they pay interpreter start-up as imgcli
does. The endpoint and credentials come from the environment (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``).

* ``put DIR BUCKET PREFIX``: ``put_object`` of every file under DIR, 16 threads sharing
  one client (a connection pool of 16), each file read whole: the reference ceiling.
* ``scan TABLE``: a paginated DynamoDB Scan of the whole table, one JSON line per item on
  stdout (as ``imgcli list --json`` writes one per image).
"""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

THREADS = 16


def client(service: str, pool: int = THREADS) -> Any:
    return boto3.client(
        service,
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        config=Config(max_pool_connections=pool, retries={"mode": "standard"}),
    )


def put(folder: Path, bucket: str, prefix: str) -> int:
    s3 = client("s3")
    files = sorted(p for p in folder.rglob("*") if p.is_file())

    def send(path: Path) -> None:
        key = prefix + path.relative_to(folder).as_posix()
        s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes(), ContentType="image/jpeg")

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(send, files))
    return len(files)


def scan(table: str) -> int:
    dynamodb = client("dynamodb")
    count = 0
    out = sys.stdout
    for page in dynamodb.get_paginator("scan").paginate(TableName=table):
        for item in page["Items"]:
            plain = {name: value.get("S", value.get("N")) for name, value in item.items()}
            out.write(json.dumps(plain) + "\n")
            count += 1
    return count


def main(argv: list[str]) -> int:
    if argv[:1] == ["put"] and len(argv) == 4:
        put(Path(argv[1]), argv[2], argv[3])
        return 0
    if argv[:1] == ["scan"] and len(argv) == 2:
        scan(argv[1])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
