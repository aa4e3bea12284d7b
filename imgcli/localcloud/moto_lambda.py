"""The one place that reaches into moto's Lambda (and SQS) internals, for the runtime.

moto 5.2.5 keeps functions but cannot run them without Docker (docs/local-cloud.md).
This module connects moto's Lambda to ``runtime``: it reads a function's zip and
configuration out of moto's backend as a :class:`~imgcli.localcloud.runtime.FunctionSpec`,
reads its event invoke config, delivers invocation records to moto's SQS queues, and
takes over moto's Invoke so it runs the deployed code. The moto names it relies on are
checked by :func:`missing_internals` (classes, methods, signatures) and
:func:`function_attributes_missing` (a function object's attributes), which a test runs, so
a moto upgrade that moves one fails loudly there instead of quietly echoing payloads again.

How Invoke is taken over (:func:`install_invoke`). moto's path is ``LambdaResponse.invoke``
(the wire) → ``LambdaBackend.invoke`` → ``LambdaFunction.invoke`` →
``LambdaFunction._invoke_lambda`` (the Docker step). Three replacements:

* ``LambdaBackend.invoke`` runs the function itself: ``RequestResponse`` in the runtime,
  answering with the payload, ``X-Amz-Function-Error: Unhandled`` (moto says ``Handled``;
  Lambda reports every function error as ``Unhandled``), the log tail and the executed
  version; ``Event`` is queued to the :class:`~imgcli.localcloud.async_invoke.AsyncInvoker`
  and answered at once (moto's response layer turns that into 202); ``DryRun`` only
  resolves the function (204). An unknown function stays moto's 404.
* ``LambdaResponse.invoke`` is wrapped to honour ``?Qualifier=``: moto asks for a lower-case
  ``qualifier``, which is never in the query string, and then looks for that key in the
  *JSON payload*, so an event with a ``"qualifier"`` field picked the version. The wrapper
  puts the real query parameter (or an explicit ``None``) where moto looks first.
* ``LambdaFunction._invoke_lambda`` runs the code for moto's own callers (SQS event source
  mappings, SNS, EventBridge, moto's S3 notifications): synchronously, as moto expects.

Event invoke config: moto 5.2.5 appends every ``PutFunctionEventInvokeConfig`` and answers
``Get`` with the first; :func:`async_config` uses that same first one, so what the runtime
does always matches what the API reports (bootstrap deletes and re-puts a changed config).
Only SQS destinations are delivered, the only kind the stack configures.

Permissions, where AWS checks them (read from moto at the moment of the check):

* **Resource policies.** A function's policy (``AddPermission``; moto keeps its statements
  on ``function.policy``) decides whether a service may invoke it:
  :func:`s3_may_invoke` (principal ``s3.amazonaws.com``, ``aws:SourceArn`` the bucket,
  ``aws:SourceAccount`` its owner) and :func:`api_may_invoke` (principal
  ``apigateway.amazonaws.com``, ``aws:SourceArn``
  ``arn:aws:execute-api:<region>:<account>:<api>/<stage>/<METHOD>/<path>`` of the route).
* **The execution role.** Lambda writes an on-failure record with the function's role:
  :func:`destination_sender` checks ``sqs:SendMessage`` on the queue against the role's
  policies and drops the record (with a log line) when they refuse, as AWS does.
"""

from __future__ import annotations

import base64
import inspect
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

from imgcli.localcloud.async_invoke import AsyncConfig, AsyncInvoker
from imgcli.localcloud.iam_policy import Caller, evaluate
from imgcli.localcloud.role_policies import role_allows
from imgcli.localcloud.runtime import FunctionSpec, Invoker

LOGGER: Final = logging.getLogger(__name__)

_BACKEND_INVOKE_PARAMETERS: Final = (
    "self",
    "function_name",
    "qualifier",
    "body",
    "headers",
    "response_headers",
)
_FUNCTION_ATTRIBUTES: Final = (
    "function_name",
    "function_arn",
    "version",
    "code_bytes",
    "code_sha_256",
    "handler",
    "environment_vars",
    "timeout",
    "memory_size",
    "event_invoke_config",
    "role",
    "policy",
)
INVOKE_ACTION: Final = "lambda:InvokeFunction"
S3_PRINCIPAL: Final = "s3.amazonaws.com"
API_GATEWAY_PRINCIPAL: Final = "apigateway.amazonaws.com"


