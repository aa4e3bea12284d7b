"""Presigned S3 GET URLs, signed here rather than by botocore: the same bytes, at a fraction
of the cost.

The retrieve function hands out up to three URLs per item (the image and its two
thumbnails), so a page of 1,000 items is about 3,000 URLs. botocore's
``generate_presigned_url`` measured about 200 µs per URL on a full core (botocore 1.44;
it builds and serialises a whole request, runs its event hooks and derives the signing key
each time); on a 256 MB function (about 1/7 of a vCPU) that is over 4 s of a page. This
module signs one URL in a few µs: the signing key is derived once per (date, region),
the query parameters that do not depend on the key are built once per request, and each
URL costs one percent-encoding and two SHA-256 computations.

**What it does not decide.** Where a bucket's objects are addressed (endpoint, virtual-hosted
or path-style, the signing region) is botocore's to decide, from the S3 client's endpoint
and configuration: :meth:`BucketEndpoint.from_presigned_url` takes it from one URL botocore
presigned for a probe key, so the local cloud's ``http://127.0.0.1:<port>/<bucket>/`` and
AWS's ``https://<bucket>.s3.<region>.amazonaws.com/`` both come from botocore's own rules.

**What it reproduces exactly** (AWS, "Authenticating Requests: Using Query Parameters";
botocore's ``S3SigV4QueryAuth``): the key percent-encoded once (UTF-8, everything but
unreserved characters and ``/``), the path not normalised; the query parameters in
botocore's order (``X-Amz-Security-Token`` after ``X-Amz-SignedHeaders`` when the
credentials have a session token, ``X-Amz-Signature`` last); the canonical query sorted;
``host`` the only signed header (its port only when not the scheme's default);
``UNSIGNED-PAYLOAD``. ``tests/test_presign.py`` compares its URLs with botocore's, byte
for byte, over generated keys.

**Extra query parameters** (``parameters`` of :meth:`Presigner.signing`, e.g.
``response-content-type``, which makes S3 answer with that ``Content-Type`` instead of the
one the uploader stored) are signed like botocore signs an operation's query parameters:
in the URL before the ``X-Amz-*`` ones, in the order given (botocore keeps the order of
``Params``), names and values percent-encoded (UTF-8, everything but unreserved
characters), and in the canonical query sorted with the rest. They are fixed per
``UrlSigner``, so they cost nothing per URL; a caller with a few sets keeps a signer per set.

Pure: the standard library only, no boto3 or botocore import.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs, quote, urlsplit

ALGORITHM: Final = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD: Final = "UNSIGNED-PAYLOAD"
SERVICE: Final = "s3"
#: SigV4 query signing accepts at most seven days.
MAX_EXPIRES_S: Final = 604_800
_MAX_SIGNING_KEYS: Final = 8
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
#: What botocore leaves unencoded in a key (the path) and in a query value.
_PATH_SAFE: Final = "/~"
_QUERY_SAFE: Final = "-_.~"


@dataclass(frozen=True, slots=True)
class Credentials:
    """The credentials URLs are signed with; ``token`` for a role session."""

    access_key: str
    secret_key: str
    token: str | None = None


@dataclass(frozen=True, slots=True)
class BucketEndpoint:
    """Where one bucket's objects are addressed: everything of a URL before the key."""

    #: ``scheme://netloc`` exactly as botocore wrote it.
    origin: str
    #: The value of the signed ``host`` header.
    host: str
    #: The path before the encoded key: ``/`` (virtual-hosted) or ``/<bucket>/`` (path-style).
    path_prefix: str
    region: str

    @classmethod
    def from_presigned_url(cls, url: str, key: str) -> BucketEndpoint:
        """The endpoint of a SigV4 URL that botocore presigned for ``key`` (plain ASCII)."""
        parts = urlsplit(url)
        encoded = quote(key, safe=_PATH_SAFE)
        if not parts.path.endswith(encoded) or not parts.hostname:
            raise ValueError(f"not a presigned URL for {key!r}: {url!r}")
        credential = parse_qs(parts.query).get("X-Amz-Credential", [""])[0].split("/")
        if len(credential) != 5 or credential[3] != SERVICE:
            raise ValueError(f"not a SigV4 presigned S3 URL: {url!r}")
        host = parts.hostname
        if ":" in host:
            host = f"[{host}]"
        if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
            host = f"{host}:{parts.port}"
        return cls(
            origin=f"{parts.scheme}://{parts.netloc}",
            host=host,
            path_prefix=parts.path[: len(parts.path) - len(encoded)],
            region=credential[2],
        )


