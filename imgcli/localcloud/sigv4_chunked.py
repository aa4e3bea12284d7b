"""S3's streaming ``aws-chunked`` bodies, checked chunk by chunk before moto sees them.

S3 clients that cannot hash a body before sending it (the AWS SDKs' flexible checksums,
the Java and Go SDKs' streaming uploads, s5cmd) send it in ``aws-chunked`` framing, with
``x-amz-content-sha256`` naming the form instead of a hash (AWS's "Signature
Calculations for the Authorization Header: Transferring Payload in Multiple Chunks" and
"... for trailing headers"):

* ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``: ``<hex size>;chunk-signature=<sig>\\r\\n<data>\\r\\n``
  per chunk, ending with a zero-size chunk. Each chunk's signature is an HMAC, with the
  request's signing key, of ``AWS4-HMAC-SHA256-PAYLOAD``, the timestamp, the scope, the
  previous signature (the first chunk's: the Authorization header's, the "seed"), the
  empty string's SHA-256 and the chunk's, so no chunk can be changed, dropped, reordered
  or added without the secret.
* ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER``: the same, then trailing headers (a
  checksum) and ``x-amz-trailer-signature``, chained from the last chunk's signature
  over ``AWS4-HMAC-SHA256-TRAILER`` and the SHA-256 of the trailers as ``name:value\\n``.
* ``STREAMING-UNSIGNED-PAYLOAD-TRAILER``: ``<hex size>\\r\\n<data>\\r\\n`` chunks and the
  trailing checksum, unsigned (the Authorization header still signs the request). This
  is what botocore >= 1.36 and the AWS CLI send over https for flexible checksums; over
  http (the local cloud) the pinned botocore sends a plain signed SHA-256 instead.

The parser is strict: exact framing, sizes within ``x-amz-decoded-content-length`` and
adding up to it, the trailers ``x-amz-trailer`` announced and nothing after the end.
The trailing checksum is checked where the standard library can compute it (CRC32,
SHA-1, SHA-256; CRC32C and CRC64NVME need botocore's optional CRT and pass unchecked).

**moto gets the body as it arrived.** moto 5.2.5 decodes all three forms itself (its
``S3Response.setup_class``; a test puts each form through moto and reads the object
back), the journal records and replays the request exactly as the client sent it, and
moto keeps the trailing checksum as the object's. moto's decoder is lenient (it trusts
the sizes and ``x-amz-decoded-content-length``, and pre-allocates that many bytes), but
it only ever sees framing this parser accepted, which it decodes the same way.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from imgcli.localcloud.sigv4 import (
    STREAMING_SIGNED,
    STREAMING_SIGNED_TRAILER,
    STREAMING_UNSIGNED_TRAILER,
)
from imgcli.localcloud.sigv4_claim import Claim

EMPTY_SHA256: Final = hashlib.sha256(b"").hexdigest()
CHUNK_ALGORITHM: Final = "AWS4-HMAC-SHA256-PAYLOAD"
TRAILER_ALGORITHM: Final = "AWS4-HMAC-SHA256-TRAILER"
TRAILER_SIGNATURE: Final = "x-amz-trailer-signature"
#: A chunk header or trailer line longer than this is refused (minio's limit).
MAX_LINE: Final = 4096

_CHUNK_SIGNATURE: Final = b";chunk-signature="
_CRLF: Final = b"\r\n"
_HEX_DIGITS: Final = frozenset(b"0123456789abcdefABCDEF")

#: Checksums the standard library computes: trailer name -> base64 digest of the data.
CHECKSUMS: Final[Mapping[str, Callable[[bytes], bytes]]] = {
    "x-amz-checksum-crc32": lambda data: zlib.crc32(data).to_bytes(4, "big"),
    "x-amz-checksum-sha1": lambda data: hashlib.sha1(data).digest(),  # noqa: S324 - S3's
    "x-amz-checksum-sha256": lambda data: hashlib.sha256(data).digest(),
}


class ChunkRejected(Exception):
    """The body is not acceptable ``aws-chunked`` framing; ``code`` is S3's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ChunkSigning:
    """What each chunk signature is made from: the request's own signature and key."""

    timestamp: str
    scope: str
    seed_signature: str
    signing_key: bytes = field(repr=False)

    @classmethod
    def of(cls, claim: Claim, signing_key: bytes) -> ChunkSigning:
        return cls(claim.timestamp, claim.scope, claim.signature, signing_key)

    def chunk_signature(self, previous: str, data: bytes) -> str:
        return self._sign(CHUNK_ALGORITHM, previous, EMPTY_SHA256, hashlib.sha256(data).hexdigest())

    def trailer_signature(self, previous: str, canonical_trailers: bytes) -> str:
        return self._sign(
            TRAILER_ALGORITHM, previous, hashlib.sha256(canonical_trailers).hexdigest()
        )

    def _sign(self, algorithm: str, *parts: str) -> str:
        text = "\n".join((algorithm, self.timestamp, self.scope, *parts))
        return hmac.new(self.signing_key, text.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class DecodedBody:
    data: bytes
    trailers: Mapping[str, str]


def decode(
    body: bytes,
    *,
    payload: str,
    decoded_length: int,
    announced_trailers: str = "",
    signing: ChunkSigning | None = None,
) -> DecodedBody:
    """The data and trailers of an ``aws-chunked`` ``body`` sent as ``payload``, after
    checking every signature (``signing`` is needed for the two signed forms)."""
    signed = payload in (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER)
    if signed and signing is None:
        raise ValueError(f"{payload} needs the request's signing key")
    if payload not in (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER):
        raise ValueError(f"{payload!r} is not a streaming payload")
    reader = _Reader(body)
    previous = signing.seed_signature if signing is not None else ""
    pieces: list[bytes] = []
    total = 0
    while True:
        size, claimed = _chunk_header(reader.line(), signed=signed)
        if total + size > decoded_length:
            raise ChunkRejected(
                "IncompleteBody", "The chunks add up to more than x-amz-decoded-content-length."
            )
        data = reader.take(size)
        if signing is not None:
            expected = signing.chunk_signature(previous, data)
            if not hmac.compare_digest(expected.encode(), claimed.encode()):
                raise ChunkRejected(
                    "SignatureDoesNotMatch",
                    f"The signature of the chunk at decoded offset {total} does not match.",
                )
            previous = expected
        if size == 0:
            break
        reader.expect(_CRLF)
        pieces.append(data)
        total += size
    if total != decoded_length:
        raise ChunkRejected(
            "IncompleteBody",
            f"The chunks hold {total} bytes; x-amz-decoded-content-length says {decoded_length}.",
        )
    data = b"".join(pieces)
    trailers: dict[str, str] = {}
    if payload == STREAMING_SIGNED:
        reader.expect(_CRLF)
    else:
        trailers = _trailers(reader, announced_trailers, signing=signing, previous=previous)
        _check_checksums(trailers, data)
    if not reader.at_end():
        raise ChunkRejected("IncompleteBody", "There are bytes after the last chunk.")
    return DecodedBody(data, trailers)


def _chunk_header(line: bytes, *, signed: bool) -> tuple[int, str]:
    size_text, signature = line, b""
    if signed:
        size_text, marker, signature = line.partition(_CHUNK_SIGNATURE)
        if not marker or len(signature) != 64:
            raise ChunkRejected("IncompleteBody", "A chunk header lacks its chunk-signature.")
    if not size_text or len(size_text) > 16 or not set(size_text) <= _HEX_DIGITS:
        raise ChunkRejected("IncompleteBody", f"A chunk header has no valid size: {line[:64]!r}.")
    return int(size_text, 16), signature.decode("ascii", "replace")


def _trailers(
    reader: _Reader, announced: str, *, signing: ChunkSigning | None, previous: str
) -> dict[str, str]:
    trailers: dict[str, str] = {}
    canonical = b""
    signature: str | None = None
    while (line := reader.line()) != b"":
        name, colon, value = line.partition(b":")
        key = name.decode("ascii", "replace").strip().lower()
        text = value.decode("ascii", "replace").strip()
        if not colon or not key or key in trailers or signature is not None:
            raise ChunkRejected("IncompleteBody", f"A trailing header is malformed: {line[:64]!r}.")
        if key == TRAILER_SIGNATURE:
            signature = text
            continue
        trailers[key] = text
        canonical += f"{key}:{text}\n".encode()
    expected = {name.strip().lower() for name in announced.split(",") if name.strip()}
    if set(trailers) != expected:
        raise ChunkRejected(
            "InvalidRequest",
            f"The trailing headers {sorted(trailers)} are not the ones x-amz-trailer "
            f"announced ({sorted(expected)}).",
        )
    if signing is None:
        if signature is not None:
            raise ChunkRejected("IncompleteBody", "An unsigned payload's trailer is signed.")
        return trailers
    computed = signing.trailer_signature(previous, canonical)
    if signature is None or not hmac.compare_digest(computed.encode(), signature.encode()):
        raise ChunkRejected("SignatureDoesNotMatch", "The trailer signature does not match.")
    return trailers


def _check_checksums(trailers: Mapping[str, str], data: bytes) -> None:
    for name, value in trailers.items():
        digest = CHECKSUMS.get(name)
        if digest is None:
            continue
        computed = base64.b64encode(digest(data)).decode()
        if not hmac.compare_digest(computed.encode(), value.encode()):
            raise ChunkRejected(
                "BadDigest",
                f"The {name.removeprefix('x-amz-checksum-').upper()} you specified did not "
                "match the calculated checksum.",
            )


class _Reader:
    """A cursor over the body; running off its end is ``IncompleteBody``."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self._at = 0

    def line(self) -> bytes:
        end = self._body.find(_CRLF, self._at, self._at + MAX_LINE)
        if end < 0:
            raise ChunkRejected("IncompleteBody", "The body ends inside a chunk header.")
        line = self._body[self._at : end]
        self._at = end + len(_CRLF)
        return line

    def take(self, size: int) -> bytes:
        if self._at + size > len(self._body):
            raise ChunkRejected("IncompleteBody", "The body ends inside a chunk.")
        data = self._body[self._at : self._at + size]
        self._at += size
        return data

    def expect(self, marker: bytes) -> None:
        if self.take(len(marker)) != marker:
            raise ChunkRejected("IncompleteBody", "A chunk does not end with CRLF.")

    def at_end(self) -> bool:
        return self._at == len(self._body)
