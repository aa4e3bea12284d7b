"""The desired stack as data: names, tags, policies and options."""

from __future__ import annotations

import pytest

from imgcli.infra.errors import InvalidStackName
from imgcli.infra.names import StackNames
from imgcli.infra.resources import FunctionCode, Kind, StackOptions, desired_stack

NAMES = StackNames("demo", "123456789012", "eu-west-1")
CODE = FunctionCode(b"zip", "sha", "python3.13")


def test_bucket_name_is_global_unique_and_short_enough() -> None:
    assert NAMES.bucket == "imgcli-demo-123456789012-eu-west-1"
    long = StackNames("a" * 23, "123456789012", "ap-southeast-2")
    assert (
        len(long.bucket) <= 63
        and long.bucket != StackNames("a" * 22, "123456789012", "ap-southeast-2").bucket
    )


@pytest.mark.parametrize("bad", ["", "Demo", "1st", "a_b", "a--b", "a-", "x" * 24])
def test_stack_names_that_cannot_name_aws_resources_are_refused(bad: str) -> None:
    with pytest.raises(InvalidStackName):
        StackNames(bad, "123456789012", "us-east-1")


def test_every_taggable_resource_carries_the_stack_tag() -> None:
    for resource in desired_stack(NAMES, StackOptions(), CODE):
        if resource.kind in (Kind.PERMISSION, Kind.NOTIFICATION):
            continue  # not taggable in AWS
        assert resource.settings["tags"] == {"imgcli:stack": "demo"}, resource.label


def bucket_settings(options: StackOptions) -> dict[str, object]:
    (bucket,) = [r for r in desired_stack(NAMES, options, CODE) if r.kind is Kind.BUCKET]
    return dict(bucket.settings)


def test_aws_buckets_deny_requests_without_tls() -> None:
    policy = bucket_settings(StackOptions())["policy"]
    (statement,) = policy["Statement"]  # type: ignore[index]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_a_stack_without_tls_has_no_bucket_policy() -> None:
    assert "policy" not in bucket_settings(StackOptions(require_tls=False))


def test_options_reach_their_settings() -> None:
    options = StackOptions(architecture="x86_64", noncurrent_version_days=90)
    settings = bucket_settings(options)
    rules = {rule["ID"]: rule for rule in settings["lifecycle"]}  # type: ignore[attr-defined]
    assert rules["expire-noncurrent-versions"]["NoncurrentVersionExpiration"] == {
        "NoncurrentDays": 90
    }
    functions = [r for r in desired_stack(NAMES, options, CODE) if r.kind is Kind.FUNCTION]
    assert {f.settings["architecture"] for f in functions} == {"x86_64"}
    assert all(f.payload == b"zip" for f in functions)


def test_the_thumbnails_bucket_is_hardened_as_the_gallery_but_not_versioned() -> None:
    stack = desired_stack(NAMES, StackOptions(), CODE)
    kinds = [r.kind for r in stack]
    assert kinds.index(Kind.THUMBNAILS_BUCKET) == kinds.index(Kind.BUCKET) + 1
    (thumbnails,) = [r for r in stack if r.kind is Kind.THUMBNAILS_BUCKET]
    assert thumbnails.name == "imgcli-demo-thumbs-123456789012-eu-west-1"
    gallery = bucket_settings(StackOptions())
    settings = dict(thumbnails.settings)
    for setting in ("public_access_block", "ownership", "encryption", "tags"):
        assert settings[setting] == gallery[setting], setting
    (deny,) = settings["policy"]["Statement"]
    assert deny["Resource"] == [NAMES.thumbnails_bucket_arn, f"{NAMES.thumbnails_bucket_arn}/*"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert "versioning" not in settings
    assert [rule["ID"] for rule in settings["lifecycle"]] == ["abort-incomplete-multipart-uploads"]
    # No notification names it: the save function's writes there trigger nothing.
    notifications = [r for r in stack if r.kind is Kind.NOTIFICATION]
    assert [n.name for n in notifications] == [NAMES.bucket]


def test_the_links_expiry_reaches_the_retrieve_function_only() -> None:
    stack = desired_stack(NAMES, StackOptions(url_expiry_s=120), CODE)
    environments = {r.name: r.settings["environment"] for r in stack if r.kind is Kind.FUNCTION}
    assert environments[NAMES.retrieve_function]["URL_EXPIRES_S"] == "120"
    assert "URL_EXPIRES_S" not in environments[NAMES.save_function]
    assert StackOptions.from_record({}).url_expiry_s == 900  # a record from before it
