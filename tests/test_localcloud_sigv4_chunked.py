"""S3's streaming ``aws-chunked`` bodies (``sigv4_chunked``), checked against AWS's examples.

AWS publishes a chunked upload (S3 API reference, "Signature Calculations for the
Authorization Header: Transferring Payload in Multiple Chunks" and "... for trailing
headers"): 66,560 bytes of ``a`` in chunks of 64 KiB and 1 KiB, signed with
``wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY`` at 2013-05-24T00:00:00Z. The test encoder
(``tests.gate_harness.aws_chunked``) must reproduce its signatures, so the bodies it
writes for the other tests are what an SDK sends; the unsigned form is botocore's own
(``AwsChunkedWrapper``).
"""

from __future__ import annotations

import io

import pytest
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum

from imgcli.localcloud import sigv4
from imgcli.localcloud.gate import FixedIdentities
from imgcli.localcloud.identity import Principal
from imgcli.localcloud.sigv4_chunked import ChunkRejected, ChunkSigning, decode
from imgcli.localcloud.sigv4_claim import SignedRequest
from tests.gate_harness import aws_chunked, crc32, signing_key

AWS_KEY, AWS_SECRET = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TIMESTAMP = "20130524T000000Z"
SCOPE = "20130524/us-east-1/s3/aws4_request"
DATA = b"a" * 66560
SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
CHUNK_SIGNATURES = [
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
]
TRAILER_SEED = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
TRAILER = ("x-amz-checksum-crc32c", "sOO8/Q==")
TRAILER_SIGNATURE = "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"


def signing(seed: str = SEED) -> ChunkSigning:
    return ChunkSigning(TIMESTAMP, SCOPE, seed, signing_key(AWS_SECRET, TIMESTAMP[:8]))


def example_body() -> bytes:
    return aws_chunked(DATA, seed_signature=SEED, timestamp=TIMESTAMP, secret=AWS_SECRET)


def test_the_test_encoder_writes_aws_s_published_example() -> None:
    body = example_body()
    trailer_body = aws_chunked(
        DATA, seed_signature=TRAILER_SEED, timestamp=TIMESTAMP, secret=AWS_SECRET, trailer=TRAILER
    )

    assert len(body) == 66824  # the example's Content-Length
    for signature in CHUNK_SIGNATURES:
        assert f";chunk-signature={signature}\r\n".encode() in body
    assert f"x-amz-trailer-signature:{TRAILER_SIGNATURE}\r\n".encode() in trailer_body


def test_aws_s_example_request_verifies_from_its_headers_to_its_last_chunk() -> None:
    request = SignedRequest(
        "PUT",
        "/examplebucket/chunkObject.txt",
        "",
        {
            "content-encoding": "aws-chunked",
            "content-length": "66824",
            "host": "s3.amazonaws.com",
            "x-amz-content-sha256": sigv4.STREAMING_SIGNED,
            "x-amz-date": TIMESTAMP,
            "x-amz-decoded-content-length": "66560",
            "x-amz-storage-class": "REDUCED_REDUNDANCY",
            "authorization": f"AWS4-HMAC-SHA256 Credential={AWS_KEY}/{SCOPE},SignedHeaders="
            "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
            f"x-amz-decoded-content-length;x-amz-storage-class,Signature={SEED}",
        },
    )
    verified = sigv4.verify(
        request,
        example_body(),
        identities=FixedIdentities([Principal(AWS_KEY, AWS_SECRET)]),
        region="us-east-1",
        service="s3",
        now=1369353600.0,
    )

    decoded = decode(
        example_body(),
        payload=verified.payload,
        decoded_length=66560,
        signing=ChunkSigning.of(verified.claim, verified.signing_key),
    )
    assert decoded.data == DATA