def function_spec(
    account: str, region: str, name_or_arn: str, qualifier: str | None = None
) -> FunctionSpec | None:
    """The function (name, ``name:qualifier`` or ARN) as moto holds it now, or ``None``.

    An ARN's own account and region win over ``account`` and ``region``.
    """
    from moto.awslambda.exceptions import UnknownFunctionException

    account, region = _home(name_or_arn, account, region)
    try:
        function = _lambda_backend(account, region).get_function(name_or_arn, qualifier)
    except UnknownFunctionException:
        return None
    return spec_of(function)


def spec_of(function: Any) -> FunctionSpec:
    """A moto ``LambdaFunction`` (latest or a published version) as the runtime's spec."""
    return FunctionSpec(
        name=function.function_name,
        arn=function.function_arn,
        code_sha256=function.code_sha_256,
        # Image functions have no zip at all; the runtime reports an empty one as unusable.
        zip_bytes=getattr(function, "code_bytes", b""),
        handler=function.handler or "",
        environment=dict(function.environment_vars or {}),
        timeout_s=int(function.timeout),
        memory_mb=int(function.memory_size),
        version=str(function.version),
        role_arn=str(function.role) if function.role else None,
    )


def async_config(account: str, region: str, name_or_arn: str) -> AsyncConfig:
    """The function's event invoke config, or AWS's defaults when it has none (or is gone)."""
    from moto.awslambda.exceptions import UnknownFunctionException

    account, region = _home(name_or_arn, account, region)
    try:
        function = _lambda_backend(account, region).get_function(name_or_arn)
    except UnknownFunctionException:
        return AsyncConfig()
    if not function.event_invoke_config:
        return AsyncConfig()
    config: Mapping[str, Any] = function.event_invoke_config[0].config
    destinations = config.get("DestinationConfig") or {}
    defaults = AsyncConfig()
    return AsyncConfig(
        maximum_retry_attempts=int(
            config.get("MaximumRetryAttempts", defaults.maximum_retry_attempts)
        ),
        maximum_event_age_s=float(
            config.get("MaximumEventAgeInSeconds", defaults.maximum_event_age_s)
        ),
        on_failure=(destinations.get("OnFailure") or {}).get("Destination") or None,
        on_success=(destinations.get("OnSuccess") or {}).get("Destination") or None,
    )


def send_to_queue(account: str, region: str, queue_arn: str, body: str) -> None:
    """Sends ``body`` to the SQS queue ``queue_arn`` (its own account and region win).

    Raises ``ValueError`` for a destination that is not an SQS queue, and moto's
    ``QueueDoesNotExist`` for a queue that is gone.
    """
    from moto.sqs.models import sqs_backends

    parts = queue_arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        raise ValueError(f"not an SQS queue ARN: {queue_arn!r}")
    account, region = parts[4] or account, parts[3] or region
    sqs_backends[account][region].send_message(parts[5], body)


def s3_may_invoke(function_arn: str, bucket_arn: str, bucket_account: str) -> bool:
    """Whether the function's resource policy lets S3 invoke it for this bucket."""
    context = {"aws:SourceArn": bucket_arn, "aws:SourceAccount": bucket_account}
    return _policy_allows(function_arn, S3_PRINCIPAL, context)


def api_may_invoke(
    account: str,
    region: str,
    api_id: str,
    route_key: str,
    function_arn: str,
    stage: str = "$default",
) -> bool:
    """Whether the function's resource policy lets API Gateway invoke it for this route.

    The source ARN is the route's: ``GET /images/{key+}`` on stage ``$default`` is
    ``arn:aws:execute-api:<region>:<account>:<api>/$default/GET/images/{key+}``; the
    ``$default`` route's is ``.../<api>/$default/$default``.
    """
    method, _, path = route_key.partition(" ")
    route = f"{method}{path}" if path else method
    source = f"arn:aws:execute-api:{region}:{account}:{api_id}/{stage}/{route}"
    context = {"aws:SourceArn": source, "aws:SourceAccount": account}
    return _policy_allows(function_arn, API_GATEWAY_PRINCIPAL, context, account, region)


