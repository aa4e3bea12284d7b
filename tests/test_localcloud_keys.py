"""The local cloud takes, serves and lists every key S3 takes (``moto_s3_keys``).

Against a started local cloud (``tests.localstack``) with plain boto3, for a key holding
each control character (0x01-0x1f and 0x7f), a newline among them (issue 12: "a file name
with a newline fails as PutObject failed (404)"): PutObject, GetObject, HeadObject,
CopyObject, DeleteObject; ListObjectsV2 by Prefix, StartAfter, Delimiter and
ContinuationToken, ListObjects by Marker, ListObjectVersions by KeyMarker, all with boto3's
default ``EncodingType=url``, each answering exactly the keys stored; and the raw XML S3
writes without it (``&#x1;``, as S3 does). DeleteObjects takes the keys XML 1.0 can carry
and answers ``MalformedXML`` for the others, as S3 does. A key of exactly 1,024 bytes
works and one byte more is ``KeyTooLongError``. moto 5.2.5 alone answered 404 to the
newline, wrote raw control characters into listings (botocore: "500") and encoded nothing
in version listings.
"""

from __future__ import annotations

import http.client
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import boto3
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from imgcli.config import LOCAL_REGION
from imgcli.localcloud import MotoInternalsChanged, moto_s3_keys, process
from tests.localstack import KEY, SECRET, local_cloud_env

BUCKET = "keys-bucket"
VERSIONED = "keys-versioned"
CONTROL = [chr(code) for code in [*range(0x01, 0x20), 0x7F]]
#: Characters XML 1.0 carries as they are; S3 writes every other control as ``&#xN;``.
XML_CARRIES = {"\t", "\n", "\r", "\x7f"}


def control_key(character: str, prefix: str = "ctl/") -> str:
    return f"{prefix}{ord(character):02x}-a{character}b.jpg"


@pytest.fixture(scope="module")
def cloud() -> Iterator[dict[str, str]]:
    with tempfile.TemporaryDirectory() as base, local_cloud_env(Path(base), "keys") as env:
        yield env


@pytest.fixture(scope="module")
def endpoint(cloud: dict[str, str]) -> str:
    status, _ = process.start(int(cloud["IMGCLI_LOCAL_PORT"]), cloud)
    endpoint = f"http://127.0.0.1:{status.port}"
    s3 = client(endpoint)
    s3.create_bucket(Bucket=BUCKET)
    s3.create_bucket(Bucket=VERSIONED)
    s3.put_bucket_versioning(Bucket=VERSIONED, VersioningConfiguration={"Status": "Enabled"})
    return endpoint


def client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=LOCAL_REGION,
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
        config=Config(retries={"max_attempts": 1}),
    )


def signed_get(endpoint: str, target: str) -> tuple[int, bytes]:
    """``GET target`` signed as the owner, sent exactly as written (no SDK parsing)."""
    request = AWSRequest(method="GET", url=endpoint + target)
    S3SigV4Auth(Credentials(KEY, SECRET), "s3", LOCAL_REGION).add_auth(request)
    connection = http.client.HTTPConnection(urlsplit(endpoint).netloc, timeout=10)
    try:
        connection.request("GET", target, headers=dict(request.headers.items()))
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def listed_v2(s3: Any, **options: Any) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, **options):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys


def test_a_newline_key_is_stored_as_on_aws(endpoint: str) -> None:
    s3 = client(endpoint)
    s3.put_object(Bucket=BUCKET, Key="a\nb.jpg", Body=b"newline")

    assert s3.get_object(Bucket=BUCKET, Key="a\nb.jpg")["Body"].read() == b"newline"
    assert "a\nb.jpg" in listed_v2(s3, Prefix="a")
    s3.delete_object(Bucket=BUCKET, Key="a\nb.jpg")
    assert "a\nb.jpg" not in listed_v2(s3, Prefix="a")


def test_every_control_character_works_in_each_object_call(endpoint: str) -> None:
    s3 = client(endpoint)
    for character in CONTROL:
        key, copy = control_key(character, "one/"), control_key(character, "one-copy/")
        body = key.encode()
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        assert s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == len(body), repr(key)
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body, repr(key)
        s3.copy_object(Bucket=BUCKET, Key=copy, CopySource={"Bucket": BUCKET, "Key": key})
        assert s3.get_object(Bucket=BUCKET, Key=copy)["Body"].read() == body, repr(copy)
        assert listed_v2(s3, Prefix=key) == [key]
        for gone in (key, copy):
            s3.delete_object(Bucket=BUCKET, Key=gone)
            with pytest.raises(ClientError) as missing:
                s3.head_object(Bucket=BUCKET, Key=gone)
            assert missing.value.response["Error"]["Code"] == "404", repr(gone)


