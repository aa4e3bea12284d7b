"""The IAM and bucket policy documents of a stack: least privilege, written out in full.

Each function's role allows exactly the actions its code calls, on exactly its resources:

* save/delete reads images (``s3:GetObject``, ``s3:GetObjectVersion``: events name
  versions) and needs ``s3:ListBucket`` so that a vanished key answers 404, not 403. It
  writes items (``dynamodb:GetItem``, ``dynamodb:PutItem`` on the table). It writes and
  deletes thumbnails (``s3:PutObject``, ``s3:DeleteObject``) in the thumbnails bucket
  only, which sends no events: the gallery bucket stays read-only to it, so it can never
  trigger itself. It gets no ``s3:ListBucket`` there: it names every thumbnail key
  itself and never needs a 404 from that bucket. Lambda's on-failure destination sends
  with the function's role, hence ``sqs:SendMessage`` on the stack's queue.
* retrieve reads one item from the table (``dynamodb:GetItem``) and lists through the
  status index (``dynamodb:Query`` on that index only). It presigns GET URLs for images
  and thumbnails; a presigned URL carries the signer's permissions, so the role holds
  ``s3:GetObject`` on both buckets' objects. The URLs leave out ``versionId`` (they name
  the current object), so ``s3:GetObjectVersion`` is not granted.
* Both write logs into their own log group only. Bootstrap creates the group (with a
  retention period), so ``logs:CreateLogGroup`` is not granted at all.

No statement uses a ``*`` action, and no resource is ``*``. Both buckets carry the same
bucket policy (``bucket_policy``) when the stack requires TLS.
"""

from __future__ import annotations

from typing import Any, Final

from imgcli.infra.names import StackNames
from imgcli.lambdas.records import STATUS_INDEX

Document = dict[str, Any]

VERSION: Final = "2012-10-17"


def lambda_trust_policy(names: StackNames) -> Document:
    """Lets Lambda assume the role, only on behalf of functions in this account."""
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": names.account}},
            }
        ],
    }


def _logs_statement(names: StackNames, function: str) -> Document:
    return {
        "Sid": "WriteOwnLogs",
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": f"{names.log_group_arn(function)}:*",
    }


def save_function_policy(names: StackNames) -> Document:
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "ReadImages",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:GetObjectVersion"],
                "Resource": f"{names.bucket_arn}/*",
            },
            {
                "Sid": "MissingKeysAre404",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": names.bucket_arn,
            },
            {
                "Sid": "WriteIndex",
                "Effect": "Allow",
                "Action": ["dynamodb:GetItem", "dynamodb:PutItem"],
                "Resource": names.table_arn,
            },
            {
                "Sid": "WriteThumbnails",
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:DeleteObject"],
                "Resource": f"{names.thumbnails_bucket_arn}/*",
            },
            {
                "Sid": "ReportFailedEvents",
                "Effect": "Allow",
                "Action": "sqs:SendMessage",
                "Resource": names.failure_queue_arn,
            },
            _logs_statement(names, names.save_function),
        ],
    }


def retrieve_function_policy(names: StackNames) -> Document:
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "ReadOneImage",
                "Effect": "Allow",
                "Action": "dynamodb:GetItem",
                "Resource": names.table_arn,
            },
            {
                "Sid": "ListImages",
                "Effect": "Allow",
                "Action": "dynamodb:Query",
                "Resource": f"{names.table_arn}/index/{STATUS_INDEX}",
            },
            {
                "Sid": "ReadForLinks",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": [f"{names.bucket_arn}/*", f"{names.thumbnails_bucket_arn}/*"],
            },
            _logs_statement(names, names.retrieve_function),
        ],
    }


def bucket_policy(bucket_arn: str) -> Document:
    """Refuses every request that does not use TLS, on the bucket ``bucket_arn`` and on its
    objects."""
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, f"{bucket_arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }
