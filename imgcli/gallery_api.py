"""The one client of the stack's HTTP API: what ``list``, ``show`` and ``upload --wait`` read.

The retrieve function sits behind an API Gateway HTTP API whose routes use ``AWS_IAM``
authorization, so every request is signed with SigV4 by botocore (``SigV4Auth`` for the
``execute-api`` service on an ``AWSRequest``) with the stack's own boto3 credentials: the
CLI already holds them, IAM decides who may read the gallery, and there is no API key to
hand out. Refreshable credentials (SSO, assumed roles) are frozen afresh for every request,
so a long ``list`` outlives a credential rotation; every retry is signed again, so a
backoff never sends a stale timestamp.

Why urllib3 and not boto3: no AWS service model describes this API. urllib3 is botocore's
own HTTP stack, so it costs nothing extra, and its pool keeps one connection alive across
the pages of a listing. ``https_proxy``/``no_proxy`` are honoured as botocore honours them.

**Encoding.** A key goes into the path percent-encoded once (``quote(key, safe="/")``, the
contract in ``lambdas.retrieve``), except that a path segment that is exactly ``.`` or
``..`` has its dots encoded: urllib3 and SigV4's canonical form both remove dot segments,
which would silently turn ``a/../b.jpg`` into ``b.jpg``. Query values are encoded with
``quote`` (``%20``, never ``+``), the form SigV4 canonicalises to, so botocore's signature
and the server's recomputation see the same bytes on AWS and on the local cloud.

**Retries.** GET is idempotent, so a request that met throttling (429, or an error code
such as ``TooManyRequestsException``), an unavailable or failing gateway (502, 503, 504)
or a connection reset mid-request is sent again, up to ``max_attempts`` times in all, after
an exponential backoff with full jitter (as botocore's ``standard`` mode: a random delay up
to ``0.5 s * 2**n``, capped at 20 s, and at least what ``Retry-After`` asks). A 500 is not
retried: behind API Gateway it means the function failed, which a retry does not fix.
Timeouts are not retried either (a 30-second gateway timeout retried five times would
hang a script for minutes).

**Errors** are imgcli's own (``imgcli.errors``), so the CLI frame gives them their exit
codes: 403 → ``AuthError`` naming where the credentials came from (botocore's
``Credentials.method``: ``env``, ``shared-credentials-file``, ``sso``, ...); other 4xx and
5xx → ``RemoteError`` carrying the API's own message (``{"error": {"message"}}`` from the
function, ``{"message"}`` from the gateway); unreachable (refused, DNS, TLS, timeout, or
resets past the retry budget) → ``NetworkError`` naming the URL, with a hint to start the
local cloud when the URL is on 127.0.0.1. A 404 for one image is ``None``, but only when the
function said ``not_found``: a 404 from the gateway means the API URL itself is wrong.
"""

from __future__ import annotations

import json
import random
import re
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import quote, urlencode, urlsplit

import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import NoCredentialsError
from urllib3.exceptions import HTTPError, ProtocolError

from imgcli.errors import AuthError, NetworkError, NoStackError, RemoteError, UsageError

if TYPE_CHECKING:
    from imgcli.invocation import Invocation

SERVICE: Final = "execute-api"
#: The API's largest page (``lambdas.retrieve.MAX_LIMIT``).
MAX_PAGE_SIZE: Final = 1000
#: The first page is small so the first rows show at once; later pages are full size.
FIRST_PAGE_SIZE: Final = 100
DEFAULT_MAX_ATTEMPTS: Final = 5
#: Backoff before retry n (1-based) is random up to BASE * 2**(n-1) seconds, capped.
BACKOFF_BASE_S: Final = 0.5
BACKOFF_CAP_S: Final = 20.0
#: API Gateway gives up on an integration after 30 s; wait a little longer for its answer.
TIMEOUT: Final = urllib3.Timeout(connect=5.0, read=35.0)

RETRYABLE_STATUSES: Final = frozenset({429, 502, 503, 504})
THROTTLING_CODES: Final = frozenset(
    {
        "TooManyRequests",
        "TooManyRequestsException",
        "Too Many Requests",
        "Throttling",
        "ThrottlingException",
        "throttled",
    }
)
_LOCAL_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
_AWS_API_HOST: Final = re.compile(r"^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com$")


