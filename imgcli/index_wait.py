"""``--wait``: after an upload, poll the gallery API until it lists what was sent.

The upload engine (``imgcli.upload``) ends when S3 has the objects; the stack indexes them
afterwards. ``wait_until_indexed`` knows nothing of S3 or of the engine: it takes the keys
with the ETags the upload reported and an ``ImageLookup`` (``imgcli.gallery_api.GalleryApi``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

#: How ``--wait`` polls: per key (GetImage) up to this many pending keys, else listings.
WAIT_PER_KEY_LIMIT: Final = 50
DEFAULT_WAIT_TIMEOUT_S: Final = 60.0


class ImageLookup(Protocol):
    """The reads ``wait_until_indexed`` needs; ``imgcli.gallery_api.GalleryApi`` has them."""

    def get_image(self, key: str) -> dict[str, Any] | None: ...

    def list_images(
        self, *, prefix: str | None = None, invalid: bool = False
    ) -> Iterator[dict[str, Any]]: ...


@dataclass(frozen=True)
class IndexWait:
    """How ``wait_until_indexed`` ended: keys listed as uploaded, keys the stack found
    invalid (with its reason), keys still not listed with their new ETag."""

    listed: int
    invalid: Mapping[str, str]
    pending: frozenset[str]


def wait_until_indexed(
    api: ImageLookup,
    expected: Mapping[str, str],
    *,
    timeout_s: float = DEFAULT_WAIT_TIMEOUT_S,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    per_key_limit: int = WAIT_PER_KEY_LIMIT,
    first_delay_s: float = 0.2,
    max_delay_s: float = 2.0,
) -> IndexWait:
    """Poll the API until it lists every key of ``expected`` with the ETag given for it.

    The ETag is what makes it *this* upload: after an overwrite the old details stay listed
    until the new object is indexed. Up to ``per_key_limit`` pending keys are asked one by
    one; more are found by listing their common prefix (active, then invalid images). The
    delay between rounds doubles from ``first_delay_s`` to ``max_delay_s``.
    """
    pending = dict(expected)
    invalid: dict[str, str] = {}
    deadline = clock() + timeout_s
    delay = first_delay_s
    while True:
        for image in _lookup(api, pending, per_key_limit):
            key = image["key"]
            if key in pending and image.get("etag") == pending[key]:
                del pending[key]
                if image.get("status") == "invalid":
                    invalid[key] = str(image.get("reason") or "the stack could not read it")
        remaining_s = deadline - clock()
        if not pending or remaining_s <= 0:
            listed = len(expected) - len(pending) - len(invalid)
            return IndexWait(listed, invalid, frozenset(pending))
        sleep(min(delay, remaining_s))
        delay = min(delay * 2, max_delay_s)


def _lookup(api: ImageLookup, pending: Mapping[str, str], limit: int) -> Iterable[dict[str, Any]]:
    if len(pending) <= limit:
        found = (api.get_image(key) for key in list(pending))
        return [image for image in found if image is not None]
    prefix = os.path.commonprefix(list(pending)) or None  # noqa: RUF071 - keys, not paths
    return [
        image
        for invalid in (False, True)
        for image in api.list_images(prefix=prefix, invalid=invalid)
        if image.get("key") in pending
    ]
