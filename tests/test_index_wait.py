"""``wait_until_indexed`` (``--wait``) against a scripted gallery API and a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from imgcli.index_wait import wait_until_indexed


class FakeApi:
    """The gallery API as --wait sees it: answers scripted per round."""

    def __init__(self, rounds: list[dict[str, dict[str, Any]]]) -> None:
        self.rounds = rounds
        self.round = 0
        self.gets: list[str] = []
        self.listings: list[tuple[str | None, bool]] = []

    def _now(self) -> dict[str, dict[str, Any]]:
        return self.rounds[min(self.round, len(self.rounds) - 1)]

    def get_image(self, key: str) -> dict[str, Any] | None:
        self.gets.append(key)
        return self._now().get(key)

    def list_images(
        self, *, prefix: str | None = None, invalid: bool = False
    ) -> Iterator[dict[str, Any]]:
        self.listings.append((prefix, invalid))
        wanted = "invalid" if invalid else "active"
        for key, image in sorted(self._now().items()):
            if image.get("status", "active") == wanted and key.startswith(prefix or ""):
                yield image


class FakeTime:
    def __init__(self, api: FakeApi) -> None:
        self.now = 0.0
        self.api = api

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.api.round += 1


def image(key: str, etag: str, **fields: Any) -> dict[str, Any]:
    return {"key": key, "etag": etag, "status": "active", **fields}


def test_wait_until_the_new_etag_is_listed() -> None:
    old = {"a.jpg": image("a.jpg", "old")}
    new = {"a.jpg": image("a.jpg", "new"), "b.jpg": image("b.jpg", "b1")}
    api = FakeApi([{}, old, new])
    fake = FakeTime(api)

    waited = wait_until_indexed(
        api, {"a.jpg": "new", "b.jpg": "b1"}, sleep=fake.sleep, clock=fake.clock
    )

    assert (waited.listed, waited.pending, dict(waited.invalid)) == (2, frozenset(), {})
    assert api.round == 2  # the old details did not end the wait
    assert api.listings == []


def test_wait_lists_the_common_prefix_when_many_keys_are_pending() -> None:
    keys = {f"batch/{n:03d}.jpg": f"e{n}" for n in range(60)}
    listed = {key: image(key, etag) for key, etag in keys.items()}
    listed["batch/007.jpg"] = image("batch/007.jpg", "e7", status="invalid", reason="bad")
    api = FakeApi([listed])
    fake = FakeTime(api)

    waited = wait_until_indexed(api, keys, sleep=fake.sleep, clock=fake.clock)

    assert api.gets == []
    assert api.listings == [("batch/0", False), ("batch/0", True)]  # their common prefix
    assert waited.listed == 59
    assert dict(waited.invalid) == {"batch/007.jpg": "bad"}


def test_wait_gives_up_at_the_timeout() -> None:
    api = FakeApi([{}])
    fake = FakeTime(api)
    waited = wait_until_indexed(
        api, {"a.jpg": "x"}, timeout_s=3, sleep=fake.sleep, clock=fake.clock
    )
    assert waited.pending == frozenset({"a.jpg"})
    assert fake.now == pytest.approx(3)
