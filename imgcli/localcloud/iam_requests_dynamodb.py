"""DynamoDB requests as the IAM permissions AWS checks for them.

``TableName`` → ``arn:aws:dynamodb:<region>:<account>:table/<name>`` (a name may already be
an ARN); Query and Scan with ``IndexName`` → ``.../table/<name>/index/<index>``;
BatchGetItem and BatchWriteItem → one check per table; TransactWriteItems and
TransactGetItems → ``PutItem``/``UpdateItem``/``DeleteItem``/``ConditionCheckItem``/
``GetItem`` on each item's table, as AWS checks them; ``ResourceArn`` for tagging and
resource policies; ListTables and the other account-wide calls on ``*``.

Only the members the operation's input shape defines (botocore's model of DynamoDB) are
read: moto parses the request with that model, so a ``TableName`` beside a PartiQL
statement is a decoy moto never reads. PartiQL (``ExecuteStatement``,
``BatchExecuteStatement``, ``ExecuteTransaction``) is authorised as AWS does, per
statement: ``dynamodb:PartiQLSelect``/``Insert``/``Update``/``Delete`` on each table the
statement names (and its index, for ``FROM "table"."index"``). Table names are read from
every ``FROM``, ``INTO`` and ``UPDATE`` in the statement, literals included, so a name
hidden anywhere only adds checks; a statement whose kind or some table reference cannot
be read is authorised as the operation on ``*``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any, Final

from imgcli.localcloud.iam_request_model import (
    ANY_RESOURCE,
    HttpRequest,
    Permission,
    Protocol,
    RequiredPermissions,
    one,
    unmapped,
)

_ACCOUNT_WIDE: Final = frozenset(
    {
        "ListTables",
        "DescribeLimits",
        "DescribeEndpoints",
        "ListBackups",
        "ListGlobalTables",
        "ListExports",
        "ListImports",
        "ListContributorInsights",
    }
)
_TRANSACT_ACTIONS: Final = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}
#: Where each PartiQL operation keeps its statements: (list member or ``None``, member).
_PARTIQL: Final = {
    "ExecuteStatement": (None, "Statement"),
    "BatchExecuteStatement": ("Statements", "Statement"),
    "ExecuteTransaction": ("TransactStatements", "Statement"),
}
_PARTIQL_ACTIONS: Final = {
    "SELECT": "PartiQLSelect",
    "INSERT": "PartiQLInsert",
    "UPDATE": "PartiQLUpdate",
    "DELETE": "PartiQLDelete",
}
_KIND: Final = re.compile(r"\s*(\w+)")
_KEYWORD: Final = re.compile(r"\b(?:FROM|INTO|UPDATE)\b", re.IGNORECASE)
_NAME: Final = r'"((?:[^"]|"")+)"|([A-Za-z0-9_-]+)'
_REFERENCE: Final = re.compile(rf"\s*(?:{_NAME})(?:\.(?:{_NAME}))?")


def dynamodb_permissions(request: HttpRequest, operation: str) -> RequiredPermissions:
    """What AWS authorises for a DynamoDB request (module docstring)."""
    members = input_members(operation)
    if members is None:
        return unmapped(request, Protocol.JSON, operation)
    body = {name: value for name, value in request.json_body().items() if name in members}
    if operation in _PARTIQL:
        return _partiql(request, operation, body)
    if operation in ("BatchGetItem", "BatchWriteItem"):
        tables = body.get("RequestItems")
        if isinstance(tables, dict) and tables:
            action = f"dynamodb:{operation}"
            return _all(operation, ((action, _table(request, t)) for t in tables))
    elif operation in ("TransactWriteItems", "TransactGetItems"):
        checks = list(_transact_checks(request, body.get("TransactItems")))
        if checks:
            return _all(operation, checks)
    elif isinstance(body.get("TableName"), str):
        resource = _table(request, body["TableName"])
        if operation in ("Query", "Scan") and isinstance(body.get("IndexName"), str):
            resource += f"/index/{body['IndexName']}"
        return one(Protocol.JSON, "dynamodb", operation, resource)
    elif isinstance(body.get("ResourceArn"), str):
        return one(Protocol.JSON, "dynamodb", operation, body["ResourceArn"])
    elif operation in _ACCOUNT_WIDE:
        return one(Protocol.JSON, "dynamodb", operation, ANY_RESOURCE)
    return unmapped(request, Protocol.JSON, operation)


@lru_cache(maxsize=128)
def input_members(operation: str) -> frozenset[str] | None:
    """The members of ``operation``'s input shape in botocore's DynamoDB model, or
    ``None`` for an operation the model does not know."""
    from botocore.model import OperationNotFoundError

    model = _service_model()
    try:
        shape = model.operation_model(operation).input_shape
    except OperationNotFoundError:
        return None
    return frozenset(shape.members) if shape is not None else frozenset()


def partiql_checks(statement: str) -> list[tuple[str, str]] | None:
    """(action, table or ``table/index/<index>`` path) for each table ``statement`` names;
    ``None`` if its kind or one of its table references cannot be read."""
    kind = _KIND.match(statement)
    action = _PARTIQL_ACTIONS.get(kind[1].upper()) if kind else None
    if action is None:
        return None
    checks = []
    for keyword in _KEYWORD.finditer(statement):
        reference = _REFERENCE.match(statement, keyword.end())
        if reference is None:
            return None
        table = _unquote(reference[1], reference[2])
        checks.append((f"dynamodb:{action}", f"table/{table}"))
        if reference[3] is not None or reference[4] is not None:
            index = _unquote(reference[3], reference[4])
            checks.append((f"dynamodb:{action}", f"table/{table}/index/{index}"))
    return checks or None


def _partiql(request: HttpRequest, operation: str, body: dict[str, Any]) -> RequiredPermissions:
    listed, member = _PARTIQL[operation]
    entries = [body] if listed is None else body.get(listed)
    if not isinstance(entries, list) or not entries:
        return unmapped(request, Protocol.JSON, operation)
    checks: list[tuple[str, str]] = []
    for entry in entries:
        statement = entry.get(member) if isinstance(entry, dict) else None
        found = partiql_checks(statement) if isinstance(statement, str) else None
        if found is None:
            return unmapped(request, Protocol.JSON, operation)
        checks += [(action, request.arn("dynamodb", path)) for action, path in found]
    return _all(operation, dict.fromkeys(checks))


def _transact_checks(request: HttpRequest, items: Any) -> Iterable[tuple[str, str]]:
    for item in items if isinstance(items, list) else []:
        for kind, action in _TRANSACT_ACTIONS.items():
            detail = item.get(kind) if isinstance(item, dict) else None
            if isinstance(detail, dict) and isinstance(detail.get("TableName"), str):
                yield f"dynamodb:{action}", _table(request, detail["TableName"])


def _table(request: HttpRequest, name: str) -> str:
    return name if name.startswith("arn:") else request.arn("dynamodb", f"table/{name}")


def _unquote(quoted: str | None, bare: str | None) -> str:
    return quoted.replace('""', '"') if quoted is not None else bare or ""


@lru_cache(maxsize=1)
def _service_model() -> Any:
    from botocore.session import get_session

    return get_session().get_service_model("dynamodb")


def _all(operation: str, checks: Iterable[tuple[str, str]]) -> RequiredPermissions:
    permissions = tuple(Permission(action, resource) for action, resource in checks)
    return RequiredPermissions(Protocol.JSON, operation, permissions)
