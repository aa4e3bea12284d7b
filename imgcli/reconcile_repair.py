"""The client side of the save function's repair invocation: keys in, one outcome per key.

Every DynamoDB write stays inside the stack's functions (the seed's rule, and the table's
one writer), so ``reconcile`` never touches the table: it sends the keys that drifted to
the save function, which reads S3's current truth for each and writes so that it never
undoes a newer event (the race is the function's to settle: ``lambdas/save_delete.py``).

The invocation is synchronous (``RequestResponse``), so its answer is the outcome::

    {"imgcli": "repair", "version": 1, "bucket": "<bucket>", "keys": ["a.jpg", ...]}
    -> {"repaired": {"a.jpg": "indexed", ...}}

at most ``MAX_REPAIR_KEYS`` keys. ``indexed``, ``invalid``, ``removed``, ``unchanged`` and
``newer`` (a real event wrote the key meanwhile, and stands) are repairs that worked;
``failed: <reason>`` is one that did not. Whatever else comes back fails every key of the
batch with a reason saying why, and the run goes on with the next batch:

- ``FunctionError`` in the response: the function raised (the reason is its own
  ``errorType: errorMessage``);
- ``{"refused": "<reason>"}``: the function would not repair for this bucket (its
  ``BUCKET_NAME`` names another);
- an answer without ``repaired``: a function deployed before it knew repairs
  acknowledges the shape without acting, so the reason says to run ``imgcli bootstrap``;
- a key missing from ``repaired``.

An error of the call itself (credentials refused, the function gone, the endpoint down)
is not about a batch: it is raised, so the run stops with that error's own exit code.
botocore's ``standard`` retries already covered throttling and dropped connections, and a
repair sent twice is harmless (its writes are conditional).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from imgcli.lambdas import repair

#: The most keys one repair invocation takes (the function refuses more).
MAX_REPAIR_KEYS: Final = repair.MAX_KEYS
#: Outcomes that leave the index matching S3 for the key.
REPAIRED_OUTCOMES: Final = frozenset(repair.OUTCOMES)
FAILED_PREFIX: Final = repair.FAILED
#: How much of a function's error message goes into a key's reason.
MAX_REASON_CHARS: Final = 300


def repair_event(bucket: str, keys: Sequence[str]) -> dict[str, Any]:
    """The repair invocation's payload for ``keys`` of ``bucket``."""
    if not 1 <= len(keys) <= MAX_REPAIR_KEYS:
        raise ValueError(f"a repair takes 1 to {MAX_REPAIR_KEYS} keys, not {len(keys)}")
    return repair.repair_request(bucket, keys)


def repaired(outcome: str) -> bool:
    """Whether ``outcome`` leaves the key's record matching S3."""
    return outcome in REPAIRED_OUTCOMES


def failed(reason: str) -> str:
    """The outcome of a key whose repair failed for ``reason``."""
    return FAILED_PREFIX + reason


class SaveFunctionRepairs:
    """Repairs keys of ``bucket`` by invoking the stack's save function.

    ``lambda_client`` is a botocore Lambda client (thread-safe: batches are sent from
    several threads at once); ``function_name`` the stack's save function.
    """

    def __init__(self, lambda_client: Any, function_name: str, bucket: str) -> None:
        self._client = lambda_client
        self._function = function_name
        self._bucket = bucket

    def __call__(self, keys: Sequence[str]) -> dict[str, str]:
        """One outcome for each of ``keys`` (1 to ``MAX_REPAIR_KEYS``)."""
        payload = json.dumps(repair_event(self._bucket, keys)).encode()
        response = self._client.invoke(
            FunctionName=self._function, InvocationType="RequestResponse", Payload=payload
        )
        body = response["Payload"].read()
        return outcomes_of(keys, body, function_error=response.get("FunctionError"))


def outcomes_of(
    keys: Sequence[str], body: bytes, *, function_error: str | None = None
) -> dict[str, str]:
    """Each key's outcome from the function's answer ``body`` (see the module docstring)."""
    answer = _json(body)
    if function_error is not None:
        return dict.fromkeys(keys, failed(_function_failure(function_error, answer)))
    refused = answer.get("refused") if isinstance(answer, dict) else None
    if isinstance(refused, str):
        reason = f"the save function refused the repair: {refused[:MAX_REASON_CHARS]}"
        return dict.fromkeys(keys, failed(reason))
    outcomes = answer.get("repaired") if isinstance(answer, dict) else None
    if not isinstance(outcomes, Mapping):
        reason = (
            "the save function does not know the repair invocation (its code predates "
            "it): run 'imgcli bootstrap' to update it"
        )
        return dict.fromkeys(keys, failed(reason))
    result = {}
    for key in keys:
        outcome = outcomes.get(key)
        if not isinstance(outcome, str) or not outcome:
            outcome = failed("the save function's answer has no outcome for this key")
        elif not repaired(outcome) and not outcome.startswith(FAILED_PREFIX):
            outcome = failed(f"unknown outcome {outcome[:MAX_REASON_CHARS]!r}")
        result[key] = outcome
    return result


def _function_failure(function_error: str, answer: Any) -> str:
    if isinstance(answer, dict):
        kind = answer.get("errorType")
        message = answer.get("errorMessage")
        if isinstance(message, str):
            text = f"{kind}: {message}" if isinstance(kind, str) else message
            return f"the save function failed: {text[:MAX_REASON_CHARS]}"
    return f"the save function failed ({function_error})"


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None
