"""The gate's S3 rules: pre-signed URLs, streaming uploads, and AWS's limits (``gate``).

Through a real server (``tests.gate_harness``), so every upload that passes is also read
back from moto: the gate hands moto the body as it arrived, and moto must decode each
``aws-chunked`` form to the bytes the client meant.
"""

from __future__ import annotations

import calendar
import hashlib
import http.client
import io
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum

from imgcli.localcloud import sigv4
from imgcli.localcloud.gate_services import MAX_OBJECT_BYTES
from tests.gate_harness import (
    KEY,
    REGION,
    ROLE_KEY,
    ROLE_SECRET,
    ROLE_TOKEN,
    SECRET,
    Reply,
    Server,
    aws_chunked,
    client,
    crc32,
    send,
    serving_gate,
    signed,
)

BUCKET = "gate-s3-test-bucket"


@pytest.fixture(scope="module")
def running_server() -> Iterator[Server]:
    with serving_gate() as server:
        client(server, "s3").create_bucket(Bucket=BUCKET)
        yield server


@pytest.fixture
def server(running_server: Server) -> Server:
    return running_server.reset()


def body_of(server: Server, key: str) -> bytes:
    data: bytes = client(server, "s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return data


def missing(server: Server, key: str) -> bool:
    try:
        client(server, "s3").head_object(Bucket=BUCKET, Key=key)
    except ClientError as error:
        return bool(error.response["Error"]["Code"] == "404")
    return False


# --- boto3 ---------------------------------------------------------------------------------


def test_put_get_and_multipart_upload_work(server: Server) -> None:
    s3 = client(server, "s3")
    # werkzeug drops headers with "_"; moto keeps S3 metadata ones, signed as sent.
    s3.put_object(Bucket=BUCKET, Key="plain/a b+c.txt", Body=b"plain", Metadata={"my_key": "v"})
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="multi/part.bin")["UploadId"]
    parts = [b"1" * (5 * 1024 * 1024), b"2" * 1000]
    etags = [
        s3.upload_part(
            Bucket=BUCKET, Key="multi/part.bin", UploadId=upload, PartNumber=n, Body=part
        )["ETag"]
        for n, part in enumerate(parts, start=1)
    ]
    s3.complete_multipart_upload(
        Bucket=BUCKET,
        Key="multi/part.bin",
        UploadId=upload,
        MultipartUpload={"Parts": [{"ETag": e, "PartNumber": n} for n, e in enumerate(etags, 1)]},
    )

    assert body_of(server, "plain/a b+c.txt") == b"plain"
    assert s3.head_object(Bucket=BUCKET, Key="plain/a b+c.txt")["Metadata"] == {"my_key": "v"}
    assert body_of(server, "multi/part.bin") == b"".join(parts)


def presigner(server: Server, **credentials: Any) -> Any:
    """An S3 client that pre-signs with SigV4 (boto3's default is still SigV2 for that)."""
    return client(server, "s3", signature_version="s3v4", **credentials)


def test_presigned_get_and_put_work(server: Server) -> None:
    s3 = presigner(server)
    put_url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": BUCKET, "Key": "presigned/x y.txt"}, ExpiresIn=60
    )
    assert requests.put(put_url, data=b"presigned body", timeout=10).status_code == 200
    get_url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": "presigned/x y.txt"}, ExpiresIn=60
    )

    fetched = requests.get(get_url, timeout=10)
    assert (fetched.status_code, fetched.content) == (200, b"presigned body")


def test_a_role_session_s_presigned_url_needs_its_token(server: Server) -> None:
    s3 = presigner(server, key=ROLE_KEY, secret=ROLE_SECRET, token=ROLE_TOKEN)
    s3.put_object(Bucket=BUCKET, Key="role/object.txt", Body=b"role")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": "role/object.txt"}, ExpiresIn=60
    )
    token = next(part for part in url.split("&") if part.startswith("X-Amz-Security-Token="))

    assert requests.get(url, timeout=10).content == b"role"
    stripped = requests.get(url.replace("&" + token, ""), timeout=10)
    assert stripped.status_code == 403


# --- pre-signed URLs: expiry, wrong secret, and shapes moto would not serve as S3 ----------


def presigned_get(server: Server, key: str, *, expires: int, secret: str = SECRET) -> str:
    s3 = presigner(server, secret=secret)
    url: str = s3.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=expires
    )
    return url.removeprefix(server.endpoint)


def test_a_presigned_url_is_refused_from_the_second_it_expires(server: Server) -> None:
    client(server, "s3").put_object(Bucket=BUCKET, Key="expiring.txt", Body=b"soon gone")
    target = presigned_get(server, "expiring.txt", expires=1)
    stamp = target.split("X-Amz-Date=")[1][:16]
    signed_at = calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ"))

    server.clock.fixed = signed_at + 0.999
    assert send(server, "GET", target).status == 200
    server.clock.fixed = signed_at + 1
    refused = send(server, "GET", target)
    assert (refused.status, refused.code) == (403, "AccessDenied")
    assert b"Request has expired" in refused.body


