"""Names and ARNs of a stack's resources, derived from the stack name, account and region.

Every name is a pure function of (stack, account, region), so a re-run finds what an
earlier run created without having to remember it, and two stacks never collide.

Bucket names are global across all AWS accounts, so the buckets carry the account id and
region (``imgcli-<stack>-<account>-<region>`` for the gallery,
``imgcli-<stack>-thumbs-<account>-<region>`` for its thumbnails); a name still taken by
someone else is reported by bootstrap as such, never silently swapped, and a new stack
may not be named ``*-thumbs``, since ``x-thumbs``'s gallery would be named as ``x``'s
thumbnails. Names over S3's
63-character limit keep a readable head and end in a short hash of the full name, so they
stay unique.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Final

from imgcli.infra.errors import InvalidStackName

STACK_NAME: Final = re.compile(r"[a-z][a-z0-9-]{0,22}")
TAG_KEY: Final = "imgcli:stack"

_BUCKET_MAX: Final = 63


#: Stack ``x``'s thumbnails bucket is ``imgcli-x-thumbs-...``, which would be the gallery
#: bucket of a stack named ``x-thumbs``: such names are not taken.
RESERVED_SUFFIX: Final = "-thumbs"


def check_stack_name(stack: str) -> str:
    if not STACK_NAME.fullmatch(stack) or stack.endswith("-") or "--" in stack:
        raise InvalidStackName(
            f"stack name {stack!r} must be 1-23 characters of lower-case letters, digits and "
            "single hyphens, starting with a letter",
            hint="choose another name with --stack or IMGCLI_STACK",
        )
    return stack


def check_new_stack_name(stack: str) -> str:
    """``check_stack_name``, and not a reserved name: for a stack about to be created.

    Only a new stack is refused a reserved name: one created before the rule stays usable
    (listed, bootstrapped, destroyed), and the planner never lets another stack adopt its
    resources (``plan.other_stack``).
    """
    check_stack_name(stack)
    if stack.endswith(RESERVED_SUFFIX):
        base = stack.removesuffix(RESERVED_SUFFIX)
        raise InvalidStackName(
            f"stack name {stack!r} may not end in {RESERVED_SUFFIX!r}: its bucket would be named "
            f"like the thumbnails bucket of stack '{base}'",
            hint="choose another name with --stack or IMGCLI_STACK",
        )
    return stack


def _bucket_name(name: str) -> str:
    """``name``, or a readable head of it and a hash of the whole when over S3's limit."""
    if len(name) <= _BUCKET_MAX:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: _BUCKET_MAX - 9].rstrip('-')}-{digest}"


@dataclass(frozen=True)
class StackNames:
    """Every resource name of one stack in one account and region."""

    stack: str
    account: str
    region: str
    partition: str = "aws"

    def __post_init__(self) -> None:
        check_stack_name(self.stack)

    @property
    def prefix(self) -> str:
        return f"imgcli-{self.stack}"

    @property
    def tags(self) -> dict[str, str]:
        return {TAG_KEY: self.stack}

    @property
    def bucket(self) -> str:
        """The gallery: the images people upload, versioned; the source of truth."""
        return _bucket_name(f"{self.prefix}-{self.account}-{self.region}")

    @property
    def thumbnails_bucket(self) -> str:
        """The save function's thumbnails: derived data, the only place it may write."""
        return _bucket_name(f"{self.prefix}-thumbs-{self.account}-{self.region}")

    @property
    def table(self) -> str:
        return f"{self.prefix}-images"

    @property
    def failure_queue(self) -> str:
        return f"{self.prefix}-failed-events"

    @property
    def save_function(self) -> str:
        return f"{self.prefix}-save-delete"

    @property
    def retrieve_function(self) -> str:
        return f"{self.prefix}-retrieve"

    @property
    def save_role(self) -> str:
        return f"{self.prefix}-save-delete"

    @property
    def retrieve_role(self) -> str:
        return f"{self.prefix}-retrieve"

    @property
    def api(self) -> str:
        return f"{self.prefix}-api"

    @property
    def notification_id(self) -> str:
        return f"{self.prefix}-index-images"

    @staticmethod
    def log_group(function: str) -> str:
        return f"/aws/lambda/{function}"

    # ARNs ------------------------------------------------------------------------------

    @property
    def bucket_arn(self) -> str:
        return f"arn:{self.partition}:s3:::{self.bucket}"

    @property
    def thumbnails_bucket_arn(self) -> str:
        return f"arn:{self.partition}:s3:::{self.thumbnails_bucket}"

    @property
    def table_arn(self) -> str:
        return f"arn:{self.partition}:dynamodb:{self.region}:{self.account}:table/{self.table}"

    @property
    def failure_queue_arn(self) -> str:
        return f"arn:{self.partition}:sqs:{self.region}:{self.account}:{self.failure_queue}"

    def role_arn(self, role: str) -> str:
        return f"arn:{self.partition}:iam::{self.account}:role/{role}"

    def function_arn(self, function: str) -> str:
        return f"arn:{self.partition}:lambda:{self.region}:{self.account}:function:{function}"

    def log_group_arn(self, function: str) -> str:
        return (
            f"arn:{self.partition}:logs:{self.region}:{self.account}"
            f":log-group:{self.log_group(function)}"
        )

    def execute_api_arn(self, api_id: str, route: str) -> str:
        """The source ARN of API Gateway's calls for ``route`` (``GET /images/{key+}``).

        Any stage; a path parameter matches whatever the request put there.
        """
        method, _, path = route.partition(" ")
        path = re.sub(r"\{[^}]+\}", "*", path)
        base = f"arn:{self.partition}:execute-api:{self.region}:{self.account}"
        return f"{base}:{api_id}/*/{method}{path}"

    def api_url(self, api_id: str) -> str:
        return f"https://{api_id}.execute-api.{self.region}.amazonaws.com"