class SigningCredentials(Protocol):
    """What SigV4 needs: botocore's ``ReadOnlyCredentials`` (and ``Credentials``) fit."""

    @property
    def access_key(self) -> str: ...

    @property
    def secret_key(self) -> str: ...

    @property
    def token(self) -> str | None: ...


CredentialsSource = SigningCredentials | Callable[[], SigningCredentials]


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes
    headers: Mapping[str, str]
    #: botocore's name for where the signing credentials came from, e.g. "env".
    credential_source: str


class GalleryApi:
    """Signed, retried calls to one stack's HTTP API (``GET /images``, ``GET /images/{key}``).

    ``credentials`` is botocore ``Credentials`` (refreshable ones are refreshed per
    request), ``ReadOnlyCredentials``, or a callable returning either. ``http`` is a
    ``urllib3.PoolManager`` (default: one with imgcli's timeouts, through a proxy if the
    environment names one); ``sleep`` waits between attempts; ``max_attempts`` counts the
    first request too. ``stack`` names the stack in error messages. Thread-safe: upload
    ``--wait`` may call ``get_image`` from several threads.
    """

    def __init__(
        self,
        api_url: str,
        credentials: CredentialsSource,
        region: str,
        *,
        http: urllib3.PoolManager | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        stack: str | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.api_url = api_url.rstrip("/")
        self.region = region
        self._credentials = credentials
        self._http = http if http is not None else default_http(self.api_url)
        self._sleep = sleep
        self._max_attempts = max_attempts
        self._what = f"the API of stack '{stack}'" if stack else "the stack's API"
        self._bootstrap = f"imgcli --stack {stack} bootstrap" if stack else "imgcli bootstrap"

    def list_images(
        self,
        *,
        prefix: str | None = None,
        invalid: bool = False,
        limit: int | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> Iterator[dict[str, Any]]:
        """Every image (or with ``invalid``, every unreadable one), in key order.

        Follows ``next_cursor`` to the end, or stops after ``limit`` items, yielding each
        page's items as the page arrives: the next page is requested only when the caller
        asks for more. See ``list_pages`` for ``page_size``.
        """
        for page in self.list_pages(
            prefix=prefix, invalid=invalid, limit=limit, page_size=page_size
        ):
            yield from page

    def list_pages(
        self,
        *,
        prefix: str | None = None,
        invalid: bool = False,
        limit: int | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> Iterator[list[dict[str, Any]]]:
        """``list_images`` one API page at a time (for output that renders per page).

        ``page_size`` (1-1000) is how many items each request asks for, except the first,
        which asks for at most ``FIRST_PAGE_SIZE``: a full page of 1,000 takes the function
        most of a second, and a script piping into ``head`` should not wait for it.
        """
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be from 1 to {MAX_PAGE_SIZE}")
        if limit is not None and limit < 0:
            raise ValueError("limit must not be negative")
        remaining = limit
        cursor: str | None = None
        size = min(page_size, FIRST_PAGE_SIZE)
        while remaining is None or remaining > 0:
            query = {"limit": str(size if remaining is None else min(size, remaining))}
            size = page_size
            if prefix:
                query["prefix"] = prefix
            if invalid:
                query["status"] = "invalid"
            if cursor is not None:
                query["cursor"] = cursor
            items, next_cursor = self._page(self._get("/images", query))
            if remaining is not None:
                items = items[:remaining]
                remaining -= len(items)
            if items:
                yield items
            if next_cursor is None:
                return
            if next_cursor == cursor:
                raise RemoteError(f"{self._what} returned the same page cursor twice")
            cursor = next_cursor

    def get_image(self, key: str) -> dict[str, Any] | None:
        """One image's recorded details (any status but deleted), or ``None`` if not listed."""
        if not key:
            raise ValueError("an image key must not be empty")
        reply = self._get(f"/images/{encode_key(key)}", None, not_found_ok=True)
        if reply.status == 404:
            return None
        image = _json(reply.body)
        if not isinstance(image, dict) or not isinstance(image.get("key"), str):
            raise RemoteError(f"{self._what} returned something other than an image for {key!r}")
        return image

    # Requests

    def _get(
        self, path: str, query: Mapping[str, str] | None, *, not_found_ok: bool = False
    ) -> _Reply:
        url = self.api_url + path + ("?" + encode_query(query) if query else "")
        for attempt in range(1, self._max_attempts + 1):
            try:
                reply = self._send(url)
            except ProtocolError as reset:  # dropped or reset after connecting
                failure: Exception = self._unreachable(url, reset, attempts=attempt)
                retry_after = None
            except HTTPError as unreachable:
                raise self._unreachable(url, unreachable) from unreachable
            else:
                if not _is_retryable(reply):
                    return self._checked(reply, url, not_found_ok=not_found_ok)
                failure = self._busy(reply, url, attempts=attempt)
                retry_after = _retry_after(reply.headers)
            if attempt == self._max_attempts:
                raise failure
            self._sleep(backoff_delay(attempt, retry_after))
        raise AssertionError("unreachable: the loop returns or raises")

    def _send(self, url: str) -> _Reply:
        current = self._current_credentials()
        credentials = _frozen(current)
        request = AWSRequest(method="GET", url=url, headers={"accept": "application/json"})
        SigV4Auth(credentials, SERVICE, self.region).add_auth(request)
        response = self._http.request(
            "GET",
            url,
            headers=dict(request.headers.items()),
            retries=False,
            redirect=False,
            timeout=TIMEOUT,
        )
        return _Reply(
            response.status,
            response.data,
            dict(response.headers.items()),
            getattr(current, "method", None) or "unknown",
        )

    def _current_credentials(self) -> SigningCredentials:
        source = self._credentials
        if callable(source):
            source = source()
        if source is None:
            raise NoCredentialsError()
        return source

    def _checked(self, reply: _Reply, url: str, *, not_found_ok: bool) -> _Reply:
        if 200 <= reply.status < 300:
            return reply
        code, message = _error_of(reply.body)
        if reply.status == 404 and not_found_ok and code == "not_found":
            return reply
        if reply.status in (401, 403):
            raise AuthError(
                f"not authorised to call {self._what} ({reply.status}: {message}); "
                f"credentials from {reply.credential_source!r}",
                hint="use credentials of the stack's account that may call execute-api:Invoke "
                "on its API (imgcli config shows the profile and region in use)",
            )
        if reply.status == 404 and code != "not_found":
            # The gateway's own 404, not the function's: the API or its route is gone.
            raise NoStackError(
                f"{self._what} is gone: GET {_path_of(url)} answered 404 ({message})",
                hint=f"run '{self._bootstrap}' to create it again",
            )
        raise RemoteError(f"{self._what} answered {reply.status} to GET {_path_of(url)}: {message}")

    def _busy(self, reply: _Reply, url: str, *, attempts: int) -> RemoteError:
        _, message = _error_of(reply.body)
        return RemoteError(
            f"{self._what} answered {reply.status} ({message}) to GET {_path_of(url)}; "
            f"gave up after {attempts} attempts",
            hint="the API is throttling or unavailable: try again in a minute",
        )

    def _unreachable(self, url: str, cause: Exception, *, attempts: int = 1) -> NetworkError:
        reason = _reason(cause)
        tries = f" ({attempts} attempts)" if attempts > 1 else ""
        host = urlsplit(self.api_url).hostname or ""
        hint = (
            "is the local cloud running? start it with 'imgcli local start'"
            if host in _LOCAL_HOSTS
            else "check the network; if the stack was destroyed or moved, run 'imgcli bootstrap'"
        )
        return NetworkError(
            f"cannot reach {self._what} at {self.api_url}: {reason}{tries}", hint=hint
        )

    def _page(self, reply: _Reply) -> tuple[list[dict[str, Any]], str | None]:
        page = _json(reply.body)
        items = page.get("items") if isinstance(page, dict) else None
        next_cursor = page.get("next_cursor") if isinstance(page, dict) else None
        if (
            not isinstance(items, list)
            or not all(isinstance(item, dict) for item in items)
            or not (next_cursor is None or isinstance(next_cursor, str))
        ):
            raise RemoteError(f"{self._what} returned a listing imgcli does not understand")
        return items, next_cursor


def gallery_api_for(run: Invocation) -> GalleryApi:
    """The API client for the run's stack: its recorded URL, its session's credentials.

    The URL is read first, so a stack that was never bootstrapped is reported as such
    before any local cloud is started.
    """
    api_url = run.settings.record("api_url")
    aws = run.aws()
    credentials = aws.session.get_credentials()
    if credentials is None:
        raise NoCredentialsError()
    region = region_of_api(api_url) or aws.region or run.settings.region
    if not region:
        raise UsageError("no AWS region for this stack", hint="pass --region or set AWS_REGION")
    return GalleryApi(api_url, credentials, region, stack=run.settings.name)


def default_http(api_url: str) -> urllib3.PoolManager:
    """A pool for ``api_url``: through the environment's proxy unless ``no_proxy`` exempts it."""
    parts = urlsplit(api_url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        return urllib3.ProxyManager(proxy, timeout=TIMEOUT, retries=False)
    return urllib3.PoolManager(timeout=TIMEOUT, retries=False)


def region_of_api(api_url: str) -> str | None:
    """The region in an AWS execute-api URL (``https://id.execute-api.REGION.amazonaws.com``)."""
    match = _AWS_API_HOST.match(urlsplit(api_url).hostname or "")
    return match.group(1) if match else None


def encode_key(key: str) -> str:
    """``key`` as the API's path expects it: percent-encoded once, ``/`` kept, dot segments
    encoded so no HTTP client or signer removes them."""
    return "/".join(
        segment.replace(".", "%2E") if segment in (".", "..") else quote(segment, safe="")
        for segment in key.split("/")
    )


def encode_query(query: Mapping[str, str]) -> str:
    """Query parameters in SigV4's canonical encoding (``%20`` for a space, never ``+``)."""
    return urlencode(query, quote_via=quote, safe="")


def backoff_delay(attempt: int, retry_after: float | None = None) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): full jitter, capped,
    and never less than the server's ``Retry-After`` (itself capped)."""
    ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1))
    delay = random.uniform(0, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, BACKOFF_CAP_S))
    return delay


