"""Ordering S3 events for one key by their ``sequencer``.

S3 delivers events at least once and in any order. Each record of an object-level event
carries a hexadecimal ``sequencer``; for two events on the same key, the greater value is
the later event, once both are upper-cased and the shorter is right-padded with zeros
(AWS: "Event message structure"). Values are not comparable across keys.

The save function stores the *normalised* form: upper-case, right-padded to a fixed width.
Fixed width makes DynamoDB's plain string comparison (``sequencer < :new``) the correct
order, so the ordering check can live in a conditional write instead of a read-then-write.
"""

from __future__ import annotations

import re
from typing import Final

#: Stored width. Real sequencers are 16-20 hex digits; the headroom costs a few bytes.
WIDTH: Final = 64

_HEX: Final = re.compile(r"[0-9A-Fa-f]+")


class InvalidSequencer(ValueError):
    """The event's sequencer is missing or not hexadecimal."""


def normalise(sequencer: str) -> str:
    """Upper-case ``sequencer`` and right-pad it with zeros to ``WIDTH`` characters."""
    if not isinstance(sequencer, str) or not _HEX.fullmatch(sequencer):
        raise InvalidSequencer(f"sequencer {sequencer!r} is not a hexadecimal string")
    if len(sequencer) > WIDTH:
        raise InvalidSequencer(f"sequencer {sequencer!r} is longer than {WIDTH} digits")
    return sequencer.upper().ljust(WIDTH, "0")


def is_later(candidate: str, stored: str | None) -> bool:
    """True if an event with ``candidate`` happened after the one that wrote ``stored``."""
    if stored is None:
        return True
    return normalise(candidate) > normalise(stored)
