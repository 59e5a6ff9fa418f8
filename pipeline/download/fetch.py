"""The HTTP client: one aiohttp session per worker, polite and safe, every failure a reason.

One :class:`Fetcher` serves all the requests of a worker process: a shared ``ClientSession`` whose
connector caps concurrency globally and per host, caches DNS answers, and resolves names through
:class:`~pipeline.download.safety.SafeResolver`. Redirects are followed by hand so each hop is
re-checked; 429/503 and connection errors are retried with exponential backoff and jitter,
honouring ``Retry-After`` up to a bound; bodies are streamed and abandoned past ``max_bytes``;
``X-Robots-Tag`` opt-outs are read from the headers before any body is read.
"""

from __future__ import annotations

import asyncio
import email.utils
import errno
import random
import time
from dataclasses import dataclass, field

import aiohttp
from yarl import URL

from pipeline.download import safety

REDIRECT_CODES = (301, 302, 303, 307, 308)
RETRY_HTTP = (429, 503)
# Every reason fetch() records; ``http_<status>`` and ``error_<exception type>`` stand for their
# families. With images.REASONS, the README's table of failure reasons lists them all.
REASONS = frozenset(
    {"http_<status>", "timeout", "connection_reset", "connection_error", "dns_error", "truncated"}
    | {"too_large", "wrong_content_type", "opted_out", "bad_http_response", "invalid_url"}
    | {"redirect_loop", "too_many_redirects", "invalid_redirect", "unsupported_scheme"}
    | {f"refused_{kind}_address" for kind in ("loopback", "private", "link_local", "multicast")}
    | {"refused_bad_address", "client_error", "error_<exception type>"}
)
# Failures worth another try later (--retry-failed): the server or the network may recover.
RETRYABLE_REASONS = frozenset(
    {"timeout", "connection_reset", "connection_error", "dns_error", "truncated", "http_429"}
    | {f"http_{c}" for c in (500, 502, 503, 504)}
)


@dataclass(frozen=True)
class FetchOptions:
    """Client settings (a subset of the ``download`` config section)."""

    concurrency: int = 64
    per_host: int = 16
    timeout: float = 10.0
    connect_timeout: float = 5.0
    read_timeout: float = 5.0
    retries: int = 2
    backoff: float = 0.5
    retry_after_max: float = 10.0
    max_redirects: int = 5
    max_bytes: int = 20_000_000
    user_agent: str = "wit-builder/0.1"
    allow_hosts: tuple = ()
    respect_opt_out: bool = True
    dns_ttl: int = 300

    @classmethod
    def from_config(cls, cfg, extra_allow: tuple = ()) -> FetchOptions:
        names = cls.__dataclass_fields__.keys() - {"allow_hosts"}
        values = {n: getattr(cfg, n) for n in names}
        return cls(allow_hosts=tuple(cfg.allow_hosts) + tuple(extra_allow), **values)


@dataclass(frozen=True)
class FetchResult:
    """One URL's outcome: the body on success, else a reason such as ``http_404`` or ``timeout``."""

    url: str
    ok: bool
    reason: str | None = None
    body: bytes | None = field(default=None, repr=False)
    http_status: int | None = None
    final_url: str | None = None
    retries: int = 0
    redirects: int = 0
    seconds: float = 0.0
    content_type: str | None = None

    @property
    def nbytes(self) -> int:
        return len(self.body) if self.body is not None else 0


@dataclass
class _Trail:
    """How far a request got: redirect hops followed so far (recorded on failures too)."""

    hops: int = 0


class _Failure(Exception):
    """A request outcome that is not a success; carries the recorded reason."""

    def __init__(
        self, reason: str, http_status: int | None = None, retry_after: float | None = None
    ):
        super().__init__(reason)
        self.reason = reason
        self.http_status = http_status
        self.retry_after = retry_after


