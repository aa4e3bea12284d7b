"""S3 requests as the IAM permissions AWS checks for them (the "Amazon S3 actions" tables).

Path-style requests only: the local cloud's gate accepts no other host than 127.0.0.1 or
localhost, so the bucket is the path's first segment and the key the rest (decoded).
Object operations are authorised on ``arn:aws:s3:::bucket/key``, bucket operations on
``arn:aws:s3:::bucket``, ListBuckets on ``*``.

AWS's quirks kept: HEAD is authorised as GET (``s3:GetObject``, ``s3:ListBucket``); a
``versionId`` turns an object action into its ``*Version`` form; multipart uploads (create,
parts, complete) need ``s3:PutObject`` and abort ``s3:AbortMultipartUpload``; a copy needs
``s3:PutObject`` on the target and ``s3:GetObject`` (or ``GetObjectVersion``) on the source,
read from ``x-amz-copy-source`` exactly as moto reads it (a source with a scheme, a host,
``;`` or ``#`` is refused); DeleteObjects needs ``s3:DeleteObject`` (or
``DeleteObjectVersion``) on each key it names, read with xmltodict as moto reads them (a
document moto could not read is refused);
deleting a bucket's CORS, lifecycle, tagging, encryption and similar configurations needs
the matching ``Put*`` action. Not mapped (so authorised on ``*``): browser POST uploads,
whose key is in the multipart form, and any subresource missing from the tables below.
One simplification: where S3 answers DeleteObjects with a per-key AccessDenied, the local
cloud refuses the whole request.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qs, unquote, urlparse

from imgcli.localcloud.iam_request_model import (
    ANY_RESOURCE,
    HttpRequest,
    Permission,
    Protocol,
    RequiredPermissions,
    refused,
    unmapped,
)

#: Object subresources: (GET action, PUT action, DELETE action); ``None``: no such call.
_OBJECT_SUBRESOURCES: Final[dict[str, tuple[str | None, str | None, str | None]]] = {
    "acl": ("GetObjectAcl", "PutObjectAcl", None),
    "tagging": ("GetObjectTagging", "PutObjectTagging", "DeleteObjectTagging"),
    "attributes": ("GetObjectAttributes", None, None),
    "retention": ("GetObjectRetention", "PutObjectRetention", None),
    "legal-hold": ("GetObjectLegalHold", "PutObjectLegalHold", None),
    "torrent": ("GetObjectTorrent", None, None),
}
#: Object actions that have a ``*Version*`` form for a request naming a version id.
_VERSIONED: Final = {
    "GetObject": "GetObjectVersion",
    "GetObjectAcl": "GetObjectVersionAcl",
    "PutObjectAcl": "PutObjectVersionAcl",
    "GetObjectTagging": "GetObjectVersionTagging",
    "PutObjectTagging": "PutObjectVersionTagging",
    "DeleteObjectTagging": "DeleteObjectVersionTagging",
    "GetObjectAttributes": "GetObjectVersionAttributes",
    "DeleteObject": "DeleteObjectVersion",
}
#: Bucket subresources: (GET action, PUT action, DELETE action).
_BUCKET_SUBRESOURCES: Final[dict[str, tuple[str | None, str | None, str | None]]] = {
    "acl": ("GetBucketAcl", "PutBucketAcl", None),
    "policy": ("GetBucketPolicy", "PutBucketPolicy", "DeleteBucketPolicy"),
    "policyStatus": ("GetBucketPolicyStatus", None, None),
    "cors": ("GetBucketCORS", "PutBucketCORS", "PutBucketCORS"),
    "lifecycle": (
        "GetLifecycleConfiguration",
        "PutLifecycleConfiguration",
        "PutLifecycleConfiguration",
    ),
    "notification": ("GetBucketNotification", "PutBucketNotification", None),
    "tagging": ("GetBucketTagging", "PutBucketTagging", "PutBucketTagging"),
    "versioning": ("GetBucketVersioning", "PutBucketVersioning", None),
    "website": ("GetBucketWebsite", "PutBucketWebsite", "DeleteBucketWebsite"),
    "encryption": (
        "GetEncryptionConfiguration",
        "PutEncryptionConfiguration",
        "PutEncryptionConfiguration",
    ),
    "publicAccessBlock": (
        "GetBucketPublicAccessBlock",
        "PutBucketPublicAccessBlock",
        "PutBucketPublicAccessBlock",
    ),
    "ownershipControls": (
        "GetBucketOwnershipControls",
        "PutBucketOwnershipControls",
        "PutBucketOwnershipControls",
    ),
    "logging": ("GetBucketLogging", "PutBucketLogging", None),
    "object-lock": (
        "GetBucketObjectLockConfiguration",
        "PutBucketObjectLockConfiguration",
        None,
    ),
    "replication": (
        "GetReplicationConfiguration",
        "PutReplicationConfiguration",
        "PutReplicationConfiguration",
    ),
    "requestPayment": ("GetBucketRequestPayment", "PutBucketRequestPayment", None),
    "accelerate": ("GetAccelerateConfiguration", "PutAccelerateConfiguration", None),
    "location": ("GetBucketLocation", None, None),
    "versions": ("ListBucketVersions", None, None),
    "uploads": ("ListBucketMultipartUploads", None, None),
}
_METHOD_COLUMN: Final = {"GET": 0, "HEAD": 0, "PUT": 1, "DELETE": 2}
#: Query parameters that are options of the calls mapped here, not subresources: a request
#: with any other parameter is a call this module does not know.
_OPTIONS: Final = frozenset(
    {
        "prefix",
        "delimiter",
        "marker",
        "max-keys",
        "list-type",
        "continuation-token",
        "fetch-owner",
        "start-after",
        "encoding-type",
        "key-marker",
        "version-id-marker",
        "upload-id-marker",
        "max-uploads",
        "max-parts",
        "part-number-marker",
        "versionId",
        "partNumber",
        "uploadId",
        "uploads",
        "delete",
        "restore",
        "select",
        "select-type",
        "x-id",
    }
)


def s3_permissions(request: HttpRequest) -> RequiredPermissions:
    """What AWS authorises for an S3 request (module docstring)."""
    method = request.method.upper()
    bucket, _, key = request.raw_path.lstrip("/").partition("/")
    bucket, key = unquote(bucket), unquote(key)
    params = request.query_params()
    partition = request.partition
    unknown = [
        name
        for name in params
        if name not in _OPTIONS
        and name not in _OBJECT_SUBRESOURCES
        and name not in _BUCKET_SUBRESOURCES
        and not name.lower().startswith(("x-amz-", "response-"))
    ]
    if unknown:
        return unmapped(request, Protocol.S3, f"{method} ?{unknown[0]}")
    if not bucket:
        if method == "GET":
            return _checks("ListBuckets", ("s3:ListAllMyBuckets", ANY_RESOURCE))
        return unmapped(request, Protocol.S3, f"{method} /")
    bucket_arn = f"arn:{partition}:s3:::{bucket}"
    if key:
        return _object_permissions(request, method, params, bucket_arn, key)
    return _bucket_permissions(request, method, params, bucket_arn)


def _object_permissions(
    request: HttpRequest, method: str, params: dict[str, str], bucket_arn: str, key: str
) -> RequiredPermissions:
    object_arn = f"{bucket_arn}/{key}"
    versioned = "versionId" in params
    for name, actions in _OBJECT_SUBRESOURCES.items():
        if name in params:
            action = _column(actions, method)
            if action is None:
                return unmapped(request, Protocol.S3, f"{method} ?{name}")
            return _checks(action, (_s3(action, versioned), object_arn))
    if method in ("GET", "HEAD"):
        if "uploadId" in params:
            return _checks("ListParts", ("s3:ListMultipartUploadParts", object_arn))
        return _checks("GetObject", (_s3("GetObject", versioned), object_arn))
    if method == "PUT":
        checks = [("s3:PutObject", object_arn)]
        source = request.headers.get("x-amz-copy-source")
        operation = "UploadPart" if "uploadId" in params else "PutObject"
        if source is not None:
            copied = _copy_source(source, request.partition)
            if copied is None:
                return refused(Protocol.S3, operation + "Copy", f"the copy source {source!r}")
            checks.append(copied)
        return _checks(operation + ("Copy" if source is not None else ""), *checks)
    if method == "POST":
        if "uploads" in params or "uploadId" in params:
            return _checks("MultipartUpload", ("s3:PutObject", object_arn))
        if "restore" in params:
            return _checks("RestoreObject", ("s3:RestoreObject", object_arn))
        if "select" in params:
            return _checks("SelectObjectContent", ("s3:GetObject", object_arn))
    if method == "DELETE":
        if "uploadId" in params:
            return _checks("AbortMultipartUpload", ("s3:AbortMultipartUpload", object_arn))
        return _checks("DeleteObject", (_s3("DeleteObject", versioned), object_arn))
    return unmapped(request, Protocol.S3, f"{method} object")


def _bucket_permissions(
    request: HttpRequest, method: str, params: dict[str, str], bucket_arn: str
) -> RequiredPermissions:
    for name, actions in _BUCKET_SUBRESOURCES.items():
        if name in params:
            action = _column(actions, method)
            if action is None:
                return unmapped(request, Protocol.S3, f"{method} ?{name}")
            return _checks(action, (f"s3:{action}", bucket_arn))
    if method in ("GET", "HEAD"):
        operation = "HeadBucket" if method == "HEAD" else "ListObjects"
        return _checks(operation, ("s3:ListBucket", bucket_arn))
    if method == "PUT":
        return _checks("CreateBucket", ("s3:CreateBucket", bucket_arn))
    if method == "DELETE":
        return _checks("DeleteBucket", ("s3:DeleteBucket", bucket_arn))
    if method == "POST" and "delete" in params:
        deleted = _deleted_objects(request.body, bucket_arn)
        if deleted is None:
            return refused(Protocol.S3, "DeleteObjects", "a Delete document moto reads otherwise")
        return _checks("DeleteObjects", *deleted)
    return unmapped(request, Protocol.S3, f"{method} bucket")


def _deleted_objects(body: bytes, bucket_arn: str) -> list[tuple[str, str]] | None:
    """One ``s3:DeleteObject`` (or ``DeleteObjectVersion``) per key DeleteObjects names,
    read as moto's ``_bucket_response_delete_keys`` reads them (xmltodict, comments and
    attributes ignored); ``None`` for a body moto could not read or would read otherwise."""
    from xml.parsers.expat import ExpatError

    import xmltodict  # type: ignore[import-untyped]  # moto's own parser of this document

    try:
        parsed = xmltodict.parse(body, strip_whitespace=False)
    except (ExpatError, ValueError):
        return None
    delete = parsed.get("Delete") if isinstance(parsed, dict) else None
    if not isinstance(delete, dict):
        return None
    objects = delete.get("Object", [])
    objects = objects if isinstance(objects, list) else [objects]
    checks = []
    for element in objects:
        key = element.get("Key") if isinstance(element, dict) else None
        if not isinstance(key, str):
            return None
        versioned = element.get("VersionId") is not None
        checks.append((_s3("DeleteObject", versioned), f"{bucket_arn}/{key}"))
    return checks or None


def _copy_source(header: str, partition: str) -> tuple[str, str] | None:
    """``s3:GetObject`` (or ``GetObjectVersion``) on the object a copy reads, parsed as
    moto parses it (``urlparse``, then the path unquoted); ``None`` (refused) for a source
    with a scheme, a host (``//``), ``;`` or ``#``, or without a key."""
    if ";" in header or "#" in header:
        return None
    parsed = urlparse(header)
    if parsed.scheme or parsed.netloc:
        return None
    bucket, slash, key = unquote(parsed.path).lstrip("/").partition("/")
    if not bucket or not slash or not key:
        return None
    versioned = parse_qs(parsed.query).get("versionId", [None])[0] is not None
    return _s3("GetObject", versioned), f"arn:{partition}:s3:::{bucket}/{key}"


def _column(actions: tuple[str | None, str | None, str | None], method: str) -> str | None:
    column = _METHOD_COLUMN.get(method)
    return None if column is None else actions[column]


def _s3(action: str, versioned: bool) -> str:
    return f"s3:{_VERSIONED.get(action, action) if versioned else action}"


def _checks(operation: str, *checks: tuple[str, str]) -> RequiredPermissions:
    permissions = tuple(Permission(action, resource) for action, resource in checks)
    return RequiredPermissions(Protocol.S3, operation, permissions)
