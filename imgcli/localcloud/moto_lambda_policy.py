"""A function's policy takes each statement id once, as Lambda's does.

AWS answers ``AddPermission`` with a statement id the policy already holds with
``ResourceConflictException`` (409, "The statement id (...) provided already exists.
Please provide a new statement id, or remove the existing statement."). moto 5.2.5
appends the statement again: two ``imgcli bootstrap`` runs at once each added their
permission and both functions ended with duplicate statements (issue 12). Bootstrap already
treats the conflict as "replace the statement", so answering as AWS does is the whole fix.

:func:`install` wraps ``moto.awslambda.policy.Policy.add_statement`` (which both
``AddPermission`` and ``AddLayerVersionPermission`` reach, one ``Policy`` per function
version or layer version, as AWS keeps one per qualifier): the id taken is refused before
moto parses the statement, and the check and moto's append happen under one lock, so two
concurrent requests cannot both find the id free (the journal's mutation lock serialises
them in the server too; this lock makes the rule hold without it). A request without a
statement id gets moto's generated one and is never refused. These are moto internals:
:func:`check_moto_internals` (run by ``install`` and by a test) fails loudly when an
upgrade moves them.
"""

from __future__ import annotations

import inspect
import json
import threading
from collections.abc import Callable
from typing import Any, Final

from moto.awslambda.models import LambdaBackend
from moto.awslambda.policy import Policy
from moto.core.exceptions import JsonRESTError

from imgcli.localcloud import MotoInternalsChanged

_METHOD: Final = "add_statement"
_PARAMETERS: Final = ("self", "raw", "qualifier")


class StatementIdTaken(JsonRESTError):
    """Lambda's answer to a statement id its policy already holds."""

    code = 409

    def __init__(self, statement_id: str) -> None:
        super().__init__(
            "ResourceConflictException",
            f"The statement id ({statement_id}) provided already exists. Please provide a "
            "new statement id, or remove the existing statement.",
        )


def install() -> Callable[[], None]:
    """Refuse a taken statement id in every Lambda policy; return the function that undoes it.

    Process-wide (it patches moto's ``Policy`` class), so at most one installation at a time.
    """
    check_moto_internals()
    with _install_lock:
        original = vars(Policy)[_METHOD]
        if getattr(original, "_imgcli_unique_ids", False):
            raise RuntimeError("the unique statement id rule is already installed")

        def add_statement(self: Any, raw: str, qualifier: str | None = None) -> Any:
            statement_id = _statement_id(raw)
            with _policy_lock:
                if statement_id is not None and any(
                    statement.get("Sid") == statement_id for statement in self.statements
                ):
                    raise StatementIdTaken(statement_id)
                return original(self, raw, qualifier)

        add_statement._imgcli_unique_ids = True  # type: ignore[attr-defined]
        setattr(Policy, _METHOD, add_statement)

    def uninstall() -> None:
        with _install_lock:
            if vars(Policy)[_METHOD] is add_statement:
                setattr(Policy, _METHOD, original)

    return uninstall


def _statement_id(raw: str) -> str | None:
    """The ``StatementId`` an AddPermission body names; ``None`` when it names none (moto
    then makes one up) or is not a JSON object (moto's own parsing answers that)."""
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    value = body.get("StatementId") if isinstance(body, dict) else None
    return value if isinstance(value, str) else None


def check_moto_internals() -> None:
    """Fail loudly, naming what moved, if the moto internals used here are not as expected."""
    problems: list[str] = []
    method = vars(Policy).get(_METHOD)
    if not callable(method) or tuple(inspect.signature(method).parameters) != _PARAMETERS:
        problems.append(f"moto.awslambda.policy.Policy.{_METHOD}{_PARAMETERS} changed")
    policy: Any = Policy  # built without a function below: only its shape counts
    if not isinstance(getattr(policy(None), "statements", None), list):
        problems.append("moto.awslambda.policy.Policy.statements is no longer a list")
    backend = getattr(LambdaBackend, "add_permission", None)
    if not callable(backend) or f".policy.{_METHOD}(" not in inspect.getsource(backend):
        problems.append(f"LambdaBackend.add_permission no longer calls Policy.{_METHOD}")
    if problems:
        raise MotoInternalsChanged(
            "imgcli's Lambda policy rule needs moto internals that moved: " + "; ".join(problems)
        )


_install_lock = threading.Lock()
_policy_lock = threading.Lock()