def test_the_trailer_form_checks_the_trailer_signature() -> None:
    body = aws_chunked(
        DATA, seed_signature=TRAILER_SEED, timestamp=TIMESTAMP, secret=AWS_SECRET, trailer=TRAILER
    )

    decoded = decode(
        body,
        payload=sigv4.STREAMING_SIGNED_TRAILER,
        decoded_length=len(DATA),
        announced_trailers="x-amz-checksum-crc32c",
        signing=signing(TRAILER_SEED),
    )
    assert decoded.trailers == {"x-amz-checksum-crc32c": "sOO8/Q=="}
    forged = body.replace(b"sOO8/Q==", b"AAAAAA==")
    with pytest.raises(ChunkRejected) as refused:
        decode(
            forged,
            payload=sigv4.STREAMING_SIGNED_TRAILER,
            decoded_length=len(DATA),
            announced_trailers="x-amz-checksum-crc32c",
            signing=signing(TRAILER_SEED),
        )
    assert refused.value.code == "SignatureDoesNotMatch"


def _flip_first_data_byte(body: bytes) -> bytes:
    at = body.index(b"\r\n") + 2
    return body[:at] + b"b" + body[at + 1 :]


def _swap_chunks(body: bytes) -> bytes:
    first_end = body.index(b"\r\n", body.index(b"\r\n") + 2) + 2
    second_end = body.index(b"\r\n", body.index(b"\r\n", first_end) + 2) + 2
    return body[first_end:second_end] + body[:first_end] + body[second_end:]


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        (_flip_first_data_byte, "SignatureDoesNotMatch"),
        (_swap_chunks, "SignatureDoesNotMatch"),
        (lambda body: body[:-2], "IncompleteBody"),
        (lambda body: body + b"extra", "IncompleteBody"),
        (lambda body: body.replace(b";chunk-signature=", b";chunk-signaturX", 1), "IncompleteBody"),
        (lambda body: body.replace(b"10000;", b"10001;", 1), "SignatureDoesNotMatch"),
    ],
)
def test_a_changed_body_is_refused(tamper: object, code: str) -> None:
    assert callable(tamper)
    with pytest.raises(ChunkRejected) as refused:
        decode(
            tamper(example_body()),
            payload=sigv4.STREAMING_SIGNED,
            decoded_length=len(DATA),
            signing=signing(),
        )
    assert refused.value.code == code


def test_chunks_must_add_up_to_the_decoded_length() -> None:
    # moto pre-allocates x-amz-decoded-content-length bytes and pads: it must be exact.
    for claimed in (len(DATA) - 1, len(DATA) + 1):
        with pytest.raises(ChunkRejected) as refused:
            decode(
                example_body(),
                payload=sigv4.STREAMING_SIGNED,
                decoded_length=claimed,
                signing=signing(),
            )
        assert refused.value.code == "IncompleteBody"


def botocore_unsigned(data: bytes) -> bytes:
    wrapper = AwsChunkedWrapper(
        io.BytesIO(data),
        checksum_cls=Crc32Checksum,
        checksum_name="x-amz-checksum-crc32",
        chunk_size=4096,
    )
    body: bytes = wrapper.read()
    return body


def test_botocore_s_unsigned_trailer_form_is_decoded_and_its_crc32_checked() -> None:
    data = bytes(range(256)) * 40
    body = botocore_unsigned(data)

    decoded = decode(
        body,
        payload=sigv4.STREAMING_UNSIGNED_TRAILER,
        decoded_length=len(data),
        announced_trailers="x-amz-checksum-crc32",
    )
    assert decoded.data == data
    assert decoded.trailers == {"x-amz-checksum-crc32": crc32(data)}
    wrong = body.replace(crc32(data).encode(), crc32(b"other").encode())
    with pytest.raises(ChunkRejected) as refused:
        decode(
            wrong,
            payload=sigv4.STREAMING_UNSIGNED_TRAILER,
            decoded_length=len(data),
            announced_trailers="x-amz-checksum-crc32",
        )
    assert refused.value.code == "BadDigest"


def test_trailers_must_be_the_announced_ones() -> None:
    body = botocore_unsigned(b"data")

    with pytest.raises(ChunkRejected) as refused:
        decode(
            body,
            payload=sigv4.STREAMING_UNSIGNED_TRAILER,
            decoded_length=4,
            announced_trailers="x-amz-checksum-sha256",
        )
    assert refused.value.code == "InvalidRequest"