def destination_sender(account: str, region: str) -> Callable[[str, dict[str, Any]], None]:
    """The ``AsyncInvoker``'s ``send_to_destination``: sends an invocation record to its
    SQS destination with the function's role, as Lambda does, so a role that may not
    ``sqs:SendMessage`` there loses the record (and a log line says why)."""

    def send(queue_arn: str, record: dict[str, Any]) -> None:
        function_arn = str(record.get("requestContext", {}).get("functionArn", ""))
        role_arn = _role_of(account, region, function_arn)
        if role_arn is None:
            LOGGER.warning(
                "dropping the invocation record of %s: the function is gone", function_arn
            )
            return
        queue_region = queue_arn.split(":")[3] if queue_arn.count(":") >= 5 else region
        evaluation = role_allows(role_arn, "sqs:SendMessage", queue_arn, queue_region or region)
        if not evaluation.allowed:
            LOGGER.warning(
                "dropping the invocation record of %s: its role %s may not sqs:SendMessage to "
                "%s (%s), so Lambda cannot deliver it",
                function_arn,
                role_arn,
                queue_arn,
                evaluation.decision.value,
            )
            return
        send_to_queue(account, region, queue_arn, json.dumps(record))

    return send


def install_invoke(runtime: Invoker, async_invoker: AsyncInvoker) -> Callable[[], None]:
    """Makes moto's Invoke run real code; returns the function that puts moto's back."""
    from moto.awslambda.models import LambdaBackend, LambdaFunction
    from moto.awslambda.responses import LambdaResponse

    respond = vars(LambdaResponse)["invoke"]

    def response_invoke(self: Any) -> Any:
        # moto reads _get_param("qualifier"): the query string first, then the JSON payload.
        self.querystring["qualifier"] = self.querystring.get("Qualifier", [None])
        return respond(self)

    def backend_invoke(
        self: Any,
        function_name: str,
        qualifier: str | None,
        body: Any,
        headers: Any,
        response_headers: dict[str, str],
    ) -> bytes:
        function = self.get_function(function_name, qualifier)
        payload = _as_bytes(body)
        invocation_type = _header(headers, "X-Amz-Invocation-Type") or "RequestResponse"
        if invocation_type == "DryRun":
            return b""
        if invocation_type == "Event":
            async_invoker.submit(function.function_arn, payload)
            return b""
        result = runtime.invoke(spec_of(function), payload)
        if result.function_error:
            response_headers["x-amz-function-error"] = result.function_error
        response_headers["x-amz-log-result"] = base64.b64encode(result.log.encode()).decode()
        response_headers["x-amz-executed-version"] = result.executed_version
        response_headers["Content-Length"] = str(len(result.payload))
        return result.payload

    def function_invoke(self: Any, event: Any = None) -> tuple[str, bool, str]:
        # moto's LambdaFunction.invoke turns an empty body into the *string* "{}".
        payload = b"{}" if event is None or event == "{}" else json.dumps(event).encode()
        result = runtime.invoke(spec_of(self), payload)
        return result.payload.decode(errors="replace"), bool(result.function_error), result.log

    patches: list[tuple[type, str, Any]] = [
        (LambdaResponse, "invoke", response_invoke),
        (LambdaBackend, "invoke", backend_invoke),
        (LambdaFunction, "_invoke_lambda", function_invoke),
    ]
    originals = [(owner, name, vars(owner)[name]) for owner, name, _ in patches]
    for owner, name, replacement in patches:
        setattr(owner, name, replacement)

    def uninstall() -> None:
        for owner, name, original in originals:
            setattr(owner, name, original)

    return uninstall