def classify_error(exc: BaseException) -> str:
    """A short, stable reason for a client exception."""
    if isinstance(exc, _Failure):
        return exc.reason
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        inner = getattr(exc, "os_error", None) or exc.__cause__
        return inner.reason if isinstance(inner, safety.RefusedAddress) else "dns_error"
    if isinstance(exc, safety.RefusedAddress):
        return exc.reason
    if isinstance(exc, aiohttp.InvalidURL):
        return "invalid_url"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "connection_reset"
    if isinstance(exc, aiohttp.ClientPayloadError):
        text = f"{exc} {exc.__cause__}".lower()
        return "connection_reset" if "reset" in text else "truncated"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connection_error"
    if isinstance(exc, (aiohttp.ClientOSError, ConnectionError)):
        err = getattr(exc, "errno", None)
        return "connection_reset" if err in (errno.ECONNRESET, errno.EPIPE) else "connection_error"
    if isinstance(exc, aiohttp.ClientResponseError):
        # Statuses are read by hand (never raise_for_status), so aiohttp raises this only when
        # its parser rejects the response: the 400 it carries was never sent by the server.
        return "bad_http_response"
    if isinstance(exc, aiohttp.ClientError):
        return "client_error"
    return "error_" + type(exc).__name__


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Fetcher:
    """An asyncio HTTP client for many image URLs; create and use it inside one event loop."""

    def __init__(self, opts: FetchOptions, resolver=None):
        self.opts = opts
        self.policy = safety.HostPolicy(opts.allow_hosts)
        self._inner_resolver = resolver
        self._session: aiohttp.ClientSession | None = None
        self._ua_token = safety.user_agent_token(opts.user_agent)
        self._rng = random.Random()

    async def __aenter__(self) -> Fetcher:
        o = self.opts
        connector = aiohttp.TCPConnector(
            limit=o.concurrency,
            limit_per_host=o.per_host,
            use_dns_cache=o.dns_ttl > 0,
            ttl_dns_cache=o.dns_ttl or None,
            resolver=safety.SafeResolver(self.policy, self._inner_resolver),
            enable_cleanup_closed=True,
        )
        timeout = aiohttp.ClientTimeout(
            total=o.timeout, sock_connect=o.connect_timeout, sock_read=o.read_timeout
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            headers={"User-Agent": o.user_agent, "Accept": "image/*,*/*;q=0.5"},
            trust_env=False,  # no proxies from the environment: they would bypass the address checks
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self

    async def __aexit__(self, *exc) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch(self, url: str) -> FetchResult:
        """Fetch one URL with retries; never raises for per-URL problems."""
        started = time.perf_counter()
        attempt = 0
        while True:
            trail = _Trail()
            try:
                body, status, final, hops, ctype = await self._follow(url, trail)
                return FetchResult(
                    url,
                    True,
                    None,
                    body,
                    status,
                    final,
                    attempt,
                    hops,
                    time.perf_counter() - started,
                    ctype,
                )
            except Exception as exc:  # every per-URL failure becomes a recorded reason
                reason = classify_error(exc)
                http_status = getattr(exc, "http_status", None)
                delay = self._retry_delay(exc, reason, attempt)
                if delay is None:
                    seconds = time.perf_counter() - started
                    return FetchResult(
                        url, False, reason, None, http_status, None, attempt, trail.hops, seconds
                    )
            attempt += 1
            await asyncio.sleep(delay)

    def _retry_delay(self, exc: BaseException, reason: str, attempt: int) -> float | None:
        """Seconds to wait before retrying, or None to give up."""
        retryable = reason in ("connection_reset", "connection_error") or (
            isinstance(exc, _Failure) and exc.http_status in RETRY_HTTP
        )
        if not retryable or attempt >= self.opts.retries:
            return None
        delay = self.opts.backoff * (2**attempt) * self._rng.uniform(0.5, 1.5)
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            if retry_after > self.opts.retry_after_max:
                return None  # the server asks for longer than we wait: give up, record the status
            delay = max(delay, retry_after)
        return delay

    async def _follow(self, url: str, trail: _Trail):
        """GET ``url``, following redirects by hand; returns (body, status, final url, hops, type).

        ``trail.hops`` counts the redirects followed, so a failure records them as well.
        """
        try:
            current = URL(url)
        except (ValueError, TypeError):
            raise _Failure("invalid_url") from None
        seen = {str(current)}
        for hops in range(self.opts.max_redirects + 1):
            problem = safety.check_url(current, self.policy)
            if problem:
                raise _Failure(problem)
            result = await self._get_once(current)
            if isinstance(result[0], URL):
                target, status = result
                trail.hops = hops + 1
                if str(target) in seen:
                    raise _Failure("redirect_loop", status)
                seen.add(str(target))
                current = target
                continue
            body, status, ctype = result
            return body, status, str(current), hops, ctype
        raise _Failure("too_many_redirects", status)

    async def _get_once(self, url: URL):
        """One request: (redirect target URL, status) or (body, status, content type)."""
        assert self._session is not None, "use Fetcher inside 'async with'"
        async with self._session.get(url, allow_redirects=False) as resp:
            status = resp.status
            if status in REDIRECT_CODES:
                location = resp.headers.get("Location")
                if not location:
                    raise _Failure(f"http_{status}", status)
                try:
                    return url.join(URL(location)), status
                except (ValueError, TypeError):
                    raise _Failure("invalid_redirect", status) from None
            if status != 200:
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                raise _Failure(f"http_{status}", status, retry_after)
            if self.opts.respect_opt_out and safety.opted_out(
                resp.headers.getall("X-Robots-Tag", []), self._ua_token
            ):
                raise _Failure("opted_out", status)
            ctype = resp.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
            if ctype.startswith("text/"):  # an error page or a mislabelled body: not read
                raise _Failure("wrong_content_type", status)
            return await self._read_body(resp), status, ctype

    async def _read_body(self, resp: aiohttp.ClientResponse) -> bytes:
        """The body, refused (``too_large``) as soon as it exceeds ``max_bytes``."""
        limit = self.opts.max_bytes
        if resp.content_length is not None and resp.content_length > limit:
            raise _Failure("too_large", resp.status)
        if resp.content_length is not None and "Content-Encoding" not in resp.headers:
            return await resp.read()  # aiohttp stops at Content-Length; no decompression to grow it
        chunks, total = [], 0
        async for chunk in resp.content.iter_chunked(1 << 16):
            total += len(chunk)
            if total > limit:
                raise _Failure("too_large", resp.status)
            chunks.append(chunk)
        return b"".join(chunks)
