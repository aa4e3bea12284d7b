"""The everyday commands (upload, list, show, delete), one module each, registered on the app.

``imgcli.cli`` keeps the frame (global options, error mapping, stack commands); these
modules follow its shape: ``Annotated`` options, a docstring that is the help text, one
call into a service module, one render. They import only typer and the frame at module
level, so ``imgcli --help`` stays fast.
"""

from __future__ import annotations

import typer


def register_all(app: typer.Typer) -> None:
    from imgcli.commands import gallery, upload

    upload.register(app)
    gallery.register(app)