def missing_internals() -> list[str]:
    """The moto internals this module relies on that are missing or changed; empty if none.

    A function's attributes are set in ``LambdaFunction.__init__``, so the classes can't
    show them: :func:`function_attributes_missing` checks a real function object.
    """
    from moto.awslambda import exceptions as lambda_exceptions
    from moto.awslambda import models as lambda_models
    from moto.awslambda import policy as lambda_policy
    from moto.awslambda.responses import LambdaResponse
    from moto.sqs import models as sqs_models

    problems: list[str] = []
    expected: list[tuple[object, str]] = [
        (lambda_models, "lambda_backends"),
        (lambda_models, "LambdaBackend"),
        (lambda_models, "LambdaFunction"),
        (lambda_exceptions, "UnknownFunctionException"),
        (sqs_models, "sqs_backends"),
    ]
    problems += [f"{_name(owner)}.{name}" for owner, name in expected if not hasattr(owner, name)]
    if problems:
        return problems
    policy_class: Any = lambda_policy.Policy  # built without a function: only its shape counts
    if not isinstance(getattr(policy_class(None), "statements", None), list):
        problems.append("moto.awslambda.policy.Policy.statements (a list)")
    own_methods: list[tuple[type, str]] = [
        (LambdaResponse, "invoke"),
        (lambda_models.LambdaBackend, "invoke"),
        (lambda_models.LambdaBackend, "get_function"),
        (lambda_models.LambdaFunction, "_invoke_lambda"),
        (sqs_models.SQSBackend, "send_message"),
    ]
    problems += [f"{_name(owner)}.{name}" for owner, name in own_methods if name not in vars(owner)]
    invoke_parameters = tuple(inspect.signature(lambda_models.LambdaBackend.invoke).parameters)
    if invoke_parameters != _BACKEND_INVOKE_PARAMETERS:
        problems.append(f"LambdaBackend.invoke{invoke_parameters}")
    if tuple(inspect.signature(lambda_models.LambdaFunction._invoke_lambda).parameters) != (
        "self",
        "event",
    ):
        problems.append("LambdaFunction._invoke_lambda(self, event)")
    return problems


def function_attributes_missing(function: Any) -> list[str]:
    """The attributes :func:`spec_of` and :func:`async_config` read that ``function`` lacks."""
    return [name for name in _FUNCTION_ATTRIBUTES if not hasattr(function, name)]


def _policy_allows(
    function_arn: str,
    service: str,
    context: dict[str, str],
    account: str = "",
    region: str = "",
) -> bool:
    """Whether ``service`` may invoke ``function_arn`` under the function's policy now."""
    from moto.awslambda.exceptions import UnknownFunctionException

    home_account, home_region = _home(function_arn, account, region)
    try:
        function = _lambda_backend(home_account, home_region).get_function(function_arn)
    except UnknownFunctionException:
        return False
    statements = list(getattr(function.policy, "statements", None) or [])
    document = {"Version": "2012-10-17", "Statement": statements}
    caller = Caller(service=service)
    evaluation = evaluate([document], INVOKE_ACTION, function_arn, context, caller=caller)
    if not evaluation.allowed:
        LOGGER.info(
            "%s may not invoke %s (%s)%s",
            service,
            function_arn,
            evaluation.decision.value,
            "".join(f"; {note}" for note in evaluation.notes),
        )
    return evaluation.allowed


def _role_of(account: str, region: str, function_arn: str) -> str | None:
    from moto.awslambda.exceptions import UnknownFunctionException

    home_account, home_region = _home(function_arn, account, region)
    try:
        function = _lambda_backend(home_account, home_region).get_function(function_arn)
    except UnknownFunctionException:
        return None
    return str(function.role) if function.role else None


def _lambda_backend(account: str, region: str) -> Any:
    from moto.awslambda.models import lambda_backends

    return lambda_backends[account][region]


def _home(name_or_arn: str, account: str, region: str) -> tuple[str, str]:
    """The account and region an ARN names, else the ones given."""
    parts = name_or_arn.split(":")
    if len(parts) >= 7 and parts[0] == "arn":
        return parts[4] or account, parts[3] or region
    return account, region


def _header(headers: Any, name: str) -> str | None:
    """A request header, whatever the case of its name (moto passes dicts and werkzeug's)."""
    if not headers:
        return None
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return str(value)
    return None


def _as_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode()
    return bytes(body)


def _name(owner: object) -> str:
    return getattr(owner, "__name__", repr(owner))
