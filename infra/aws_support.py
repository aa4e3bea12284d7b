"""What every resource handler needs from AWS besides the calls themselves: bounded waits
and retries, reading error codes, keeping to imgcli's own tags, and converging a resource
that was already there.

Each ``infra.*_handlers`` module owns the calls and quirks of its kinds; this module holds
the one way all of them wait, retry, match an error, treat tags and converge, so a fix
here reaches every handler:

* **Waits and retries** take a ``Patience`` (how long, in which steps) and the injected
  ``sleep``, so tests record the delays instead of sleeping. Once patience runs out they
  raise ``InfraError`` saying what was awaited and how long it took: never an endless loop.
* **Error codes**: a ``ClientError`` can carry two (SQS's JSON protocol adds its older
  query code), and a response without an AWS error body carries the HTTP status as its
  code ("404", "500"); ``is_error`` checks all of them.
* **Tags**: a ``tags`` setting means imgcli's own ``imgcli:*`` tags (the contract in
  ``infra.handlers``). Others may tag our resources too; ``own_tags`` is what ``read``
  reports (theirs would make every plan differ) and ``stale_own_tag_keys`` the only keys
  an update may remove, so a ``team=x`` tag someone else adds stays.
* **"Already exists"** on create means a previous run got further than its state file
  says: ``converge`` updates whatever differs, as a re-run would have planned.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import chain
from typing import Any, Final, TypeVar

from botocore.exceptions import ClientError

from imgcli.infra.errors import InfraError
from imgcli.infra.handlers import ResourceHandler, Sleep, resolved
from imgcli.infra.names import TAG_KEY
from imgcli.infra.resources import Resource

T = TypeVar("T")

#: Makes the boto3 client for a service name (``"s3"``): how handlers get their clients.
ClientFactory = Callable[[str], Any]

#: Tag keys with this prefix are imgcli's; every other key belongs to someone else.
OWN_TAG_PREFIX: Final = TAG_KEY.partition(":")[0] + ":"

#: The hint when a command stopped short: a re-run reads the stack afresh and carries on.
RUN_AGAIN: Final = "run the command again: it reads what exists and carries on from there"


@dataclass(frozen=True)
class Patience:
    """How long to keep trying: ``delay_s`` between tries, doubling up to ``max_delay_s``
    if that is given (else every delay is ``delay_s``), for as long as the delays add up
    to at most ``total_s``."""

    delay_s: float
    total_s: float
    max_delay_s: float | None = None

    def delays(self) -> Iterator[float]:
        delay, spent = self.delay_s, 0.0
        while spent + delay <= self.total_s:
            yield delay
            spent += delay
            if self.max_delay_s is not None:
                delay = min(delay * 2, self.max_delay_s)


def wait_until(
    probe: Callable[[], T | None],
    *,
    patience: Patience,
    sleep: Sleep,
    what: str,
    hint: str = RUN_AGAIN,
) -> T:
    """Calls ``probe`` until it returns something true (``True``, or what it waited for),
    and returns that; raises ``InfraError`` once ``patience`` runs out."""
    slept = 0.0
    for delay in chain(patience.delays(), [None]):
        found = probe()
        if found:
            return found
        if delay is None:
            break
        sleep(delay)
        slept += delay
    raise InfraError(f"gave up after {slept:g} s waiting for {what}", hint=hint)


def retry_while(
    transient: Callable[[ClientError], bool],
    call: Callable[[], T],
    *,
    patience: Patience,
    sleep: Sleep,
    what: str,
    hint: str = RUN_AGAIN,
) -> T:
    """``call()``, tried again while AWS refuses it in a way ``transient`` says will pass
    (a name still blocked, a permission still propagating); any other error is raised as
    it is. Raises ``InfraError`` once ``patience`` runs out."""
    slept, delays = 0.0, patience.delays()
    while True:
        try:
            return call()
        except ClientError as error:
            if not transient(error):
                raise
            delay = next(delays, None)
            if delay is None:
                raise InfraError(
                    f"{what}: AWS still refuses after {slept:g} s ({error})", hint=hint
                ) from error
            sleep(delay)
            slept += delay


def error_codes(error: ClientError) -> set[str]:
    """Every code AWS gave the error (SQS's JSON protocol adds its older query code)."""
    details = error.response.get("Error", {})
    return {details.get("Code", ""), details.get("QueryErrorCode", "")} - {""}


def is_error(error: ClientError, codes: Collection[str]) -> bool:
    return bool(error_codes(error) & set(codes))


def error_message(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message", ""))


def absent_on(codes: Collection[str], call: Callable[[], T]) -> T | None:
    """``call()``, or ``None`` when AWS answers one of ``codes`` (the thing is not there)."""
    try:
        return call()
    except ClientError as error:
        if is_error(error, codes):
            return None
        raise


def paginated(client: Any, operation: str, key: str, **arguments: Any) -> Iterator[Any]:
    """Every item under ``key`` of every page ``operation`` returns."""
    for page in client.get_paginator(operation).paginate(**arguments):
        yield from page.get(key, [])


def own_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """The tags imgcli manages; the rest belong to whoever added them."""
    return {k: v for k, v in tags.items() if k.startswith(OWN_TAG_PREFIX)}


def stale_own_tag_keys(current: Mapping[str, str], wanted: Mapping[str, str]) -> list[str]:
    """imgcli's keys that are set but no longer wanted (never anyone else's keys)."""
    return sorted(k for k in own_tags(current) if k not in wanted)


def tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    """``{"k": "v"}`` as the ``[{"Key": "k", "Value": "v"}]`` that IAM, DynamoDB and S3 take."""
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def tag_dict(tags: Iterable[Mapping[str, str]]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags}


def settings_of(resource: Resource, refs: Mapping[str, str]) -> dict[str, Any]:
    """``resource``'s settings with every ``Ref`` resolved against ``refs``."""
    return dict(resolved(resource.settings, refs))


def unknown_setting(resource: Resource, setting: str) -> InfraError:
    return InfraError(f"{resource.label} has no setting {setting!r} imgcli can update")


def converge(
    handler: ResourceHandler, resource: Resource, refs: Mapping[str, str]
) -> Mapping[str, str]:
    """Brings a resource that ``create`` found already there to ``resource``'s settings.

    It exists because an earlier run got further than its state file records (or someone
    made it by hand): updating what differs is what a re-run would have planned.
    """
    observed = handler.read(resource.name)
    if observed is None:
        raise InfraError(f"{resource.label} exists but cannot be read back", hint=RUN_AGAIN)
    for setting, wanted in settings_of(resource, refs).items():
        if observed.settings.get(setting) != wanted:
            handler.update(resource, setting, refs)
    return observed.outputs