def test_a_presigned_url_signed_with_a_wrong_secret_is_refused(server: Server) -> None:
    client(server, "s3").put_object(Bucket=BUCKET, Key="secret.txt", Body=b"secret")
    target = presigned_get(server, "secret.txt", expires=60, secret="not-the-secret")

    refused = send(server, "GET", target)
    assert (refused.status, refused.code) == (403, "SignatureDoesNotMatch")


def presigned_put(server: Server, key: str) -> str:
    url: str = presigner(server).generate_presigned_url(
        "put_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=60
    )
    return url.removeprefix(server.endpoint)


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        # moto would serve this as STS AssumeRoleWithWebIdentity: role credentials.
        (
            {"content-type": "application/x-www-form-urlencoded"},
            b"Action=AssumeRoleWithWebIdentity&RoleArn=arn:aws:iam::123456789012:role/r"
            b"&RoleSessionName=s&WebIdentityToken=t&Version=2011-06-15",
        ),
        ({"x-amz-target": "AWSCognitoIdentityService.ListIdentityPools"}, b"{}"),
        ({"x-amz-copy-source": f"{BUCKET}/secret.txt"}, b""),
    ],
)
def test_a_presigned_put_cannot_be_turned_into_another_request(
    server: Server, headers: dict[str, str], body: bytes
) -> None:
    reply = send(server, "PUT", presigned_put(server, "presigned/target.txt"), headers, body)

    assert (reply.status, reply.code) == (403, "AccessDenied")
    assert server.moto.principals == []


def test_signature_version_2_is_refused_with_a_hint(server: Server) -> None:
    client(server, "s3").put_object(Bucket=BUCKET, Key="v2.txt", Body=b"v2")
    url = client(server, "s3").generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": "v2.txt"}, ExpiresIn=60
    )
    assert "AWSAccessKeyId=" in url  # boto3's default for pre-signing S3

    reply = send(server, "GET", url.removeprefix(server.endpoint))
    assert reply.status == 400
    assert b"signature_version" in reply.body


def test_presigned_urls_for_other_services_are_refused(server: Server) -> None:
    request = AWSRequest(
        method="GET", url=f"{server.endpoint}/?Action=GetCallerIdentity&Version=2011-06-15"
    )
    from botocore.auth import SigV4QueryAuth

    SigV4QueryAuth(Credentials(KEY, SECRET), "sts", REGION, expires=60).add_auth(request)

    reply = send(server, "GET", request.url.removeprefix(server.endpoint))
    assert reply.status == 403
    assert server.moto.principals == []


# --- AWS's limits ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "accepted"),
    [("k" * 1024, True), ("k" * 1025, False), ("é" * 512, True), ("é" * 512 + "k", False)],
)
def test_keys_over_1024_bytes_are_refused(server: Server, key: str, accepted: bool) -> None:
    s3 = client(server, "s3")
    if accepted:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
        assert body_of(server, key) == b"x"
        return
    calls: list[Callable[[], Any]] = [
        lambda: s3.put_object(Bucket=BUCKET, Key=key, Body=b"x"),
        lambda: s3.create_multipart_upload(Bucket=BUCKET, Key=key),
        lambda: s3.copy_object(Bucket=BUCKET, Key=key, CopySource=f"{BUCKET}/plain/a b+c.txt"),
    ]
    for call in calls:
        with pytest.raises(ClientError) as refused:
            call()
        assert refused.value.response["Error"]["Code"] == "KeyTooLongError"
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert server.moto.principals == []


def raw_request(
    server: Server, method: str, target: str, headers: dict[str, str], body: Any = None
) -> Reply:
    """Exactly these headers (no Content-Length added); ``body`` may be chunks to stream."""
    connection = http.client.HTTPConnection(server.netloc, timeout=10)
    try:
        connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in {"host": server.netloc, **headers}.items():
            connection.putheader(name, value)
        connection.endheaders()
        for chunk in body or ():
            connection.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        if body is not None:
            connection.send(b"0\r\n\r\n")
        response = connection.getresponse()
        return Reply(response.status, dict(response.getheaders()), response.read())
    finally:
        connection.close()


def test_an_upload_over_5_gib_is_refused_before_its_body_is_read(server: Server) -> None:
    target = f"/{BUCKET}/huge.bin"
    size = str(MAX_OBJECT_BYTES + 1)
    headers = signed(
        server,
        "PUT",
        target,
        headers={"X-Amz-Content-SHA256": sigv4.UNSIGNED_PAYLOAD, "Content-Length": size},
    )

    reply = raw_request(server, "PUT", target, headers)  # no body follows
    assert (reply.status, reply.code) == (400, "EntityTooLarge")


