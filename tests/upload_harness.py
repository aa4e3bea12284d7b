"""What the upload engine's tests share: a listener that records what it hears, S3 calls
counted, one-call uploads, and folders of small images."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imgcli.upload import Uploader
from imgcli.upload_types import FileResult, UploadConfig, UploadSummary
from imgcli.upload_walk import Selection
from tests.images import image_bytes

MiB = 1024 * 1024
# s3transfer's smallest part size, so the smallest threshold that really goes multipart.
SMALL_PARTS = {"multipart_threshold": 5 * MiB, "multipart_chunksize": 5 * MiB}


class Recorder:
    """An UploadListener that keeps everything it hears, and on which thread."""

    def __init__(self) -> None:
        self.results: list[FileResult] = []
        self.queued_sizes: list[int] = []
        self.sent_amounts: list[int] = []
        self.threads: set[str] = set()

    def queued(self, size: int) -> None:
        self.threads.add(threading.current_thread().name)
        self.queued_sizes.append(size)

    def sent(self, amount: int) -> None:
        self.threads.add(threading.current_thread().name)
        self.sent_amounts.append(amount)

    def finished(self, result: FileResult) -> None:
        self.threads.add(threading.current_thread().name)
        self.results.append(result)

    def by_key(self) -> dict[str | None, FileResult]:
        return {result.key: result for result in self.results}

    def by_name(self) -> dict[str, FileResult]:
        return {Path(result.path).name: result for result in self.results}


class Calls:
    """S3 operations the client made, counted with botocore's event hooks."""

    def __init__(self, client: Any) -> None:
        self.counts: Counter[str] = Counter()
        self._in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        client.meta.events.register("before-call.s3", self._before)
        client.meta.events.register("after-call.s3", self._after)

    def _before(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.counts[model.name] += 1
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _after(self, **_: Any) -> None:
        with self._lock:
            self._in_flight -= 1

    def reset(self) -> None:
        self.counts.clear()

    def sends(self) -> int:
        return sum(
            self.counts[name]
            for name in ("PutObject", "CreateMultipartUpload", "UploadPart", "CopyObject")
        )


def upload(
    s3_client: Any,
    bucket: str,
    *paths: Path,
    config: UploadConfig | None = None,
    listener: Recorder | None = None,
    open_file: Callable[[Path], Any] | None = None,
    **options: Any,
) -> tuple[UploadSummary, Recorder]:
    selection_options = {
        k: options.pop(k) for k in ("prefix", "recursive", "filters") if k in options
    }
    found = listener or Recorder()
    uploader = Uploader(s3_client, bucket, config)
    if open_file is not None:
        uploader = Uploader(s3_client, bucket, config, open_file=open_file)
    summary = uploader.upload(Selection(paths, **selection_options), listener=found, **options)
    return summary, found


def images_folder(root: Path, count: int = 3) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    formats = ["JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP"]
    extensions = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "TIFF": "tif"}
    for index in range(count):
        fmt = formats[index % len(formats)]
        name = f"img{index:03d}.{extensions.get(fmt, fmt.lower())}"
        (root / name).write_bytes(image_bytes(fmt, size=(20 + index, 10 + index)))
    return root


def object_keys(s3_client: Any, bucket: str) -> list[str]:
    listed = s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return [item["Key"] for item in listed]
