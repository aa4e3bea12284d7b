"""imgcli download: images from the gallery bucket to local files (issue 14)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Placeholder: the command lands with issue 14."""
