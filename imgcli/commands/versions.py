"""imgcli versions and imgcli restore: an image's versions, and bringing one back (issue 14)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Placeholder: the command lands with issue 14."""
