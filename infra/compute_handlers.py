"""The handlers for the compute side of a stack, each given its client: IAM roles
(``infra.role_handlers``), Lambda functions and their resource policies
(``infra.function_handlers``), and the HTTP API in front of the retrieve function
(``infra.api_handlers``).

These kinds are where serverless deployers meet AWS's eventual consistency and its
"already exists" answers. Each handler satisfies ``infra.handlers.ResourceHandler``:
``read`` turns the live resource back into exactly the canonical ``settings`` of
``infra.resources`` (so the planner compares plain dictionaries and a second bootstrap
plans nothing), and every quirk sits behind one intention-named method, the way Chalice's
``TypedAWSClient`` does it, with ``sleep`` injected so tests never wait. Every wait and
retry is bounded by a ``Patience`` and ends in an ``InfraError`` that says what was
awaited and what to do (``infra.aws_support``, shared with the storage handlers).
"""

from __future__ import annotations

import time

from imgcli.infra.api_handlers import HttpApiHandler
from imgcli.infra.aws_support import ClientFactory
from imgcli.infra.function_handlers import FunctionHandler, PermissionHandler
from imgcli.infra.handlers import ResourceHandler, Sleep
from imgcli.infra.resources import Kind
from imgcli.infra.role_handlers import RoleHandler


def compute_handlers(
    client: ClientFactory, *, sleep: Sleep = time.sleep
) -> dict[Kind, ResourceHandler]:
    """The handlers for roles, functions, permissions and the HTTP API, on ``client``'s clients."""
    lambda_client = client("lambda")
    return {
        Kind.ROLE: RoleHandler(client("iam")),
        Kind.FUNCTION: FunctionHandler(lambda_client, sleep=sleep),
        Kind.PERMISSION: PermissionHandler(lambda_client, sleep=sleep),
        Kind.API: HttpApiHandler(client("apigatewayv2")),
    }