@pytest.fixture(scope="module")
def stored(endpoint: str) -> list[str]:
    """Every control key under ``ctl/``, with neighbours a careless decoder would confuse."""
    s3 = client(endpoint)
    keys = [control_key(character) for character in CONTROL]
    keys += ["ctl/plus+sign.jpg", "ctl/space here.jpg", "ctl/percent%41.jpg"]
    for key in keys:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    return sorted(keys)


def test_list_objects_v2_answers_every_key_exactly(endpoint: str, stored: list[str]) -> None:
    s3 = client(endpoint)

    assert listed_v2(s3, Prefix="ctl/") == stored
    assert listed_v2(s3, Prefix="ctl/", PaginationConfig={"PageSize": 3}) == stored
    for at, key in enumerate(stored):
        assert listed_v2(s3, Prefix="ctl/", StartAfter=key) == stored[at + 1 :], repr(key)
        page = s3.list_objects_v2(Bucket=BUCKET, Prefix="ctl/", StartAfter=key, MaxKeys=1)
        assert page["StartAfter"] == key


def test_prefix_and_delimiter_with_control_characters(endpoint: str, stored: list[str]) -> None:
    s3 = client(endpoint)
    for character in CONTROL:
        prefix = f"ctl/{ord(character):02x}-a{character}"
        page = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        assert page["Prefix"] == prefix
        assert [item["Key"] for item in page["Contents"]] == [control_key(character)]
        grouped = s3.list_objects_v2(Bucket=BUCKET, Prefix="ctl/", Delimiter=character)
        assert grouped["Delimiter"] == character
        assert [common["Prefix"] for common in grouped["CommonPrefixes"]] == [prefix]


def test_list_objects_by_marker(endpoint: str, stored: list[str]) -> None:
    s3 = client(endpoint)
    for at, key in enumerate(stored):
        page = s3.list_objects(Bucket=BUCKET, Prefix="ctl/", Marker=key)
        assert [item["Key"] for item in page.get("Contents", [])] == stored[at + 1 :], repr(key)


def test_list_object_versions_answers_every_key_exactly(endpoint: str) -> None:
    s3 = client(endpoint)
    keys = sorted(
        [control_key(character, "v/") for character in CONTROL]
        + ["v/plus+sign.jpg", "v/space here.jpg", "v/percent%41.jpg"]
    )
    for key in keys:
        s3.put_object(Bucket=VERSIONED, Key=key, Body=b"1")
        s3.delete_object(Bucket=VERSIONED, Key=key)

    listed = s3.list_object_versions(Bucket=VERSIONED, Prefix="v/")
    assert sorted(version["Key"] for version in listed["Versions"]) == keys
    assert sorted(marker["Key"] for marker in listed["DeleteMarkers"]) == keys
    for key in keys:
        echoed = s3.list_object_versions(Bucket=VERSIONED, Prefix="v/", KeyMarker=key)
        assert echoed["KeyMarker"] == key
    pages = s3.get_paginator("list_object_versions").paginate(
        Bucket=VERSIONED, Prefix="v/", PaginationConfig={"PageSize": 3}
    )
    paged = [v["Key"] for page in pages for v in page.get("Versions", [])]
    assert sorted(paged) == keys  # NextKeyMarker fed back as KeyMarker, each once


def test_without_url_encoding_the_xml_is_s3_s(endpoint: str, stored: list[str]) -> None:
    """S3 writes what XML 1.0 cannot carry as a character reference, the rest as it is."""
    status, body = signed_get(
        endpoint, f"/{BUCKET}?list-type=2&prefix=ctl%2F&start-after={quote('ctl/01-a', safe='')}"
    )
    assert status == 200
    text = body.decode()
    for character in CONTROL:
        written = character if character in XML_CARRIES else f"&#x{ord(character):x};"
        assert f"<Key>{control_key(character).replace(character, written)}</Key>" in text
    assert "<StartAfter>ctl/01-a</StartAfter>" in text
    status, body = signed_get(endpoint, f"/{BUCKET}?list-type=2&start-after=a%01")
    assert b"<StartAfter>a&#x1;</StartAfter>" in body


