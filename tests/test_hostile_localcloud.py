"""A hostile corpus end to end on the local cloud: put into a bootstrapped stack's bucket with
plain boto3 (as any S3 client would), every file ends ``active`` or ``invalid`` in the API's
listing, nothing lands in the failed-events queue, and the client's check (``imgcli upload
--dry-run``) refuses exactly the files the stack indexed as invalid, printing no raw
warnings."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from imgcli.config import LOCAL_REGION
from tests import hostile_images as hostile
from tests.localstack import (
    KEY,
    SECRET,
    bootstrap,
    failed_queue_depth,
    local_client,
    local_cloud_env,
    run_imgcli,
)

PREFIX = "hostile/"
HTTP = urllib3.PoolManager()


@pytest.fixture(scope="module")
def local_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with local_cloud_env(tmp_path_factory.mktemp("localcloud"), "hostile") as env:
        yield env


@pytest.fixture(scope="module")
def stack(local_env: dict[str, str]) -> dict[str, Any]:
    return bootstrap(local_env)


def listed(stack: dict[str, Any], status: str) -> dict[str, dict[str, Any]]:
    items: dict[str, dict[str, Any]] = {}
    cursor = None
    while True:
        query = {"prefix": PREFIX, "status": status, **({"cursor": cursor} if cursor else {})}
        url = f"{stack['api_url']}/images?{urlencode(query)}"
        request = AWSRequest(method="GET", url=url)
        SigV4Auth(Credentials(KEY, SECRET), "execute-api", LOCAL_REGION).add_auth(request)
        response = HTTP.request("GET", url, headers=dict(request.headers), retries=False)
        assert response.status == 200, response.data
        page = json.loads(response.data)
        items |= {item["key"]: item for item in page["items"]}
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def test_every_hostile_file_is_indexed_and_the_client_agrees(
    local_env: dict[str, str], stack: dict[str, Any], tmp_path: Path
) -> None:
    files = hostile.corpus() | {"gif-frame-bomb-2m.gif": hostile.gif_frame_bomb(2_000_000)}
    s3 = local_client(stack, "s3")
    for name, data in files.items():
        s3.put_object(Bucket=stack["bucket"], Key=PREFIX + name, Body=data)

    expected = {PREFIX + name for name in files}
    deadline = time.monotonic() + 45
    while True:
        active, invalid = listed(stack, "active"), listed(stack, "invalid")
        if set(active) | set(invalid) == expected or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert set(active) | set(invalid) == expected
    assert not set(active) & set(invalid)
    for name in (
        "tiff-missing-dimensions.tiff",
        "gif-huge-frame-extents.gif",
        "apng-num-frames-0.png",
        "apng-sequence-error.png",
        "gif-frame-bomb-2m.gif",
    ):
        assert PREFIX + name in invalid, name
    assert invalid[PREFIX + "gif-huge-frame-extents.gif"]["reason"].startswith(
        "over the pixel limit"
    )

    assert failed_queue_depth(stack) == (0, 0)

    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    checked = run_imgcli(
        local_env, "upload", str(folder), "--recursive", "--prefix", "elsewhere/",
        "--dry-run", "--json",
    )  # fmt: skip
    assert checked.returncode == 1, checked.stderr  # some files refused
    results = [json.loads(line) for line in checked.stdout.splitlines() if line.strip()]
    refused = {
        result["key"].removeprefix("elsewhere/"): result["reason"]
        for result in results
        if result.get("status") == "refused"
    }
    would_upload = {
        result["key"].removeprefix("elsewhere/")
        for result in results
        if result.get("status") == "would_upload"
    }
    assert refused == {key.removeprefix(PREFIX): item["reason"] for key, item in invalid.items()}
    assert would_upload == {key.removeprefix(PREFIX) for key in active}
    # Only imgcli's own summary line: no "file.py:N: UserWarning", no libtiff message.
    assert not re.search(r"\.py:\d+: \w*Warning|Decoding error|TIFF\w*:", checked.stderr)
    assert len(checked.stderr.splitlines()) <= 2, checked.stderr
