"""Loading the event fixtures in ``tests/events/`` (real event shapes, stored as JSON)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

EVENTS_DIR = Path(__file__).parent / "events"


def load_event(name: str) -> dict[str, Any]:
    """The fixture ``tests/events/<name>.json``, a fresh copy each call."""
    data: dict[str, Any] = json.loads((EVENTS_DIR / f"{name}.json").read_text("utf-8"))
    return copy.deepcopy(data)
