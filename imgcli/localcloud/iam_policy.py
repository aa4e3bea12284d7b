"""IAM policy evaluation, AWS's way, for the local cloud's role sessions and resource policies.

The local cloud authorises every call a role session makes (``authorizer``) and every
delivery a resource policy governs (S3 and API Gateway invoking a function), so a
least-privilege mistake shows locally as the AccessDenied it would be on AWS. This module
is the decision alone: policy documents, an action, a resource ARN and the request's
condition keys in; Allow, explicit Deny or implicit deny out. It knows nothing about moto,
HTTP or where policies live.

Decisions, each AWS's rule unless it says otherwise:

* **Evaluation.** An explicit ``Deny`` in any statement of any document wins; else any
  ``Allow`` allows; else the request is implicitly denied. Documents are identity policies
  (inline and attached managed ones alike) or one resource policy; permission boundaries,
  SCPs and session policies are not modelled.
* **Action** / **NotAction**, **Resource** / **NotResource**: a string or a list. A
  statement without either resource element does not apply (IAM refuses such an identity
  policy; a note says so).
* **Wildcards.** ``*`` (any run of characters, including none) and ``?`` (one character).
  Actions match case-insensitively, resources case-sensitively. An ARN pattern with six
  colon-separated parts is matched part by part against an ARN with six parts (the last
  part, the resource, may itself hold colons and slashes), as IAM does, so ``*`` in the
  region part never swallows the account; any other pattern is matched as a whole string.
  Policy variables (``${aws:username}``) are not substituted: they match literally.
* **Conditions**, a subset: ``StringEquals``, ``StringNotEquals``,
  ``StringEqualsIgnoreCase``, ``StringNotEqualsIgnoreCase``, ``StringLike``,
  ``StringNotLike``, ``ArnEquals``, ``ArnLike``, ``ArnNotEquals``, ``ArnNotLike`` and
  ``Bool``, each also with the ``IfExists`` suffix. Operators are ANDed, keys within one
  operator ANDed, a key's values ORed (negated operators: none may match). Condition keys
  are case-insensitive, as on AWS. Any other operator (``Numeric*``, ``Date*``, ``Null``,
  ``ForAnyValue:``...) and any key the caller did not supply make the statement **not
  apply**, whatever its effect, and add a note: this is stricter than AWS for an ``Allow``
  (it allows less) and laxer for a ``Deny`` (an unknown deny condition denies nothing), so
  the local cloud never invents an answer for a condition it cannot compute.
* **Trust policies** (:func:`evaluate_trust`) are resource policies without a
  ``Resource``: their statements apply to the role they belong to.
* **Principal** is read only when the caller is given (resource policies): ``"*"``,
  ``{"AWS": "*" | account id | ARN}`` (an account's ``:root`` ARN or its bare id matches
  every principal of that account) and ``{"Service": name}``. ``NotPrincipal`` is not
  supported and makes the statement not apply.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from typing import Any, Final

#: A policy document, parsed or as IAM stores it (a JSON string).
Document = Mapping[str, Any] | str
#: Condition key (any case) to its value(s) for this request.
Context = Mapping[str, str | bool | Sequence[str]]

_ARN_PARTS: Final = 6
_STRING_OPERATORS: Final = {
    "StringEquals": (False, False, False),
    "StringNotEquals": (True, False, False),
    "StringEqualsIgnoreCase": (False, False, True),
    "StringNotEqualsIgnoreCase": (True, False, True),
    "StringLike": (False, True, False),
    "StringNotLike": (True, True, False),
}
_ARN_OPERATORS: Final = {
    "ArnEquals": False,
    "ArnLike": False,
    "ArnNotEquals": True,
    "ArnNotLike": True,
}
_IF_EXISTS: Final = "IfExists"
#: Stands for "the role this trust policy belongs to": no ARN can equal it.
_TRUST_RESOURCE: Final = "\0trust-policy"


class Decision(Enum):
    """The outcome of evaluating a request against policies."""

    ALLOW = "allow"
    EXPLICIT_DENY = "explicit deny"
    IMPLICIT_DENY = "implicit deny"


@dataclass(frozen=True)
class Caller:
    """Who makes a request a resource policy judges: an AWS service, or an AWS principal."""

    #: ``"s3.amazonaws.com"`` for a service principal.
    service: str | None = None
    #: The caller's ARN (a role session's role ARN, a user) for an AWS principal.
    arn: str | None = None
    account: str | None = None


@dataclass(frozen=True)
class Evaluation:
    """A decision, with why: the ``Sid`` that decided (if it had one) and notes on every
    statement that could not be evaluated and therefore did not apply."""

    decision: Decision
    sid: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def allowed(self) -> bool:
        return self.decision is Decision.ALLOW


def evaluate(
    documents: Iterable[Document],
    action: str,
    resource: str,
    context: Context | None = None,
    *,
    caller: Caller | None = None,
) -> Evaluation:
    """Decides ``action`` on ``resource`` under ``documents``, AWS's way (module docstring).

    ``caller`` is for resource policies, whose statements name a ``Principal``; identity
    policies have none and are evaluated without one.
    """
    keys = {name.lower(): value for name, value in (context or {}).items()}
    notes: list[str] = []
    allowed = False
    allowing_sid: str | None = None
    for document in documents:
        for statement in _statements(document, notes):
            if not _applies(statement, action, resource, keys, caller, notes):
                continue
            sid = statement.get("Sid")
            if statement.get("Effect") == "Deny":
                return Evaluation(Decision.EXPLICIT_DENY, sid, tuple(notes))
            if not allowed:
                allowed, allowing_sid = True, sid
    if allowed:
        return Evaluation(Decision.ALLOW, allowing_sid, tuple(notes))
    return Evaluation(Decision.IMPLICIT_DENY, None, tuple(notes))


def evaluate_trust(
    document: Document, action: str, callers: Sequence[Caller], context: Context | None = None
) -> Evaluation:
    """Decides ``action`` (``sts:AssumeRole``) under a role's trust policy for a caller
    known by several ARNs (a role session is its role and its assumed-role ARN): allowed
    if a statement allows any of them, unless one explicitly denies any. Trust policies
    name no resource: their statements apply to the role they belong to."""
    evaluations = [
        evaluate([document], action, _TRUST_RESOURCE, context, caller=caller) for caller in callers
    ]
    notes = tuple(note for evaluation in evaluations for note in evaluation.notes)
    for evaluation in evaluations:
        if evaluation.decision is Decision.EXPLICIT_DENY:
            return Evaluation(Decision.EXPLICIT_DENY, evaluation.sid, notes)
    for evaluation in evaluations:
        if evaluation.allowed:
            return Evaluation(Decision.ALLOW, evaluation.sid, notes)
    return Evaluation(Decision.IMPLICIT_DENY, None, notes)


def action_matches(pattern: str, action: str) -> bool:
    """IAM action matching: wildcards, case-insensitive."""
    return _glob(pattern, ignore_case=True).fullmatch(action) is not None


def resource_matches(pattern: str, resource: str) -> bool:
    """IAM resource matching: wildcards, case-sensitive, ARNs part by part."""
    if pattern == "*":
        return True
    pattern_parts = pattern.split(":", _ARN_PARTS - 1)
    resource_parts = resource.split(":", _ARN_PARTS - 1)
    if len(pattern_parts) == len(resource_parts) == _ARN_PARTS:
        return all(
            _glob(part, ignore_case=False).fullmatch(value) is not None
            for part, value in zip(pattern_parts, resource_parts, strict=True)
        )
    return _glob(pattern, ignore_case=False).fullmatch(resource) is not None


def parse_document(document: Document) -> Mapping[str, Any]:
    """A policy document as a mapping; IAM hands them over as JSON strings."""
    if isinstance(document, str):
        return _parsed(document)
    return document


@lru_cache(maxsize=512)
def _parsed(text: str) -> Mapping[str, Any]:
    # Policies are re-read from IAM on every call (they may change at any moment); the
    # same text parses to the same document, so parse each text once.
    parsed = json.loads(text)
    if not isinstance(parsed, dict):
        raise ValueError("a policy document must be a JSON object")
    return parsed


def _statements(document: Document, notes: list[str]) -> list[Mapping[str, Any]]:
    try:
        parsed = parse_document(document)
    except ValueError as exc:
        notes.append(f"a policy document that is not JSON was skipped ({exc})")
        return []
    statements = parsed.get("Statement", [])
    if isinstance(statements, Mapping):
        statements = [statements]
    if not isinstance(statements, list):
        notes.append("a policy document whose Statement is neither an object nor a list")
        return []
    return [s for s in statements if isinstance(s, Mapping)]


def _applies(
    statement: Mapping[str, Any],
    action: str,
    resource: str,
    keys: Mapping[str, Any],
    caller: Caller | None,
    notes: list[str],
) -> bool:
    label = _label(statement)
    if statement.get("Effect") not in ("Allow", "Deny"):
        notes.append(f"{label}: Effect {statement.get('Effect')!r} is neither Allow nor Deny")
        return False
    if not _element_matches(statement, "Action", "NotAction", action, action_matches):
        return False
    if resource == _TRUST_RESOURCE:
        pass  # a trust policy's statements name no resource (evaluate_trust)
    elif "Resource" not in statement and "NotResource" not in statement:
        notes.append(f"{label}: no Resource or NotResource, so it applies to nothing")
        return False
    elif not _element_matches(statement, "Resource", "NotResource", resource, resource_matches):
        return False
    if caller is not None and not _principal_matches(statement, caller, label, notes):
        return False
    return _conditions_hold(statement.get("Condition"), keys, label, notes)


def _element_matches(
    statement: Mapping[str, Any], positive: str, negative: str, value: str, matches: Any
) -> bool:
    if positive in statement:
        return any(matches(pattern, value) for pattern in _strings(statement[positive]))
    if negative in statement:
        return not any(matches(pattern, value) for pattern in _strings(statement[negative]))
    return False


def _principal_matches(
    statement: Mapping[str, Any], caller: Caller, label: str, notes: list[str]
) -> bool:
    if "NotPrincipal" in statement:
        notes.append(f"{label}: NotPrincipal is not supported by the local cloud")
        return False
    principal = statement.get("Principal")
    if principal == "*":
        return True
    if not isinstance(principal, Mapping):
        return False
    if caller.service is not None:
        return caller.service in _strings(principal.get("Service", []))
    for named in _strings(principal.get("AWS", [])):
        if named in ("*", caller.arn):
            return True
        # An account, by id or as its root ARN, stands for every principal in it.
        account = (
            named.removesuffix(":root").rsplit(":", 1)[-1] if named.endswith(":root") else named
        )
        if caller.account is not None and account == caller.account:
            return True
    return False


def _conditions_hold(block: Any, keys: Mapping[str, Any], label: str, notes: list[str]) -> bool:
    if block is None:
        return True
    if not isinstance(block, Mapping):
        notes.append(f"{label}: a Condition that is not an object")
        return False
    for operator, tests in block.items():
        if not isinstance(tests, Mapping):
            notes.append(f"{label}: condition {operator} is not an object")
            return False
        for key, wanted in tests.items():
            verdict = _condition(str(operator), str(key), _strings(wanted), keys)
            if isinstance(verdict, str):
                notes.append(f"{label}: {verdict}, so the statement does not apply")
                return False
            if not verdict:
                return False
    return True


def _condition(operator: str, key: str, wanted: list[str], keys: Mapping[str, Any]) -> bool | str:
    """Whether one operator/key pair holds; a string says why it cannot be evaluated."""
    base = operator.removesuffix(_IF_EXISTS)
    if_exists = base != operator
    if base not in _STRING_OPERATORS and base not in _ARN_OPERATORS and base != "Bool":
        return f"condition operator {operator} is not supported by the local cloud"
    if key.lower() not in keys:
        if if_exists:
            return True
        return f"condition key {key} is not known to the local cloud for this request"
    actual = _strings(keys[key.lower()])
    if base == "Bool":
        return any(value.lower() in {w.lower() for w in wanted} for value in actual)
    if base in _ARN_OPERATORS:
        negated = _ARN_OPERATORS[base]
        hit = any(resource_matches(w, value) for w in wanted for value in actual)
        return not hit if negated else hit
    negated, like, ignore_case = _STRING_OPERATORS[base]
    if like:
        hit = any(
            _glob(w, ignore_case=False).fullmatch(value) is not None
            for w in wanted
            for value in actual
        )
    elif ignore_case:
        hit = any(w.lower() == value.lower() for w in wanted for value in actual)
    else:
        hit = any(w == value for w in wanted for value in actual)
    return not hit if negated else hit


def _strings(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [_text(item) for item in value]
    return [_text(value)]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _label(statement: Mapping[str, Any]) -> str:
    sid = statement.get("Sid")
    return f"statement {sid!r}" if sid else "a statement without Sid"


@lru_cache(maxsize=4096)
def _glob(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    regex = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
    )
    return re.compile(regex, re.DOTALL | (re.IGNORECASE if ignore_case else 0))
