"""What a stack should look like: every resource with its settings, as plain data.

``desired_stack`` is the single description of the stack that bootstrap converges to
and destroy tears down. Each ``Resource`` names its kind, the name AWS knows it by, and
its *settings* in a canonical form: the handler for that kind (``infra.handlers``) reads
the live resource back into exactly this form, so the planner finds what differs by
comparing dictionaries, setting by setting, and a second bootstrap plans nothing.

The stack has two buckets. The gallery holds the images: versioned, the source of truth,
and destroy keeps it (with everything else) while it holds any unless told to delete
them. The thumbnails bucket holds what the save function derives from them: hardened the
same way, but **not versioned** (an overwritten or deleted thumbnail can be made again
from its image, so keeping old ones would only cost money) and with no notification (the
function's writes there trigger nothing). It is its own kind (``Kind.THUMBNAILS_BUCKET``)
because destroy treats it differently: it empties it without asking and never refuses
because of it.

The list is in creation order; destroy walks it backwards. The order encodes AWS's rules:
roles before the functions that assume them; the Lambda permission for S3 before the
bucket notification that needs it (S3 validates the target when the notification is
saved); the HTTP API before the permission that names it.

A few values exist only once an earlier step has run (the HTTP API's generated id):
such a value is a ``Ref`` to an output, resolved when the step executes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any, Final, Literal

from imgcli.infra import policies
from imgcli.infra.names import StackNames
from imgcli.lambdas.records import EXPIRY_ATTRIBUTE, TABLE_DEFINITION

Architecture = Literal["arm64", "x86_64"]


class Kind(StrEnum):
    TABLE = "table"
    QUEUE = "queue"
    BUCKET = "bucket"
    THUMBNAILS_BUCKET = "thumbnails bucket"
    LOG_GROUP = "log group"
    ROLE = "role"
    FUNCTION = "function"
    PERMISSION = "permission"
    NOTIFICATION = "bucket notification"
    API = "http api"


@dataclass(frozen=True)
class Ref:
    """A value made from an output of an earlier resource: ``template.format(outputs[key])``."""

    key: str
    template: str = "{}"

    def resolve(self, outputs: Mapping[str, str]) -> str | None:
        value = outputs.get(self.key)
        return None if value is None else self.template.format(value)


@dataclass(frozen=True)
class Resource:
    """One resource as it should be. ``payload`` (a function's zip) is not a setting."""

    kind: Kind
    name: str
    settings: Mapping[str, Any]
    payload: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True)
class StackOptions:
    """The knobs of a stack; every default here is what ``imgcli bootstrap`` uses.

    - ``architecture``: the functions' CPU; arm64 costs less per GB-second than x86_64.
    - ``noncurrent_version_days``: how long a deleted or overwritten image stays
      recoverable as a noncurrent version before S3 expires it.
    - ``abort_multipart_days``: incomplete multipart uploads are removed after this.
    - ``log_retention_days``: CloudWatch Logs retention for both functions.
    - ``save_memory_mb``/``save_timeout_s``: sized for decoding images up to Pillow's
      pixel limit (about 90 MP, ~360 MB as RGBA) with room for the zip's libraries.
    - ``retrieve_memory_mb``/``retrieve_timeout_s``: a page is at most ~1 MB of JSON;
      the timeout stays well inside API Gateway's 30 s.
    - ``max_event_age_s``/``max_retry_attempts``: bounded retries for the save function;
      what still fails goes to the stack's failed-events queue.
    - ``throttle_burst``/``throttle_rate``: the HTTP API stage's default route limits.
    - ``require_tls``: the bucket policy that denies requests without TLS (on both
      buckets). The local cloud speaks plain HTTP on 127.0.0.1, so a local stack goes
      without it (and moto, which ignores the policy's condition, would otherwise deny
      every object request).
    - ``url_expiry_s``: how long the presigned image and thumbnail URLs the API hands out
      stay valid (the retrieve function's ``URL_EXPIRES_S``); 15 minutes by default, at
      most 12 hours (a URL signed with the function's role credentials stops working when
      they expire anyway).
    """

    architecture: Architecture = "arm64"
    noncurrent_version_days: int = 30
    abort_multipart_days: int = 7
    log_retention_days: int = 30
    save_memory_mb: int = 1024
    save_timeout_s: int = 60
    retrieve_memory_mb: int = 256
    retrieve_timeout_s: int = 10
    max_event_age_s: int = 6 * 3600
    max_retry_attempts: int = 2
    throttle_burst: int = 100
    throttle_rate: float = 50.0
    require_tls: bool = True
    url_expiry_s: int = 900

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> StackOptions:
        """Options from a stack's record; keys this version does not know are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in known})

    def as_record(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FunctionCode:
    """The deployment package both functions share (``infra.packaging`` builds it)."""

    zip_bytes: bytes = field(repr=False)
    sha256: str
    runtime: str


SAVE_HANDLER: Final = "lambdas.save_delete.handler"
RETRIEVE_HANDLER: Final = "lambdas.retrieve.handler"
S3_EVENTS: Final = ("s3:ObjectCreated:*", "s3:ObjectRemoved:*")
API_ROUTES: Final = ("GET /images", "GET /images/{key+}")
API_STAGE: Final = "$default"
QUEUE_RETENTION_S: Final = 14 * 24 * 3600

#: Outputs handlers report (``create`` and ``read``) that later resources and users need.
API_ID: Final = "api_id"
API_URL: Final = "api_url"


def table_schema() -> dict[str, Any]:
    """The table's key schema, attributes, billing mode and index, canonically ordered."""
    return {
        "AttributeDefinitions": sorted(
            TABLE_DEFINITION["AttributeDefinitions"], key=lambda a: a["AttributeName"]
        ),
        "KeySchema": TABLE_DEFINITION["KeySchema"],
        "BillingMode": TABLE_DEFINITION["BillingMode"],
        "GlobalSecondaryIndexes": [
            {k: index[k] for k in ("IndexName", "KeySchema", "Projection")}
            for index in TABLE_DEFINITION["GlobalSecondaryIndexes"]
        ],
    }


