"""Every imgcli command, one module per group, registered on the app by ``register_all``.

- ``stack``: ``config``, ``bootstrap``, ``destroy``, ``stack``;
- ``local``: ``local start|stop|status|reset``;
- ``upload``: ``upload``;
- ``download``: ``download``;
- ``gallery``: ``list``, ``show``, ``delete``;
- ``versions``: ``versions``, ``restore``;
- ``share``: ``url``;
- ``integrity``: ``doctor``, ``reconcile``;
- ``events``: ``events list|replay|purge`` (the failed-events queue);
- ``logs``: ``logs`` (the functions' CloudWatch Logs).

Each follows one shape (``Annotated`` options, a docstring that is the help text with an
example, one call into a service, one render) on the frame of ``imgcli.commands.frame``,
whose command class ``register_all`` gives every one of them (so each also takes the
global options after its name).
At module level they import only typer, the frame and light modules of the standard
library's weight (errors, output, the invocation, delete's planning), so ``imgcli --help``
stays fast; the services that load botocore, Pillow or infra are imported inside the
command bodies.
"""

from __future__ import annotations

import typer

from imgcli.commands import (
    download,
    events,
    gallery,
    integrity,
    local,
    logs,
    share,
    stack,
    upload,
    versions,
)
from imgcli.commands.frame import use_frame_classes


def register_all(app: typer.Typer) -> None:
    """Add every command to ``app``, in the order ``imgcli --help`` lists them."""
    stack.register(app)
    local.register(app)
    upload.register(app)
    download.register(app)
    gallery.register(app)
    versions.register(app)
    share.register(app)
    integrity.register(app)
    events.register(app)
    logs.register(app)
    use_frame_classes(app)
