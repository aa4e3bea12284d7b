"""What durability costs: ``imgcli upload`` of 1,000 x 20 KB, before and after the journal.

Issue 11 asks for the local cloud to be durable before it acknowledges a write (a journal
fsynced with group commit) at no more than 10 % of upload speed. This times the same
upload against two local clouds, each run by its own source tree: ``--before`` (the
commit before the journal, unpacked anywhere: ``git archive <commit> | tar -x -C DIR``)
and this repository (or ``--after``). Each tree runs its own ``imgcli`` (``python -m
imgcli`` from the tree) and so its own server; the rounds alternate between the two,
each on its own stack and fresh prefixes, after a warm-up upload on each. Per round it
records the upload's wall time, how many images were indexed when it returned, the time
until the stack has indexed every image, and the CPU seconds the local cloud's process
group used.

Run from the repository root:
``.venv/bin/python benchmarks/journal_cost.py --before /tmp/old [--rounds 5] [--count 1000]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from harness import REPO, group_cpu_seconds, indexed_count, log, write_files

from tests.localstack import free_port

#: The owner key of a local cloud from before per-installation secrets.
LEGACY_KEY = ("imgcli-local", "imgcli-local-secret")


@dataclass
class Tree:
    """One source tree's local cloud and stack, and what its rounds measured."""

    name: str
    root: Path
    env: dict[str, str]
    stack: dict[str, Any] = field(default_factory=dict)
    pid: int = 0
    upload_s: list[float] = field(default_factory=list)
    indexed_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    #: How many of the images were indexed when the upload command returned.
    indexed_at_end: list[float] = field(default_factory=list)

    def imgcli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "imgcli", *args],
            cwd=self.root,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=True,
        )

    def client(self, service: str) -> Any:
        secret = Path(self.env["IMGCLI_DATA_DIR"]) / "localcloud" / "secret.json"
        if secret.exists():
            fields = json.loads(secret.read_text())
            key = (fields["access_key_id"], fields["secret_access_key"])
        else:
            key = LEGACY_KEY
        return boto3.client(
            service,
            endpoint_url=self.stack["endpoint_url"],
            region_name="us-east-1",
            aws_access_key_id=key[0],
            aws_secret_access_key=key[1],
        )

    def indexed(self, prefix: str) -> int:
        return indexed_count(self.client("dynamodb"), self.stack["table"], prefix)

    def cpu_seconds(self) -> float:
        """CPU time of the local cloud's process group (server and Lambda workers)."""
        return group_cpu_seconds(self.pid)

    def upload(self, folder: Path, prefix: str, count: int) -> None:
        cpu = self.cpu_seconds()
        started = time.perf_counter()
        self.imgcli("--quiet", "upload", "--recursive", str(folder), "--prefix", prefix)
        uploaded = time.perf_counter() - started
        self.indexed_at_end.append(self.indexed(prefix))
        while self.indexed(prefix) < count:
            if time.perf_counter() - started > 300:
                raise RuntimeError(f"{self.name}: {prefix} not indexed after 300 s")
            time.sleep(0.1)
        self.upload_s.append(uploaded)
        self.indexed_s.append(time.perf_counter() - started)
        self.cpu_s.append(self.cpu_seconds() - cpu)


@contextlib.contextmanager
def local_cloud(name: str, root: Path, base: Path) -> Iterator[Tree]:
    tree = Tree(
        name,
        root,
        {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IMGCLI_"))},
            "IMGCLI_DATA_DIR": str(base / name / "data"),
            "IMGCLI_CONFIG": str(base / name / "config.toml"),
            "IMGCLI_LOCAL_PORT": str(free_port()),
            "IMGCLI_STACK": "bench",
        },
    )
    log(f"{name}: bootstrapping a stack on a local cloud run from {root}")
    tree.stack = json.loads(tree.imgcli("bootstrap", "--json").stdout)
    record = Path(tree.env["IMGCLI_DATA_DIR"]) / "localcloud" / "server.json"
    tree.pid = int(json.loads(record.read_text())["pid"])
    try:
        yield tree
    finally:
        tree.imgcli("local", "stop")


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"


def count_spread(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the older source tree")
    parser.add_argument("--after", type=Path, default=REPO, help="default: this repository")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imgcli-journal-cost-") as temporary:
        base = Path(temporary)
        folder = write_files(base / "images", args.count, 20_000, 90, "s")
        warm = write_files(base / "warm", 50, 20_000, 90, "w")
        with (
            local_cloud("before", args.before.resolve(), base) as before,
            local_cloud("after", args.after.resolve(), base) as after,
        ):
            for tree in (before, after):
                tree.upload(warm, "warm/", 50)  # starts the Lambda workers; not counted
                for measured in (tree.upload_s, tree.indexed_s, tree.cpu_s, tree.indexed_at_end):
                    measured.clear()
            for number in range(args.rounds):
                order = (before, after) if number % 2 == 0 else (after, before)
                for tree in order:
                    tree.upload(folder, f"r{number}/", args.count)
                    log(
                        f"round {number + 1} {tree.name}: upload {tree.upload_s[-1]:.2f} s, "
                        f"indexed {tree.indexed_s[-1]:.2f} s, cloud CPU {tree.cpu_s[-1]:.2f} s, "
                        f"{tree.indexed_at_end[-1]:.0f} indexed as the upload ended"
                    )
    ratio = statistics.median(after.upload_s) / statistics.median(before.upload_s)
    print(f"| {args.count:,} x 20 KB, {args.rounds} rounds | before | after | after / before |")
    print("|---|---:|---:|---:|")
    for label, attribute in (
        ("`imgcli upload`", "upload_s"),
        ("upload → all indexed", "indexed_s"),
        ("local cloud CPU", "cpu_s"),
    ):
        old, new = getattr(before, attribute), getattr(after, attribute)
        change = statistics.median(new) / statistics.median(old)
        print(f"| {label} | {spread(old)} | {spread(new)} | {change:.2f} |")
    old, new = before.indexed_at_end, after.indexed_at_end
    print(f"| indexed when the upload returned | {count_spread(old)} | {count_spread(new)} | |")
    log(f"upload: after / before = {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