def hardened_bucket(
    kind: Kind,
    name: str,
    arn: str,
    options: StackOptions,
    tags: Mapping[str, str],
    *,
    versioning: str | None = None,
    lifecycle: Sequence[Mapping[str, Any]] = (),
) -> Resource:
    """A bucket locked down as every bucket of the stack is: all Block Public Access flags,
    owner-enforced ownership (no ACLs), SSE-S3, TLS only when the stack requires it, and
    incomplete multipart uploads aborted; ``lifecycle`` rules come after that one.

    ``versioning`` left out is not compared: a bucket that was never versioned reads as
    ``None``, and S3 cannot turn versioning off once on (only suspend it).
    """
    return Resource(
        kind,
        name,
        {
            "public_access_block": {
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
            "ownership": "BucketOwnerEnforced",
            "encryption": "AES256",
            **({"policy": policies.bucket_policy(arn)} if options.require_tls else {}),
            **({"versioning": versioning} if versioning is not None else {}),
            "lifecycle": [
                {
                    "ID": "abort-incomplete-multipart-uploads",
                    "Status": "Enabled",
                    "Filter": {"Prefix": ""},
                    "AbortIncompleteMultipartUpload": {
                        "DaysAfterInitiation": options.abort_multipart_days
                    },
                },
                *(dict(rule) for rule in lifecycle),
            ],
            "tags": dict(tags),
        },
    )


def desired_stack(names: StackNames, options: StackOptions, code: FunctionCode) -> list[Resource]:
    """Every resource of the stack, in creation order."""
    tags = names.tags
    save_arn = names.function_arn(names.save_function)
    retrieve_arn = names.function_arn(names.retrieve_function)

    def function(
        name: str,
        role: str,
        handler: str,
        memory: int,
        timeout: int,
        environment: Mapping[str, str],
        **extra: Any,
    ) -> Resource:
        return Resource(
            Kind.FUNCTION,
            name,
            {
                "code_sha256": code.sha256,
                "runtime": code.runtime,
                "handler": handler,
                "architecture": options.architecture,
                "memory_mb": memory,
                "timeout_s": timeout,
                "environment": dict(environment),
                "role_arn": names.role_arn(role),
                "tags": tags,
                **extra,
            },
            payload=code.zip_bytes,
        )

    def permission(
        function_name: str, statement_id: str, principal: str, source_arn: str | Ref
    ) -> Resource:
        return Resource(
            Kind.PERMISSION,
            f"{function_name}/{statement_id}",
            {
                "function": function_name,
                "statement_id": statement_id,
                "action": "lambda:InvokeFunction",
                "principal": principal,
                "source_arn": source_arn,
                "source_account": names.account,
            },
        )

    def api_source_arn(route: str) -> Ref:
        # Built with a placeholder id, then turned into a template for the real one.
        return Ref(API_ID, names.execute_api_arn("{}", route))

    return [
        Resource(
            Kind.TABLE,
            names.table,
            {"schema": table_schema(), "ttl_attribute": EXPIRY_ATTRIBUTE, "tags": tags},
        ),
        Resource(
            Kind.QUEUE,
            names.failure_queue,
            {
                "attributes": {
                    "MessageRetentionPeriod": str(QUEUE_RETENTION_S),
                    "SqsManagedSseEnabled": "true",
                },
                "tags": tags,
            },
        ),
        hardened_bucket(
            Kind.BUCKET,
            names.bucket,
            names.bucket_arn,
            options,
            tags,
            versioning="Enabled",
            lifecycle=[
                {
                    "ID": "expire-noncurrent-versions",
                    "Status": "Enabled",
                    "Filter": {"Prefix": ""},
                    "NoncurrentVersionExpiration": {
                        "NoncurrentDays": options.noncurrent_version_days
                    },
                    # Once its old versions have expired, a delete marker is alone and
                    # useless: let S3 remove it too.
                    "Expiration": {"ExpiredObjectDeleteMarker": True},
                },
            ],
        ),
        hardened_bucket(
            Kind.THUMBNAILS_BUCKET,
            names.thumbnails_bucket,
            names.thumbnails_bucket_arn,
            options,
            tags,
        ),
        *(
            Resource(
                Kind.LOG_GROUP,
                names.log_group(function_name),
                {"retention_days": options.log_retention_days, "tags": tags},
            )
            for function_name in (names.save_function, names.retrieve_function)
        ),
        Resource(
            Kind.ROLE,
            names.save_role,
            {
                "trust_policy": policies.lambda_trust_policy(names),
                "policies": {"imgcli": policies.save_function_policy(names)},
                "tags": tags,
            },
        ),
        Resource(
            Kind.ROLE,
            names.retrieve_role,
            {
                "trust_policy": policies.lambda_trust_policy(names),
                "policies": {"imgcli": policies.retrieve_function_policy(names)},
                "tags": tags,
            },
        ),
        function(
            names.save_function,
            names.save_role,
            SAVE_HANDLER,
            options.save_memory_mb,
            options.save_timeout_s,
            # The bucket lets the function refuse records of any other bucket (the table
            # is keyed by object key alone); a stack bootstrapped before it gets it as drift.
            {
                "TABLE_NAME": names.table,
                "BUCKET_NAME": names.bucket,
                "THUMBNAILS_BUCKET": names.thumbnails_bucket,
            },
            async_invoke={
                "MaximumRetryAttempts": options.max_retry_attempts,
                "MaximumEventAgeInSeconds": options.max_event_age_s,
                "OnFailure": names.failure_queue_arn,
            },
        ),
        function(
            names.retrieve_function,
            names.retrieve_role,
            RETRIEVE_HANDLER,
            options.retrieve_memory_mb,
            options.retrieve_timeout_s,
            # The buckets and the expiry are what it needs to presign links to the images
            # and their thumbnails.
            {
                "TABLE_NAME": names.table,
                "BUCKET_NAME": names.bucket,
                "THUMBNAILS_BUCKET": names.thumbnails_bucket,
                "URL_EXPIRES_S": str(options.url_expiry_s),
            },
        ),
        permission(names.save_function, "s3-invoke", "s3.amazonaws.com", names.bucket_arn),
        Resource(
            Kind.NOTIFICATION,
            names.bucket,
            {"id": names.notification_id, "function_arn": save_arn, "events": list(S3_EVENTS)},
        ),
        Resource(
            Kind.API,
            names.api,
            {
                "routes": dict.fromkeys(API_ROUTES, "AWS_IAM"),
                "integration": {
                    "type": "AWS_PROXY",
                    "uri": retrieve_arn,
                    "payload_format_version": "2.0",
                },
                "stage": {
                    "name": API_STAGE,
                    "auto_deploy": True,
                    "burst_limit": options.throttle_burst,
                    "rate_limit": options.throttle_rate,
                },
                "tags": tags,
            },
        ),
        *(
            permission(
                names.retrieve_function,
                f"api-invoke-{index}",
                "apigateway.amazonaws.com",
                api_source_arn(route),
            )
            for index, route in enumerate(API_ROUTES)
        ),
    ]
