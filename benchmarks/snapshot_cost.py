"""What one local cloud snapshot costs as the stored bytes grow.

The local cloud saves its state every few seconds while anything changes; this fills an
in-process moto S3 bucket with 2 MB objects in steps and times ``save_snapshot`` at each
step: the first save after the step (it writes the new objects' bodies) and the save after
that (nothing new: what every later save costs). ``--compare FILE`` also times the
``save_snapshot`` of another copy of ``persistence.py`` at each step, for a before/after:
``git show f9392a3:imgcli/localcloud/persistence.py > /tmp/old_persistence.py`` is the
version that pickled every body into every snapshot.

Run from the repository root:
``.venv/bin/python benchmarks/snapshot_cost.py [--compare /tmp/old_persistence.py]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STEPS_MB = (100, 400, 1000)
OBJECT_BYTES = 2_000_000
#: Snapshots are authenticated; any key will do for timing them.
KEY = b"snapshot-cost"


def load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("compared_persistence", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def seconds(save: Any, path: Path) -> float:
    started = time.perf_counter()
    save(path)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", type=Path, help="another persistence.py to time too")
    args = parser.parse_args()
    fake = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}  # moto's only
    os.environ.update(fake, AWS_DEFAULT_REGION="us-east-1")
    import boto3
    from moto import mock_aws

    from imgcli.localcloud import persistence

    compared = load_module(args.compare) if args.compare else None
    print("| stored | first save after the step | next save | snapshot file |", end="")
    print(" compared module's save |" if compared else "")
    print("|---:|---:|---:|---:|" + ("---:|" if compared else ""))
    with mock_aws(), tempfile.TemporaryDirectory() as folder:
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="snapshot-cost")
        body = bytearray(os.urandom(OBJECT_BYTES))
        stored = 0
        for step in STEPS_MB:
            while stored < step * 1_000_000:
                body[:8] = stored.to_bytes(8, "big")  # every object distinct
                s3.put_object(Bucket="snapshot-cost", Key=f"k{stored}", Body=bytes(body))
                stored += OBJECT_BYTES
            snapshot = Path(folder) / "state.pickle"
            first = seconds(lambda path: persistence.save_snapshot(path, key=KEY), snapshot)
            started = time.perf_counter()
            info = persistence.save_snapshot(snapshot, key=KEY)
            again = time.perf_counter() - started
            row = f"| {step} MB | {first:.2f} s | {again * 1000:.0f} ms | {info.size_bytes:,} B |"
            if compared:
                row += f" {seconds(compared.save_snapshot, Path(folder) / 'old.pickle'):.2f} s |"
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
