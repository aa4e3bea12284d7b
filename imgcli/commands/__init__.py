"""The everyday commands (upload, list, show, delete), one module each, registered on the app.

``imgcli.cli`` keeps the frame (global options, error mapping, stack commands); these
modules follow its shape: ``Annotated`` options, a docstring that is the help text, one
call into a service module, one render. They import only typer and the frame at module
level, so ``imgcli --help`` stays fast.
"""

from __future__ import annotations

import importlib

import typer

_MODULES = ("imgcli.commands.upload", "imgcli.commands.gallery")


def register_all(app: typer.Typer) -> None:
    for name in _MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as missing:
            if missing.name != name:
                raise
            continue  # not written yet
        module.register(app)
