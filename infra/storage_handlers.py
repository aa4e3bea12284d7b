"""The handlers for the stack's storage: the kinds that hold data or configure where data
goes, each given its client and the shared ``sleep``.

``infra.handlers`` defines what the planner asks of a kind (read, create, update one
setting, delete); one module per kind answers it and owns every call for that kind, so
each AWS quirk sits behind one intention-named method: ``infra.table_handlers`` (the
index table), ``infra.queue_handlers`` (the failed-events queue), ``infra.bucket_handlers``
(the gallery and thumbnails buckets), ``infra.log_group_handlers`` (the functions' log
groups) and ``infra.notification_handlers`` (the gallery's notification to the save
function). Every
wait or retry among them uses the injected ``sleep`` with a bound
(``infra.aws_support.Patience``), after which an ``InfraError`` says what to do; ``read``
returns settings in exactly the canonical form of ``infra.resources``, so an up-to-date
resource compares equal and a second bootstrap plans nothing.
"""

from __future__ import annotations

import time

from imgcli.infra.aws_support import ClientFactory
from imgcli.infra.bucket_handlers import BucketHandler, ThumbnailsBucketHandler
from imgcli.infra.handlers import ResourceHandler, Sleep
from imgcli.infra.log_group_handlers import LogGroupHandler
from imgcli.infra.notification_handlers import NotificationHandler
from imgcli.infra.queue_handlers import QueueHandler
from imgcli.infra.resources import Kind
from imgcli.infra.table_handlers import TableHandler


def storage_handlers(
    client: ClientFactory, *, region: str, sleep: Sleep = time.sleep
) -> dict[Kind, ResourceHandler]:
    """The handlers for the storage kinds, each with its client and the shared ``sleep``."""
    s3 = client("s3")
    buckets = BucketHandler(s3, region=region, sleep=sleep)
    return {
        Kind.TABLE: TableHandler(client("dynamodb"), sleep=sleep),
        Kind.QUEUE: QueueHandler(client("sqs"), sleep=sleep),
        Kind.BUCKET: buckets,
        Kind.THUMBNAILS_BUCKET: ThumbnailsBucketHandler(buckets),
        Kind.LOG_GROUP: LogGroupHandler(client("logs")),
        Kind.NOTIFICATION: NotificationHandler(s3, sleep=sleep),
    }
