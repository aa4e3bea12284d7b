"""imgcli url: a presigned link to an image or its thumbnail (issue 14)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Placeholder: the command lands with issue 14."""