def test_a_body_over_a_service_s_limit_is_refused_before_it_is_read(server: Server) -> None:
    headers = signed(
        server,
        "POST",
        "/",
        service="dynamodb",
        headers={"X-Amz-Target": "DynamoDB_20120810.ListTables"},
        body=b"{}",
    )
    headers["Content-Length"] = str(16 * 1024 * 1024 + 1)

    reply = raw_request(server, "POST", "/", headers)
    assert (reply.status, reply.code) == (413, "RequestEntityTooLarge")


def test_an_upload_with_neither_length_nor_chunks_needs_a_content_length(server: Server) -> None:
    target = f"/{BUCKET}/no-length.txt"
    headers = signed(server, "PUT", target)
    headers.pop("Content-Length", None)

    reply = raw_request(server, "PUT", target, headers)
    assert (reply.status, reply.code) == (411, "MissingContentLength")


def test_a_chunked_transfer_without_a_length_is_read_whole(server: Server) -> None:
    target = f"/{BUCKET}/http-chunked.txt"
    data = b"sent in http chunks"
    headers = signed(server, "PUT", target, body=data)
    headers.pop("Content-Length", None)
    headers["Transfer-Encoding"] = "chunked"

    reply = raw_request(server, "PUT", target, headers, [data[:7], data[7:]])
    assert reply.status == 200
    assert body_of(server, "http-chunked.txt") == data


# --- aws-chunked uploads, through moto -------------------------------------------------------


def streaming_headers(
    server: Server, target: str, payload: str, data: bytes, encoded_length: int, trailer: str
) -> dict[str, str]:
    headers = {
        "Content-Encoding": "aws-chunked",
        "Content-Length": str(encoded_length),
        "X-Amz-Content-SHA256": payload,
        "X-Amz-Decoded-Content-Length": str(len(data)),
        **({"X-Amz-Trailer": trailer} if trailer else {}),
    }
    request = AWSRequest(method="PUT", url=server.endpoint + target, headers=headers)
    # The plain signer: S3's would replace the streaming marker with a hash.
    SigV4Auth(Credentials(KEY, SECRET), "s3", REGION).add_auth(request)
    return dict(request.headers.items())


def chunked_upload(
    server: Server, key: str, payload: str, data: bytes, *, tamper: bool = False
) -> Reply:
    target = f"/{BUCKET}/{key}"
    trailer = "" if payload == sigv4.STREAMING_SIGNED else "x-amz-checksum-crc32"
    if payload == sigv4.STREAMING_UNSIGNED_TRAILER:
        wrapper = AwsChunkedWrapper(
            io.BytesIO(data), checksum_cls=Crc32Checksum, checksum_name=trailer, chunk_size=8192
        )
        body = wrapper.read()
        headers = streaming_headers(server, target, payload, data, len(body), trailer)
    else:
        with_trailer = (trailer, crc32(data)) if trailer else None

        def encode(seed: str, timestamp: str) -> bytes:
            return aws_chunked(
                data,
                seed_signature=seed,
                timestamp=timestamp,
                secret=SECRET,
                chunk_size=8192,
                trailer=with_trailer,
            )

        length = len(encode("0" * 64, "20250101T000000Z"))
        headers = streaming_headers(server, target, payload, data, length, trailer)
        seed = headers["Authorization"].rpartition("Signature=")[2]
        body = encode(seed, headers["X-Amz-Date"])
    if tamper:
        at = body.index(b"\r\n", body.index(b"\r\n") + 2) - 1  # last byte of chunk 1
        body = body[:at] + bytes([body[at] ^ 1]) + body[at + 1 :]
    return send(server, "PUT", target, headers, body)


PAYLOADS = [
    sigv4.STREAMING_SIGNED,
    sigv4.STREAMING_SIGNED_TRAILER,
    sigv4.STREAMING_UNSIGNED_TRAILER,
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_each_streaming_form_reaches_moto_as_the_bytes_sent(server: Server, payload: str) -> None:
    data = hashlib.sha256(payload.encode()).digest() * 1000  # 32,000 bytes, 4 chunks
    key = f"streamed/{payload.lower()}.bin"

    reply = chunked_upload(server, key, payload, data)

    assert reply.status == 200, reply.body
    assert body_of(server, key) == data


@pytest.mark.parametrize("payload", PAYLOADS[:2])
def test_a_tampered_chunk_is_refused_and_nothing_is_stored(server: Server, payload: str) -> None:
    key = f"tampered/{payload.lower()}.bin"

    reply = chunked_upload(server, key, payload, b"z" * 20000, tamper=True)

    assert (reply.status, reply.code) == (403, "SignatureDoesNotMatch")
    assert missing(server, key)


def test_an_unsigned_streaming_body_must_match_its_checksum(server: Server) -> None:
    key = "tampered/unsigned.bin"

    reply = chunked_upload(server, key, sigv4.STREAMING_UNSIGNED_TRAILER, b"q" * 20000, tamper=True)

    assert (reply.status, reply.code) == (400, "BadDigest")
    assert missing(server, key)
