"""The IAM policy evaluator (``iam_policy``): AWS's rules, examples first, then properties."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imgcli.infra import policies
from imgcli.infra.names import StackNames
from imgcli.lambdas.records import STATUS_INDEX
from imgcli.localcloud.iam_policy import (
    Caller,
    Decision,
    action_matches,
    evaluate,
    resource_matches,
)

NAMES = StackNames("demo", "123456789012", "us-east-1")
TABLE = NAMES.table_arn
BUCKET = NAMES.bucket_arn


def policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action: Any, resource: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: Any, resource: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def decide(documents: list[Any], action: str, resource: str, **kwargs: Any) -> Decision:
    return evaluate(documents, action, resource, **kwargs).decision


# --- the basic rules --------------------------------------------------------------------


def test_allow_explicit_deny_and_implicit_deny() -> None:
    documents = [policy(allow("s3:GetObject", f"{BUCKET}/*"))]
    assert decide(documents, "s3:GetObject", f"{BUCKET}/a.jpg") is Decision.ALLOW
    assert decide(documents, "s3:PutObject", f"{BUCKET}/a.jpg") is Decision.IMPLICIT_DENY
    assert decide(documents, "s3:GetObject", "arn:aws:s3:::other/a.jpg") is Decision.IMPLICIT_DENY
    assert decide([], "s3:GetObject", f"{BUCKET}/a.jpg") is Decision.IMPLICIT_DENY
    # A Deny anywhere, in any document, wins over every Allow.
    denied = [*documents, policy(deny("s3:*", f"{BUCKET}/private/*"))]
    assert decide(denied, "s3:GetObject", f"{BUCKET}/private/a.jpg") is Decision.EXPLICIT_DENY
    assert decide(denied, "s3:GetObject", f"{BUCKET}/public/a.jpg") is Decision.ALLOW


def test_single_strings_lists_and_the_not_elements() -> None:
    documents = [
        policy(
            allow(["dynamodb:GetItem", "dynamodb:PutItem"], [TABLE, f"{TABLE}/index/*"]),
            {"Effect": "Allow", "NotAction": "s3:*", "Resource": "arn:aws:sqs:*:*:*"},
            {"Effect": "Allow", "Action": "logs:*", "NotResource": "arn:aws:logs:*:*:secret*"},
        )
    ]
    assert decide(documents, "dynamodb:PutItem", TABLE) is Decision.ALLOW
    assert decide(documents, "dynamodb:GetItem", f"{TABLE}/index/by-status") is Decision.ALLOW
    assert decide(documents, "dynamodb:Scan", TABLE) is Decision.IMPLICIT_DENY
    queue = "arn:aws:sqs:us-east-1:123456789012:q"
    assert decide(documents, "sqs:SendMessage", queue) is Decision.ALLOW
    assert decide(documents, "s3:GetObject", queue) is Decision.IMPLICIT_DENY
    assert decide(documents, "logs:PutLogEvents", "arn:aws:logs:r:a:group") is Decision.ALLOW
    assert decide(documents, "logs:PutLogEvents", "arn:aws:logs:r:a:secrets") is (
        Decision.IMPLICIT_DENY
    )


def test_a_statement_that_cannot_be_read_does_not_apply_and_says_why() -> None:
    no_resource = {"Sid": "Bare", "Effect": "Allow", "Action": "s3:*"}
    odd_effect = {"Sid": "Odd", "Effect": "Maybe", "Action": "s3:*", "Resource": "*"}
    evaluation = evaluate([policy(no_resource, odd_effect), "{not json"], "s3:GetObject", "*")
    assert evaluation.decision is Decision.IMPLICIT_DENY
    assert any("'Bare'" in note and "no Resource" in note for note in evaluation.notes)
    assert any("'Odd'" in note for note in evaluation.notes)
    assert any("not JSON" in note for note in evaluation.notes)


def test_documents_may_be_json_text_as_iam_stores_them() -> None:
    text = json.dumps(policy(allow("sqs:SendMessage", "*")))
    assert decide([text], "sqs:SendMessage", "arn:aws:sqs:r:a:q") is Decision.ALLOW
    single = json.dumps({"Statement": allow("sqs:SendMessage", "*")})  # an object, not a list
    assert decide([single], "sqs:SendMessage", "arn:aws:sqs:r:a:q") is Decision.ALLOW


def test_the_deciding_statement_is_named() -> None:
    documents = [policy(allow("s3:*", "*", Sid="Everything"), deny("s3:Delete*", "*", Sid="No"))]
    assert evaluate(documents, "s3:GetObject", "*").sid == "Everything"
    assert evaluate(documents, "s3:DeleteObject", "*").sid == "No"


# --- wildcards --------------------------------------------------------------------------


def test_action_wildcards_are_case_insensitive() -> None:
    assert action_matches("s3:Get*", "s3:GetObjectVersion")
    assert action_matches("S3:GETOBJECT", "s3:GetObject")
    assert action_matches("dynamodb:?etItem", "dynamodb:GetItem")
    assert not action_matches("dynamodb:?etItem", "dynamodb:BatchGetItem")
    assert action_matches("*", "iam:ListRoles")
    assert not action_matches("s3:Get*", "s3:PutObject")


def test_resource_wildcards_are_case_sensitive_and_literal_otherwise() -> None:
    assert resource_matches(f"{BUCKET}/*", f"{BUCKET}/a/b/c.jpg")
    assert not resource_matches(f"{BUCKET}/*", f"{BUCKET.upper()}/a.jpg")
    assert resource_matches("arn:aws:s3:::b/photo-?.jpg", "arn:aws:s3:::b/photo-1.jpg")
    assert not resource_matches("arn:aws:s3:::b/photo-?.jpg", "arn:aws:s3:::b/photo-12.jpg")
    # A "." is a dot, not "any character" (moto's own matcher gets this wrong).
    assert not resource_matches("arn:aws:s3:::a.b", "arn:aws:s3:::aXb")
    assert not resource_matches("arn:aws:s3:::b/(x)+", "arn:aws:s3:::b/xx")


def test_arns_are_matched_part_by_part() -> None:
    assert resource_matches("arn:aws:sqs:*:*:q*", "arn:aws:sqs:us-east-1:123456789012:queue")
    # "*" in the region part cannot swallow the account part.
    assert not resource_matches("arn:aws:sqs:*:123:q", "arn:aws:sqs:us-east-1:999:x:123:q")
    # The resource part keeps its colons and slashes: a log stream under a group's ":*".
    group = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/fn"
    stream = f"{group}:log-stream:2025/01/01/[$LATEST]abc"
    assert resource_matches(f"{group}:*", stream)
    assert not resource_matches(f"{group}:*", f"{group}-other:log-stream:x")


# --- conditions -------------------------------------------------------------------------


def s3_may_invoke(source_arn: str, source_account: str) -> dict[str, Any]:
    """A Lambda resource policy as ``add_permission`` writes it."""
    return policy(
        {
            "Sid": "s3-invoke",
            "Effect": "Allow",
            "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "lambda:InvokeFunction",
            "Resource": NAMES.function_arn(NAMES.save_function),
            "Condition": {
                "ArnLike": {"AWS:SourceArn": source_arn},
                "StringEquals": {"AWS:SourceAccount": source_account},
            },
        }
    )


@pytest.mark.parametrize(
    ("caller", "source_arn", "source_account", "expected"),
    [
        (Caller(service="s3.amazonaws.com"), BUCKET, NAMES.account, Decision.ALLOW),
        (Caller(service="s3.amazonaws.com"), "arn:aws:s3:::other", NAMES.account, None),
        (Caller(service="s3.amazonaws.com"), BUCKET, "999999999999", None),
        (Caller(service="sns.amazonaws.com"), BUCKET, NAMES.account, None),
        (
            Caller(arn="arn:aws:iam::123456789012:role/r", account="123456789012"),
            BUCKET,
            NAMES.account,
            None,
        ),
    ],
)
def test_a_resource_policy_checks_principal_source_arn_and_account(
    caller: Caller, source_arn: str, source_account: str, expected: Decision | None
) -> None:
    context = {"aws:SourceArn": source_arn, "aws:SourceAccount": source_account}
    function = NAMES.function_arn(NAMES.save_function)
    decision = decide(
        [s3_may_invoke(BUCKET, NAMES.account)],
        "lambda:InvokeFunction",
        function,
        context=context,
        caller=caller,
    )
    assert decision is (expected or Decision.IMPLICIT_DENY)


def test_arn_like_wildcards_in_conditions() -> None:
    api_source = "arn:aws:execute-api:us-east-1:123456789012:abc123/*/GET/images/*"
    document = policy(
        allow(
            "lambda:InvokeFunction",
            "*",
            Principal={"Service": "apigateway.amazonaws.com"},
            Condition={"ArnLike": {"AWS:SourceArn": api_source}},
        )
    )
    caller = Caller(service="apigateway.amazonaws.com")

    def source(arn: str) -> Decision:
        context = {"aws:SourceArn": arn}
        return decide([document], "lambda:InvokeFunction", "*", context=context, caller=caller)

    base = "arn:aws:execute-api:us-east-1:123456789012"
    assert source(f"{base}:abc123/$default/GET/images/{{key+}}") is Decision.ALLOW
    assert source(f"{base}:abc123/$default/POST/images/a") is Decision.IMPLICIT_DENY
    assert source(f"{base}:other/$default/GET/images/a") is Decision.IMPLICIT_DENY


def test_aws_principals_by_account_and_by_arn() -> None:
    def by(principal: Any, caller: Caller) -> Decision:
        document = policy(allow("sqs:SendMessage", "*", Principal=principal))
        return decide([document], "sqs:SendMessage", "*", caller=caller)

    role = Caller(arn="arn:aws:iam::111111111111:role/r", account="111111111111")
    assert by("*", role) is Decision.ALLOW
    assert by({"AWS": "*"}, role) is Decision.ALLOW
    assert by({"AWS": "arn:aws:iam::111111111111:root"}, role) is Decision.ALLOW
    assert by({"AWS": "111111111111"}, role) is Decision.ALLOW
    assert by({"AWS": ["arn:aws:iam::222222222222:root", role.arn]}, role) is Decision.ALLOW
    assert by({"AWS": "222222222222"}, role) is Decision.IMPLICIT_DENY
    assert by({"Service": "s3.amazonaws.com"}, role) is Decision.IMPLICIT_DENY
    not_principal = policy({**allow("sqs:*", "*"), "NotPrincipal": {"AWS": "222222222222"}})
    evaluation = evaluate([not_principal], "sqs:SendMessage", "*", caller=role)
    assert evaluation.decision is Decision.IMPLICIT_DENY and "NotPrincipal" in evaluation.notes[0]


def test_bool_string_operators_and_if_exists() -> None:
    insecure = policy(
        allow("s3:*", "*"),
        deny("s3:*", "*", Condition={"Bool": {"aws:SecureTransport": "false"}}),
    )
    assert decide([insecure], "s3:GetObject", "*", context={"aws:SecureTransport": False}) is (
        Decision.EXPLICIT_DENY
    )
    assert decide([insecure], "s3:GetObject", "*", context={"aws:SecureTransport": True}) is (
        Decision.ALLOW
    )

    def with_condition(condition: dict[str, Any], context: dict[str, Any]) -> Decision:
        document = policy(allow("s3:GetObject", "*", Condition=condition))
        return decide([document], "s3:GetObject", "*", context=context)

    account = {"aws:PrincipalAccount": "123456789012"}
    assert with_condition({"StringEquals": {"aws:PrincipalAccount": "123456789012"}}, account) is (
        Decision.ALLOW
    )
    # Condition keys are case-insensitive, values are not (unless the operator says so).
    assert with_condition({"StringEquals": {"AWS:principalaccount": "123456789012"}}, account) is (
        Decision.ALLOW
    )
    region = {"aws:RequestedRegion": "us-east-1"}
    assert with_condition({"StringEquals": {"aws:RequestedRegion": "US-EAST-1"}}, region) is (
        Decision.IMPLICIT_DENY
    )
    assert (
        with_condition({"StringEqualsIgnoreCase": {"aws:RequestedRegion": "US-EAST-1"}}, region)
        is Decision.ALLOW
    )
    assert with_condition({"StringNotEquals": {"aws:RequestedRegion": "eu-west-1"}}, region) is (
        Decision.ALLOW
    )
    assert (
        with_condition(
            {"StringNotEquals": {"aws:RequestedRegion": ["eu-west-1", "us-east-1"]}}, region
        )
        is Decision.IMPLICIT_DENY
    )
    assert with_condition({"StringLike": {"aws:RequestedRegion": "us-*"}}, region) is (
        Decision.ALLOW
    )
    assert with_condition({"StringNotLike": {"aws:RequestedRegion": "us-*"}}, region) is (
        Decision.IMPLICIT_DENY
    )
    # Several operators and keys must all hold.
    both = {
        "StringEquals": {"aws:RequestedRegion": "us-east-1"},
        "StringLike": {"aws:PrincipalAccount": "9*"},
    }
    assert with_condition(both, {**region, **account}) is Decision.IMPLICIT_DENY
    # IfExists: a missing key satisfies the condition.
    assert with_condition({"StringEqualsIfExists": {"aws:SourceVpc": "vpc-1"}}, region) is (
        Decision.ALLOW
    )


def test_an_unknown_operator_or_key_makes_the_statement_not_apply() -> None:
    allow_if = policy(
        allow("s3:*", "*", Sid="Numbers", Condition={"NumericLessThan": {"s3:max-keys": "10"}})
    )
    evaluation = evaluate([allow_if], "s3:ListBucket", "*", context={"s3:max-keys": "5"})
    assert evaluation.decision is Decision.IMPLICIT_DENY
    assert "NumericLessThan is not supported" in evaluation.notes[0]
    # For a Deny that means it denies nothing: laxer than AWS, and the note says so.
    deny_if = policy(
        allow("s3:*", "*"),
        deny("s3:*", "*", Sid="Vpc", Condition={"StringEquals": {"aws:SourceVpc": "vpc-1"}}),
    )
    evaluation = evaluate([deny_if], "s3:ListBucket", "*")
    assert evaluation.decision is Decision.ALLOW
    assert "aws:SourceVpc is not known" in evaluation.notes[0]


# --- the stack's own policies -----------------------------------------------------------


def test_the_stacks_policies_allow_what_the_functions_do_and_nothing_else() -> None:
    save = [policies.save_function_policy(NAMES)]
    retrieve = [policies.retrieve_function_policy(NAMES)]
    group = NAMES.log_group_arn(NAMES.save_function)
    stream = f"{group}:log-stream:2025/01/01/[$LATEST]0123"

    assert decide(save, "s3:GetObject", f"{BUCKET}/photos/a b.jpg") is Decision.ALLOW
    assert decide(save, "s3:GetObjectVersion", f"{BUCKET}/a.jpg") is Decision.ALLOW
    assert decide(save, "s3:ListBucket", BUCKET) is Decision.ALLOW
    assert decide(save, "dynamodb:PutItem", TABLE) is Decision.ALLOW
    assert decide(save, "sqs:SendMessage", NAMES.failure_queue_arn) is Decision.ALLOW
    assert decide(save, "logs:CreateLogStream", stream) is Decision.ALLOW
    assert decide(save, "logs:PutLogEvents", stream) is Decision.ALLOW
    for action, resource in [
        ("s3:PutObject", f"{BUCKET}/a.jpg"),
        ("s3:DeleteObject", f"{BUCKET}/a.jpg"),
        ("dynamodb:Scan", TABLE),
        ("logs:CreateLogGroup", f"{group}:*"),
        ("logs:PutLogEvents", NAMES.log_group_arn(NAMES.retrieve_function) + ":log-stream:x"),
    ]:
        assert decide(save, action, resource) is Decision.IMPLICIT_DENY, action

    index = f"{TABLE}/index/{STATUS_INDEX}"
    assert decide(retrieve, "dynamodb:GetItem", TABLE) is Decision.ALLOW
    assert decide(retrieve, "dynamodb:Query", index) is Decision.ALLOW
    for action, resource in [
        ("dynamodb:Query", TABLE),
        ("dynamodb:Scan", TABLE),
        ("dynamodb:PutItem", TABLE),
        ("s3:PutObject", f"{BUCKET}/a.jpg"),
        ("iam:ListRoles", "*"),
        ("lambda:ListFunctions", "*"),
    ]:
        assert decide(retrieve, action, resource) is Decision.IMPLICIT_DENY, action


# --- properties -------------------------------------------------------------------------

_names = st.text(alphabet=st.characters(codec="ascii", exclude_characters="*?"), max_size=12)
_actions = st.builds(
    lambda service, name: f"{service}:{name}",
    st.sampled_from(["s3", "dynamodb", "sqs", "logs"]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ", min_size=1, max_size=12),
)
_resources = st.builds(
    lambda kind, text: f"arn:aws:{kind}:us-east-1:123456789012:{text}",
    st.sampled_from(["s3", "dynamodb", "sqs"]),
    _names,
)
_effects = st.sampled_from(["Allow", "Deny"])


@st.composite
def _statements(draw: st.DrawFn) -> dict[str, Any]:
    action = draw(st.one_of(_actions, st.just("*"), st.just("s3:*")))
    resource = draw(st.one_of(_resources, st.just("*")))
    return {"Effect": draw(_effects), "Action": action, "Resource": resource}


@given(st.lists(_statements(), max_size=8), _actions, _resources, st.randoms())
def test_order_never_changes_the_decision(
    statements: list[dict[str, Any]], action: str, resource: str, rng: random.Random
) -> None:
    shuffled = statements[:]
    rng.shuffle(shuffled)
    split = len(shuffled) // 2
    as_two_documents = [policy(*shuffled[:split]), policy(*shuffled[split:])]
    assert decide([policy(*statements)], action, resource) is decide(
        as_two_documents, action, resource
    )


@given(st.lists(_statements(), max_size=8), _actions, _resources)
def test_a_matching_deny_always_wins(
    statements: list[dict[str, Any]], action: str, resource: str
) -> None:
    documents = [policy(*statements, deny(action, resource))]
    assert decide(documents, action, resource) is Decision.EXPLICIT_DENY


@given(_actions, st.text(max_size=30), st.text(max_size=30))
def test_a_pattern_without_wildcards_matches_only_itself(
    action: str, pattern: str, resource: str
) -> None:
    literal = pattern.replace("*", "").replace("?", "")
    assert resource_matches(literal, resource) == (literal == resource)
    assert action_matches(action.swapcase(), action)


@given(st.text(alphabet=st.characters(exclude_characters=":"), max_size=30), st.data())
def test_replacing_any_part_by_a_star_still_matches(resource: str, data: st.DataObject) -> None:
    # Without colons: in an ARN a star stays within its part (test_arns_are_matched_part_by_part).
    start = data.draw(st.integers(0, len(resource)))
    end = data.draw(st.integers(start, len(resource)))
    pattern = resource[:start].replace("?", "*") + "*" + resource[end:].replace("?", "*")
    assert resource_matches(pattern, resource)
