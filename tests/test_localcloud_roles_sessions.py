"""Role sessions (``role_sessions``) and the moto internals behind roles (``role_policies``)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from imgcli.localcloud import MotoInternalsChanged, role_policies, role_sessions
from imgcli.localcloud.identity import Principal
from imgcli.localcloud.role_sessions import (
    IdentityChain,
    RoleSession,
    RoleSessions,
    assumed_role_arn,
)
from tests.lambda_runtime import spec_for

ROLE = "arn:aws:iam::123456789012:role/imgcli-demo-retrieve"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_issued_sessions_look_like_aws_temporary_credentials() -> None:
    clock = Clock()
    sessions = RoleSessions(clock=clock)
    session = sessions.issue(ROLE, "imgcli-demo-retrieve", duration_s=900)
    assert session.access_key_id.startswith("ASIA") and len(session.access_key_id) == 20
    assert session.access_key_id[4:].isalnum() and session.access_key_id.isupper()
    assert len(session.secret_access_key) >= 40 and session.session_token
    assert session.role_arn == ROLE and session.expires_at == clock.now + 900
    assert session.assumed_role_arn == (
        "arn:aws:sts::123456789012:assumed-role/imgcli-demo-retrieve/imgcli-demo-retrieve"
    )
    # Secrets stay out of logs and reprs.
    assert session.secret_access_key not in repr(session)
    assert session.session_token is not None and session.session_token not in repr(session)
    other = sessions.issue(ROLE, "x")
    assert len({session.access_key_id, other.access_key_id}) == 2
    assert sessions.lookup(session.access_key_id) == session
    assert sessions.lookup("ASIANOTHINGLIKETHIS0") is None
    assert sessions.lookup("imgcli-local") is None
    with pytest.raises(ValueError, match="not a role ARN"):
        sessions.issue("arn:aws:iam::123456789012:user/alice", "s")


def test_a_functions_session_is_named_after_it_and_needs_a_role() -> None:
    sessions = RoleSessions()
    session = sessions.for_function(spec_for("h.echo", name="save", role_arn=ROLE))
    assert isinstance(session, RoleSession)
    assert (session.role_arn, session.session_name) == (ROLE, "save")
    assert session.expires_at is not None
    with pytest.raises(ValueError, match="no execution role"):
        sessions.for_function(spec_for("h.echo"))


def test_expired_sessions_are_found_for_an_hour_then_forgotten() -> None:
    clock = Clock()
    sessions = RoleSessions(clock=clock)
    old = sessions.issue(ROLE, "old", duration_s=60)
    clock.now += 60 + role_sessions.EXPIRED_KEPT_S - 1
    sessions.issue(ROLE, "new")
    assert sessions.lookup(old.access_key_id) == old  # expired: the gate says so
    clock.now += 2
    sessions.issue(ROLE, "newer")
    assert sessions.lookup(old.access_key_id) is None


def test_an_identity_chain_asks_each_source_in_turn() -> None:
    owner = Principal("owner-key", "owner-secret")

    class Owner:
        def lookup(self, access_key_id: str) -> Principal | None:
            return owner if access_key_id == owner.access_key_id else None

    sessions = RoleSessions()
    session = sessions.issue(ROLE, "fn")
    chain = IdentityChain(Owner(), sessions)
    assert chain.lookup("owner-key") is owner
    assert chain.lookup(session.access_key_id) == session
    assert chain.lookup("ASIAUNKNOWN000000000") is None


def test_assumed_role_arns_drop_the_roles_path() -> None:
    assert assumed_role_arn("arn:aws:iam::1:role/service-role/r", "s") == (
        "arn:aws:sts::1:assumed-role/r/s"
    )


def test_sessions_moto_sts_issued_are_found(moto_aws: None) -> None:
    from moto.sts.models import sts_backends

    iam = boto3.client("iam", region_name="us-east-1")
    arn = iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    credentials = boto3.client("sts", region_name="us-east-1").assume_role(
        RoleArn=arn, RoleSessionName="cli", DurationSeconds=900
    )["Credentials"]

    assert role_sessions.missing_internals() == []
    [assumed] = sts_backends["123456789012"]["aws"].assumed_roles
    assert role_sessions.assumed_role_attributes_missing(assumed) == []
    found = RoleSessions().lookup(credentials["AccessKeyId"])
    assert isinstance(found, RoleSession)
    assert found.secret_access_key == credentials["SecretAccessKey"]
    assert found.session_token == credentials["SessionToken"]
    assert (found.role_arn, found.session_name) == (arn, "cli")
    assert found.expires_at == pytest.approx(credentials["Expiration"].timestamp(), abs=1)


def test_a_changed_moto_sts_session_fails_loudly(
    moto_aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.sts.models import sts_backends

    class Reshaped:
        access_key_id = "ASIARESHAPED00000000"  # but no secret_access_key, no role_arn...

    backend: Any = sts_backends["123456789012"]["aws"]
    monkeypatch.setattr(backend, "assumed_roles", [Reshaped()])
    with pytest.raises(MotoInternalsChanged, match="secret_access_key"):
        RoleSessions().lookup(Reshaped.access_key_id)


def test_role_policies_are_read_from_moto_iam(moto_aws: None) -> None:
    from moto.iam.models import iam_backends

    assert role_policies.missing_internals() == []
    iam = boto3.client("iam", region_name="us-east-1")
    arn = iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}", Path="/svc/")["Role"]["Arn"]
    inline = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
    }
    iam.put_role_policy(RoleName="r", PolicyName="inline", PolicyDocument=json.dumps(inline))
    managed = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Action": "s3:Delete*", "Resource": "*"}],
    }
    policy_arn = iam.create_policy(PolicyName="m", PolicyDocument=json.dumps(managed))["Policy"][
        "Arn"
    ]
    iam.attach_role_policy(RoleName="r", PolicyArn=policy_arn)
    newer = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Action": "s3:Put*", "Resource": "*"}],
    }
    iam.create_policy_version(
        PolicyArn=policy_arn, PolicyDocument=json.dumps(newer), SetAsDefault=True
    )

    role = iam_backends["123456789012"]["aws"].get_role("r")
    assert role_policies.role_attributes_missing(role) == []
    documents = [json.loads(text) for text in role_policies.role_policy_documents(arn)]
    assert documents == [inline, newer]  # the managed policy's default version
    assert role_policies.role_id(arn) == role.id
    assert role_policies.role_allows(arn, "s3:GetObject", "arn:aws:s3:::b/k", "us-east-1").allowed
    assert not role_policies.role_allows(arn, "s3:PutObject", "*", "us-east-1").allowed
    # The same name without the path is another role; a missing role has no policies.
    assert role_policies.role_policy_documents("arn:aws:iam::123456789012:role/r") == []
    assert role_policies.role_policy_documents("arn:aws:iam::123456789012:role/gone") == []
    assert role_policies.role_id("not an arn") is None


def test_a_changed_moto_role_fails_loudly(moto_aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.iam.models import Role

    iam = boto3.client("iam", region_name="us-east-1")
    arn = iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    monkeypatch.delattr(Role, "attached_managed_policies")  # harmless: not read
    assert role_policies.role_policy_documents(arn) == []
    role = (
        __import__("moto.iam.models", fromlist=["iam_backends"])
        .iam_backends["123456789012"]["aws"]
        .get_role("r")
    )
    monkeypatch.delattr(role, "managed_policies")
    with pytest.raises(MotoInternalsChanged, match="managed_policies"):
        role_policies.role_policy_documents(arn)