def test_an_unknown_encoding_type_is_refused(endpoint: str) -> None:
    status, body = signed_get(endpoint, f"/{BUCKET}?list-type=2&encoding-type=base64")
    assert status == 400
    assert b"<Code>InvalidArgument</Code>" in body


def test_delete_objects_takes_what_xml_carries(endpoint: str) -> None:
    s3 = client(endpoint)
    carried = ["del/a\tb", "del/a\nb", "del/a b&<>'\""]
    for key in [*carried, "del/a\x01b"]:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")

    deleted = s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in carried]})
    assert sorted(item["Key"] for item in deleted["Deleted"]) == sorted(carried)
    # botocore writes the key into XML as it is; XML 1.0 has no way to carry 0x01.
    with pytest.raises(ClientError) as refused:
        s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "del/a\x01b"}]})
    assert refused.value.response["Error"]["Code"] == "MalformedXML"
    assert listed_v2(s3, Prefix="del/") == ["del/a\x01b"]


def test_a_key_of_exactly_1024_bytes(endpoint: str) -> None:
    s3 = client(endpoint)
    head = "long/" + "".join(CONTROL) + "é"  # 5 + 32 + 2 bytes
    key = head + "k" * (1024 - len(head.encode()))
    assert len(key.encode()) == 1024

    s3.put_object(Bucket=BUCKET, Key=key, Body=b"long")
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"long"
    s3.copy_object(Bucket=BUCKET, Key=key[:-1] + "c", CopySource={"Bucket": BUCKET, "Key": key})
    assert listed_v2(s3, Prefix="long/") == sorted([key, key[:-1] + "c"])
    assert listed_v2(s3, Prefix="long/", StartAfter=key[:-1] + "c") == [key]
    with pytest.raises(ClientError) as too_long:
        s3.put_object(Bucket=BUCKET, Key=key + "k", Body=b"x")
    assert too_long.value.response["Error"]["Code"] == "KeyTooLongError"
    for gone in (key, key[:-1] + "c"):
        s3.delete_object(Bucket=BUCKET, Key=gone)
    assert listed_v2(s3, Prefix="long/") == []


def test_control_keys_survive_a_killed_server(cloud: dict[str, str], endpoint: str) -> None:
    """The journal replays their requests through the same routes (installed first)."""
    keys = ["crash/a\nb.jpg", "crash/a\x01\x1bb.jpg"]
    for key in keys:
        client(endpoint).put_object(Bucket=BUCKET, Key=key, Body=key.encode())
    port = int(cloud["IMGCLI_LOCAL_PORT"])
    pid = process.status(port, cloud).pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    while process.status(port, cloud).running:
        time.sleep(0.05)
    process.start(port, cloud)

    s3 = client(endpoint)
    for key in keys:
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == key.encode()
    assert listed_v2(s3, Prefix="crash/") == sorted(keys)


def test_s3_s_url_encoding_is_form_style() -> None:
    assert moto_s3_keys.url_encoded("a b+c/\x01%") == "a+b%2Bc/%01%25"
    assert moto_s3_keys.character_references("<K>a\x01\t\n\r\x7f\ufffe</K>") == (
        "<K>a&#x1;\t\n\r\x7f&#xfffe;</K>"
    )


def test_a_moved_s3_internal_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.s3 import urls
    from moto.s3.responses import S3Response

    moto_s3_keys.check_moto_internals()

    monkeypatch.setattr(urls, "url_paths", {"{0}/(?P<key_name>.*)": None})
    with pytest.raises(MotoInternalsChanged, match="object route"):
        moto_s3_keys.check_moto_internals()
    monkeypatch.undo()

    def list_objects_v2(self: Any) -> Any:
        raise AssertionError("never called")

    monkeypatch.setattr(S3Response, "list_objects_v2", list_objects_v2)
    with pytest.raises(MotoInternalsChanged, match="list_objects_v2"):
        moto_s3_keys.check_moto_internals()


def test_install_is_undone_and_not_doubled() -> None:
    from moto.s3.models import S3Backend
    from moto.s3.responses import S3Response

    before = vars(S3Response)["list_objects_v2"], vars(S3Backend)["_url_module"]
    uninstall = moto_s3_keys.install()
    try:
        with pytest.raises(RuntimeError, match="already installed"):
            moto_s3_keys.install()
    finally:
        uninstall()
    assert (vars(S3Response)["list_objects_v2"], vars(S3Backend)["_url_module"]) == before