class Presigner:
    """Signs GET URLs with one set of credentials; keeps a signing key per (date, region)."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        #: How many signing keys were derived (each costs four HMACs).
        self.derivations = 0
        self._signing_keys: dict[tuple[str, str], bytes] = {}

    def signing(
        self,
        endpoint: BucketEndpoint,
        *,
        now: int,
        expires_s: int,
        parameters: Sequence[tuple[str, str]] = (),
    ) -> UrlSigner:
        """A signer of URLs for ``endpoint``'s objects, dated ``now`` (epoch seconds) and
        valid for ``expires_s`` seconds from then, each URL carrying ``parameters`` (name,
        value: e.g. ``("response-content-type", "image/png")``) in that order."""
        if not 1 <= expires_s <= MAX_EXPIRES_S:
            raise ValueError(f"expires_s must be 1 to {MAX_EXPIRES_S}, not {expires_s}")
        names = [name for name, _ in parameters]
        if len(set(names)) != len(names) or any(n.lower().startswith("x-amz-") for n in names):
            raise ValueError(f"parameters must have distinct names, none X-Amz-*: {names}")
        timestamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        date = timestamp[:8]
        scope = f"{date}/{endpoint.region}/{SERVICE}/aws4_request"
        return UrlSigner(
            endpoint,
            self._signing_key(date, endpoint.region),
            _query(self.credentials, scope, timestamp, expires_s, parameters),
            f"{ALGORITHM}\n{timestamp}\n{scope}\n",
        )

    def _signing_key(self, date: str, region: str) -> bytes:
        key = self._signing_keys.get((date, region))
        if key is None:
            key = f"AWS4{self.credentials.secret_key}".encode()
            for part in (date, region, SERVICE, "aws4_request"):
                key = hmac.digest(key, part.encode(), "sha256")
            if len(self._signing_keys) >= _MAX_SIGNING_KEYS:
                self._signing_keys.clear()  # a warm runtime lives for days: keep it bounded
            self._signing_keys[(date, region)] = key
            self.derivations += 1
        return key


class UrlSigner:
    """Signs URLs for one endpoint, time and expiry (:meth:`Presigner.signing`)."""

    def __init__(
        self,
        endpoint: BucketEndpoint,
        signing_key: bytes,
        parameters: tuple[str, str],
        string_to_sign_head: str,
    ) -> None:
        self._origin = endpoint.origin
        self._prefix = endpoint.path_prefix
        self._canonical_tail = (
            f"\n{parameters[1]}\nhost:{endpoint.host}\n\nhost\n{UNSIGNED_PAYLOAD}"
        )
        self._query = parameters[0]
        self._head = string_to_sign_head
        self._key = signing_key

    def __call__(self, key: str) -> str:
        """The presigned GET URL of ``key``."""
        path = self._prefix + quote(key, safe=_PATH_SAFE)
        canonical = f"GET\n{path}{self._canonical_tail}"
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        signature = hmac.new(self._key, (self._head + digest).encode(), "sha256").hexdigest()
        return f"{self._origin}{path}?{self._query}&X-Amz-Signature={signature}"


def _query(
    credentials: Credentials,
    scope: str,
    timestamp: str,
    expires_s: int,
    extra: Sequence[tuple[str, str]],
) -> tuple[str, str]:
    """The URL's query (in botocore's order: ``extra``, then the authentication parameters)
    and the canonical query (sorted by encoded name, then value)."""
    parameters = {
        "X-Amz-Algorithm": ALGORITHM,
        "X-Amz-Credential": f"{credentials.access_key}/{scope}",
        "X-Amz-Date": timestamp,
        "X-Amz-Expires": str(expires_s),
        "X-Amz-SignedHeaders": "host",
    }
    if credentials.token is not None:
        parameters["X-Amz-Security-Token"] = credentials.token
    encoded = [
        (quote(name, safe=_QUERY_SAFE), quote(value, safe=_QUERY_SAFE))
        for name, value in (*extra, *parameters.items())
    ]
    query = "&".join(f"{name}={value}" for name, value in encoded)
    canonical = "&".join(f"{name}={value}" for name, value in sorted(encoded))
    return query, canonical
