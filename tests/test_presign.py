"""The retrieve function's own presigner signs exactly the URL botocore would.

For the same credentials and a frozen clock, ``presign.Presigner`` and botocore's
``generate_presigned_url`` must agree byte for byte: over generated keys (unicode, spaces,
``+``, ``%``, ``?``, ``#``, ``~``, control characters, leading and doubled slashes), for
path-style (the local cloud's 127.0.0.1) and virtual-hosted (AWS) endpoints, with and
without a session token. A URL that merely verifies would hide a difference in encoding
that S3 might read as another key.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.auth
import pytest
from botocore.config import Config
from hypothesis import given, settings
from hypothesis import strategies as st

from imgcli.lambdas.presign import BucketEndpoint, Credentials, Presigner

NOW = 1_765_000_000  # 2025-12-06T05:46:40Z
BUCKET = "imgcli-main-123456789012-eu-west-1"
PROBE = "imgcli-probe"
CREDENTIALS = [
    Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    Credentials(
        "ASIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "IQoJb3JpZ2luX2VjE+/=" + "A" * 700,
    ),
]
ENDPOINTS = {
    "local path-style": ("http://127.0.0.1:45123", "path", "us-east-1"),
    "aws virtual-hosted": (None, "virtual", "eu-west-1"),
    "aws path-style https:443": ("https://s3.eu-west-1.amazonaws.com:443", "path", "eu-west-1"),
}

keys = st.text(
    alphabet=st.one_of(
        st.sampled_from(list(" +%?#~/&=;:@!$'()*,\\\"<>[]^`{|}\t\n\r\x00\x7f.-_")),
        st.characters(codec="utf-8", exclude_categories=["Cs"]),
    ),
    min_size=1,
    max_size=60,
)


@pytest.fixture(autouse=True)
def frozen_botocore_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    frozen = datetime.datetime.fromtimestamp(NOW, datetime.UTC).replace(tzinfo=None)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *_, **__: frozen)


def s3_client(credentials: Credentials, endpoint: str | None, style: str, region: str) -> Any:
    return boto3.client(
        "s3",
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
        aws_session_token=credentials.token,
        config=Config(signature_version="s3v4", s3={"addressing_style": style}),
    )


def botocore_url(
    client: Any, key: str, expires: int = 900, params: dict[str, str] | None = None
) -> str:
    url: str = client.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": key, **(params or {})}, ExpiresIn=expires
    )
    return url


def cases() -> Iterator[tuple[str, Credentials, tuple[str | None, str, str]]]:
    for name, endpoint in ENDPOINTS.items():
        for credentials in CREDENTIALS:
            yield f"{name}, token={credentials.token is not None}", credentials, endpoint


CASES = list(cases())


@pytest.mark.parametrize(("case", "credentials", "endpoint"), CASES, ids=[c[0] for c in CASES])
@settings(max_examples=150, deadline=None)
@given(key=keys, expires=st.sampled_from([1, 900, 604_800]))
def test_urls_match_botocore_byte_for_byte(
    case: str,
    credentials: Credentials,
    endpoint: tuple[str | None, str, str],
    key: str,
    expires: int,
) -> None:
    client = s3_client(credentials, *endpoint)
    base = BucketEndpoint.from_presigned_url(botocore_url(client, PROBE), PROBE)
    sign = Presigner(credentials).signing(base, now=NOW, expires_s=expires)
    assert sign(key) == botocore_url(client, key, expires)


def test_the_endpoint_is_botocores_addressing() -> None:
    local = s3_client(CREDENTIALS[1], *ENDPOINTS["local path-style"])
    base = BucketEndpoint.from_presigned_url(botocore_url(local, PROBE), PROBE)
    assert base == BucketEndpoint(
        "http://127.0.0.1:45123", "127.0.0.1:45123", f"/{BUCKET}/", "us-east-1"
    )
    aws = s3_client(CREDENTIALS[1], *ENDPOINTS["aws virtual-hosted"])
    base = BucketEndpoint.from_presigned_url(botocore_url(aws, PROBE), PROBE)
    assert base.path_prefix == "/"
    assert (
        base.host == base.origin.removeprefix("https://") == f"{BUCKET}.s3.eu-west-1.amazonaws.com"
    )
    url = Presigner(CREDENTIALS[1]).signing(base, now=NOW, expires_s=900)("a b.jpg")
    assert "X-Amz-Security-Token=" in url and "UNSIGNED-PAYLOAD" not in url


def test_the_signing_key_is_derived_once_per_date_and_region() -> None:
    presigner = Presigner(CREDENTIALS[0])
    base = BucketEndpoint("https://b.example", "b.example", "/", "eu-west-1")
    midnight = NOW - NOW % 86_400
    for offset in range(0, 3 * 86_400, 3_600):
        presigner.signing(base, now=midnight + offset, expires_s=60)("k")
    assert presigner.derivations == 3


@pytest.mark.parametrize("expires", [0, -1, 604_801])
def test_an_expiry_sigv4_cannot_carry_is_refused(expires: int) -> None:
    base = BucketEndpoint("https://b.example", "b.example", "/", "eu-west-1")
    with pytest.raises(ValueError, match="expires_s"):
        Presigner(CREDENTIALS[0]).signing(base, now=NOW, expires_s=expires)


@pytest.mark.parametrize(
    "url",
    [
        "https://b.s3.amazonaws.com/other?X-Amz-Credential=A%2F20251206%2Fus-east-1%2Fs3%2Faws4_request",
        "https://b.s3.amazonaws.com/imgcli-probe?AWSAccessKeyId=A&Signature=x&Expires=1",
    ],
)
def test_an_endpoint_is_taken_only_from_a_sigv4_url_for_the_probe(url: str) -> None:
    with pytest.raises(ValueError):
        BucketEndpoint.from_presigned_url(url, PROBE)


#: The response overrides the API signs, and values a botocore round trip could mangle.
content_types = st.one_of(
    st.sampled_from(["image/png", "application/octet-stream", 'text/plain; charset="utf-8"']),
    st.text(min_size=1, max_size=30),
)
dispositions = st.one_of(
    st.sampled_from(["attachment", "inline", 'attachment; filename="a b+c%.jpg"']),
    st.text(min_size=1, max_size=30),
)


@pytest.mark.parametrize(("case", "credentials", "endpoint"), CASES, ids=[c[0] for c in CASES])
@settings(max_examples=100, deadline=None)
@given(
    key=keys,
    content_type=content_types,
    disposition=st.none() | dispositions,
    disposition_first=st.booleans(),
)
def test_urls_with_response_overrides_match_botocore_byte_for_byte(
    case: str,
    credentials: Credentials,
    endpoint: tuple[str | None, str, str],
    key: str,
    content_type: str,
    disposition: str | None,
    disposition_first: bool,
) -> None:
    client = s3_client(credentials, *endpoint)
    base = BucketEndpoint.from_presigned_url(botocore_url(client, PROBE), PROBE)
    overrides = [("ResponseContentType", "response-content-type", content_type)]
    if disposition is not None:
        entry = ("ResponseContentDisposition", "response-content-disposition", disposition)
        overrides.insert(0, entry) if disposition_first else overrides.append(entry)
    sign = Presigner(credentials).signing(
        base, now=NOW, expires_s=900, parameters=[(name, value) for _, name, value in overrides]
    )
    expected = botocore_url(client, key, params={param: value for param, _, value in overrides})
    assert sign(key) == expected


@pytest.mark.parametrize(
    "parameters",
    [
        [("response-content-type", "a"), ("response-content-type", "b")],
        [("X-Amz-Expires", "1")],
        [("x-amz-security-token", "t")],
    ],
)
def test_extra_parameters_cannot_repeat_or_replace_the_signatures_own(
    parameters: list[tuple[str, str]],
) -> None:
    base = BucketEndpoint("https://b.example", "b.example", "/", "eu-west-1")
    with pytest.raises(ValueError, match="parameters"):
        Presigner(CREDENTIALS[0]).signing(base, now=NOW, expires_s=60, parameters=parameters)
