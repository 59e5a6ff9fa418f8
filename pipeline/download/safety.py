"""What the downloader may fetch: URL schemes, destination addresses, and opt-out headers.

Addresses are checked where aiohttp gets them: :class:`SafeResolver` filters every DNS answer the
connector will connect to (so a name cannot resolve to 10.x or 169.254.169.254 behind our back),
and :func:`check_url` refuses literal IP hosts, which aiohttp connects to without resolving. Both
run on every redirect hop, before any connection is opened.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from aiohttp.abc import AbstractResolver

SCHEMES = ("http", "https")


class RefusedAddress(OSError):
    """A destination the downloader must not connect to; ``reason`` is the recorded reason."""

    def __init__(self, reason: str, detail: str):
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


def address_problem(ip: str) -> str | None:
    """Why connecting to ``ip`` is refused (``refused_private_address``...), or None if it is public."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return "refused_bad_address"
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # ::ffff:10.0.0.1 reaches 10.0.0.1
    if addr.is_loopback:
        return "refused_loopback_address"
    if addr.is_link_local:  # includes cloud metadata endpoints such as 169.254.169.254
        return "refused_link_local_address"
    if addr.is_multicast:
        return "refused_multicast_address"
    if addr.is_private or addr.is_reserved or addr.is_unspecified or not addr.is_global:
        return "refused_private_address"
    return None


class HostPolicy:
    """The allow-list: ``host`` or ``host:port`` entries exempt from the address checks."""

    def __init__(self, allow_hosts: Iterable[str] = ()):
        self._allowed = {h.strip().lower() for h in allow_hosts if h.strip()}

    def allows(self, host: str, port: int | None) -> bool:
        host = (host or "").lower().strip("[]")
        return host in self._allowed or f"{host}:{port}" in self._allowed

    def check_address(self, host: str, port: int | None, ip: str) -> str | None:
        """Reason to refuse connecting to ``ip`` for ``host:port``, or None."""
        if self.allows(host, port):
            return None
        return address_problem(ip)


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def check_url(url, policy: HostPolicy) -> str | None:
    """Reason to refuse a URL (a ``yarl.URL``) before connecting, or None.

    Names are left to :class:`SafeResolver`; literal IPs are checked here because aiohttp does not
    resolve them.
    """
    if url.scheme not in SCHEMES:
        return "unsupported_scheme"
    host = url.raw_host
    if not host:
        return "invalid_url"
    if is_ip_literal(host):
        return policy.check_address(host, url.port, host.strip("[]"))
    if host.lower() in ("localhost", "localhost.") or host.lower().endswith(".localhost"):
        return None if policy.allows(host, url.port) else "refused_loopback_address"
    return None


class SafeResolver(AbstractResolver):
    """A resolver that drops refused addresses from every answer, so they are never connected to.

    ``inner`` does the lookup (aiohttp's threaded resolver by default; tests pass a stub mapping
    names to chosen addresses). If nothing acceptable is left, the lookup fails with
    :class:`RefusedAddress`, which the fetcher records as the reason.
    """

    def __init__(self, policy: HostPolicy, inner: AbstractResolver | None = None):
        self._policy = policy
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ):
        if self._inner is None:
            from aiohttp.resolver import ThreadedResolver

            self._inner = ThreadedResolver()
        answers = await self._inner.resolve(host, port, family)
        kept, reasons = [], []
        for answer in answers:
            problem = self._policy.check_address(host, port, answer["host"])
            if problem is None:
                kept.append(answer)
            else:
                reasons.append(problem)
        if not kept:
            reason = reasons[0] if reasons else "dns_error"
            raise RefusedAddress(reason, f"{host} resolves only to refused addresses")
        return kept

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


class StaticResolver(AbstractResolver):
    """Resolves names from a fixed mapping (for tests and for pinning names to addresses)."""

    def __init__(self, mapping: dict[str, str]):
        self._mapping = {k.lower(): v for k, v in mapping.items()}

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ):
        ip = self._mapping.get(host.lower())
        if ip is None:
            raise OSError(f"no address for {host}")
        fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
        return [{"hostname": host, "host": ip, "port": port, "family": fam, "proto": 0, "flags": 0}]

    async def close(self) -> None:
        return None


def user_agent_token(user_agent: str) -> str:
    """The product token of a User-Agent (``wit-builder/0.1 (+url)`` -> ``wit-builder``)."""
    return user_agent.strip().split("/", 1)[0].split(" ", 1)[0].lower()


OPT_OUT_DIRECTIVES = frozenset({"noai", "noimageai"})


def opted_out(values: Iterable[str], ua_token: str) -> bool:
    """Whether ``X-Robots-Tag`` header values forbid AI use, for everyone or for ``ua_token``.

    Handles ``noai``, ``noimageai``, comma lists, and the scoped form ``wit-builder: noai``; a
    directive scoped to another user agent does not apply.
    """
    for value in values:
        scope, sep, rest = value.partition(":")
        if sep and scope.strip() and " " not in scope.strip() and "," not in scope:
            if scope.strip().lower() != ua_token:
                continue
            directives = rest
        else:
            directives = value
        if any(d.strip().lower() in OPT_OUT_DIRECTIVES for d in directives.split(",")):
            return True
    return False
