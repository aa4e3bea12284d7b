"""Doubles that inject a race into the save function's work, for tests against moto.

A race is a real event (or another repair) run at the worst moment: after the function's
reads, just before its write; the test then checks the write stood back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class WriteAfter:
    """A DynamoDB client that runs ``before_write`` once, just before the first ``put_item``."""

    def __init__(self, client: Any, before_write: Callable[[], None]) -> None:
        self._client = client
        self._before_write: Callable[[], None] | None = before_write

    def put_item(self, **kwargs: Any) -> Any:
        if self._before_write is not None:
            run, self._before_write = self._before_write, None
            run()
        return self._client.put_item(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)