def _frozen(credentials: SigningCredentials) -> SigningCredentials:
    # RefreshableCredentials refresh here, when close to expiry; a snapshot also keeps the
    # three values consistent if another thread triggers a refresh mid-signature.
    freeze = getattr(credentials, "get_frozen_credentials", None)
    return freeze() if callable(freeze) else credentials


def _is_retryable(reply: _Reply) -> bool:
    if reply.status in RETRYABLE_STATUSES:
        return True
    if reply.status < 400:
        return False
    code, message = _error_of(reply.body)
    return code in THROTTLING_CODES or message in THROTTLING_CODES


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare from API Gateway, and the backoff still applies


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _error_of(body: bytes) -> tuple[str | None, str]:
    """The (code, message) of an error body, in the function's or the gateway's shape."""
    data = _json(body)
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            code = error.get("code")
            return (code if isinstance(code, str) else None), error["message"]
        for name in ("message", "Message"):
            if isinstance(data.get(name), str):
                code = data.get("code") or data.get("__type")
                return (code if isinstance(code, str) else None), data[name]
    text = " ".join(body.decode("utf-8", "replace").split())
    return None, (text[:200] or "no message")


def _reason(cause: BaseException) -> str:
    # urllib3 wraps the OS error; the innermost message is the one people recognise
    # ("Connection refused", "Name or service not known", "Connection reset by peer").
    inner = cause
    while inner.__cause__ is not None:
        inner = inner.__cause__
    wrapped = cause.args[1] if isinstance(cause, ProtocolError) and len(cause.args) > 1 else None
    if inner is cause and isinstance(wrapped, BaseException):
        inner = wrapped
    return " ".join((str(inner) or type(inner).__name__).split())


def _path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")
