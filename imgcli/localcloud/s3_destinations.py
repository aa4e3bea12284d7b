"""Whether S3 may invoke a bucket's notification destinations: AWS's checks, on moto.

AWS checks a Lambda destination's resource policy twice: when the bucket's notification
configuration is written (``PutBucketNotificationConfiguration`` naming a function whose
policy does not let ``s3.amazonaws.com`` invoke it for this bucket and account fails with
400 ``InvalidArgument`` "Unable to validate the following destination configurations"),
and when it delivers (an event for a function that no longer allows it is dropped).
``s3_events`` does both with the ``may_invoke`` it is given (the server passes
``moto_lambda.s3_may_invoke``): this module holds the two checks.

* **At configuration.** :func:`validating_parser` wraps moto's
  ``S3Response._notification_config_from_body``, the one place where moto's response
  layer has both the request's headers and the parsed configuration, and raises
  :class:`UnvalidatedDestinations` (moto renders it as S3's XML error). A request with
  ``x-amz-skip-destination-validation: true`` is not checked, as on AWS: destroy removes
  its own entry that way, so someone else's stale destination never blocks it.
* **At delivery.** :func:`event_permitted` asks again for each event, outside the key's
  lock; a refusal is logged (AWS drops such events silently).

:func:`missing_notification_parser` is part of ``s3_events.check_moto_internals``.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, Final

from moto.s3.exceptions import S3ClientError
from moto.s3.responses import S3Response

#: ``may_invoke(function_arn, bucket_arn, bucket_account)``: the function's resource policy
#: lets S3 invoke it for that bucket.
InvokePermission = Callable[[str, str, str], bool]

#: Where moto's response layer parses a notification configuration (validated there).
MOTO_NOTIFICATION_PARSER: Final = "_notification_config_from_body"
SKIP_VALIDATION_HEADER: Final = "x-amz-skip-destination-validation"
UNVALIDATED_DESTINATIONS: Final = "Unable to validate the following destination configurations"

_logger = logging.getLogger(__name__)


class UnvalidatedDestinations(S3ClientError):
    """S3's refusal of a notification configuration naming a function it may not invoke."""

    code = "InvalidArgument"

    def __init__(self, function_arns: list[str]) -> None:
        super().__init__("InvalidArgument", UNVALIDATED_DESTINATIONS)
        self.function_arns = function_arns


def validating_parser(
    original: Callable[[Any], dict[str, Any]], may_invoke: InvokePermission
) -> Callable[[Any], dict[str, Any]]:
    """moto's configuration parser, then AWS's destination check on what it parsed."""

    @functools.wraps(original)
    def parse(response: Any) -> dict[str, Any]:
        configuration = original(response)
        if _header(response.headers, SKIP_VALIDATION_HEADER).lower() == "true":
            return configuration
        bucket = response.backend.get_bucket(response.bucket_name)
        functions = [
            str(entry.get("CloudFunction", ""))
            for entry in configuration.get("CloudFunctionConfiguration") or []
        ]
        refused = [arn for arn in functions if not may_invoke(arn, bucket.arn, bucket.account_id)]
        if refused:
            _logger.warning(
                "refused bucket %s's notification: S3 may not invoke %s (see the functions' "
                "resource policies: lambda add-permission --principal s3.amazonaws.com)",
                bucket.name,
                ", ".join(refused),
            )
            raise UnvalidatedDestinations(refused)
        return configuration

    return parse


def event_permitted(may_invoke: InvokePermission, function_arn: str, event: dict[str, Any]) -> bool:
    """The function's resource policy lets S3 invoke it for the event's bucket now."""
    s3 = event["Records"][0]["s3"]
    bucket_arn, account = s3["bucket"]["arn"], s3["bucket"]["ownerIdentity"]["principalId"]
    if may_invoke(function_arn, bucket_arn, account):
        return True
    _logger.warning(
        "not delivering an event of bucket %s to %s: its resource policy does not let S3 "
        "invoke it for this bucket",
        s3["bucket"]["name"],
        function_arn,
    )
    return False


def missing_notification_parser() -> list[str]:
    """What moved, if moto's notification configuration parser is not as expected."""
    parser = getattr(S3Response, MOTO_NOTIFICATION_PARSER, None)
    if not callable(parser) or list(inspect.signature(parser).parameters) != ["self"]:
        return [f"S3Response.{MOTO_NOTIFICATION_PARSER}(self) is gone"]
    return []


def _header(headers: Any, name: str) -> str:
    """A request header whatever the case of its name (moto passes dicts and werkzeug's)."""
    for key, value in (headers or {}).items():
        if str(key).lower() == name:
            return str(value)
    return ""
