"""The client and the save function reach the same verdict on every file of a hostile corpus,
and the client's check writes nothing to stderr.

The client is ``imgcli.upload_walk.check_file`` with the upload's default configuration;
the server is the save function's own path (``Indexer`` over moto's S3 and DynamoDB, a
``RangedReader`` of ranged GETs). They must agree on accepted or refused, and, being the
same function with the same parameters, on the reason too.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

import pytest

from imgcli.lambdas.logs import JsonLogger
from imgcli.lambdas.save_delete import Indexer, process_event
from imgcli.upload_types import UploadConfig
from imgcli.upload_walk import check_file
from tests import hostile_images as hostile
from tests.eventdata import created, stored

REPO = Path(__file__).resolve().parents[1]


def open_binary(path: Path) -> IO[bytes]:
    return path.open("rb")


@pytest.fixture(scope="module")
def corpus_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    files = hostile.mutated_corpus()
    # Over FULL_DECODE_BYTES: the save function reads it with ranged GETs, not one GET.
    files["gif-frame-bomb-2m.gif"] = hostile.gif_frame_bomb(2_000_000)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def client_verdicts(folder: Path) -> dict[str, str]:
    verdicts = {}
    for path in sorted(folder.iterdir()):
        checked = check_file(path, path.name, UploadConfig(), open_binary)
        verdicts[path.name] = "active" if isinstance(checked, tuple) else f"invalid: {checked}"
    return verdicts


def test_client_and_save_function_agree_on_every_file(
    corpus_folder: Path,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    bucket: str,
    thumbnails_bucket: str,
) -> None:
    indexer = Indexer(
        s3=s3_client,
        dynamodb=dynamodb_client,
        table_name=table_name,
        bucket=bucket,
        thumbnails_bucket=thumbnails_bucket,
        log=JsonLogger("save_delete", stream=io.StringIO()),
    )
    assert indexer.full_decode_bytes == UploadConfig().full_decode_bytes

    server = {}
    for number, path in enumerate(sorted(corpus_folder.iterdir())):
        event = created(s3_client, bucket, path.name, path.read_bytes(), f"{number + 1:04X}")
        process_event(event, indexer)  # raises if any record failed (a retry, not a verdict)
        record = stored(dynamodb_client, table_name, path.name)
        assert record is not None
        server[path.name] = (
            "active" if record.status == "active" else f"{record.status}: {record.reason}"
        )

    client = client_verdicts(corpus_folder)
    assert client == server
    # The corpus holds both verdicts, and the cases are refused on both sides.
    assert {"active"} < set(client.values())
    for name in (
        "tiff-missing-dimensions.tiff",
        "gif-huge-frame-extents.gif",
        "apng-num-frames-0.png",
        "apng-sequence-error.png",
        "gif-frame-bomb-2m.gif",
    ):
        assert client[name].startswith("invalid: "), name


CHECK_ALL = """
import json, sys
from pathlib import Path
from imgcli.upload_types import UploadConfig
from imgcli.upload_walk import check_file
verdicts = {}
for path in sorted(Path(sys.argv[1]).iterdir()):
    checked = check_file(path, path.name, UploadConfig(), lambda p: p.open("rb"))
    verdicts[path.name] = "active" if isinstance(checked, tuple) else checked
print(json.dumps(verdicts))
"""


def test_the_clients_check_writes_nothing_to_stderr(corpus_folder: Path) -> None:
    # Pillow's warnings (a "file.py:N: UserWarning" line each) and libtiff's messages
    # ("ZIPDecode: Decoding error ...") went to stderr, --quiet or not.
    result = subprocess.run(
        [sys.executable, "-W", "default", "-c", CHECK_ALL, str(corpus_folder)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stderr == ""
    verdicts = json.loads(result.stdout)
    assert "Pillow warned" in verdicts["tiff-truncated-deflate.tiff"]
    assert verdicts["tiff-damaged-deflate.tiff"].startswith("truncated or corrupt image")
