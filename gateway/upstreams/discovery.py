"""Engine discovery: an upstream whose members are the addresses a DNS name resolves to.

In Kubernetes a headless Service's name resolves to one A (or AAAA) record per ready pod; an
upstream with `discovery` (gateway.settings.sections.DiscoveryConfig) has that name re-resolved
every `interval_s`, and each address becomes its own pool member (`<upstream>@<address>`: its own
breaker, prefix-affinity key, failover target and health verdict). The pool adds members for new
addresses and drains the ones whose records went away (docs/deploy.md, "Engine discovery").

Resolution uses dnspython's async resolver (the system's resolv.conf, or the one nameserver
TANTRA_DISCOVERY_NAMESERVER names: tests and custom resolvers), never the process's blocking
getaddrinfo or its cache. A name that does not exist, or has no address, is an answer: no member.
A resolver that does not answer (timeout, SERVFAIL) is not: the last members are kept.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import dns.asyncresolver
import dns.exception
import dns.rdatatype
import dns.resolver
import httpx

from gateway.background import cancelled

if TYPE_CHECKING:
    from gateway.settings.sections import UpstreamConfig

_log = logging.getLogger("tantra.discovery")

# How often the loop looks for groups that are due (a reload may add one or shorten an interval).
_TICK_S = 1.0


class DnsResolver:
    """A name's A and AAAA records, asked afresh each time (no cache between rounds)."""

    def __init__(self, nameserver: str | None = None, timeout_s: float = 2.0) -> None:
        self._nameserver = nameserver
        self._timeout_s = timeout_s
        self._built: dns.asyncresolver.Resolver | None = None

    @property
    def _resolver(self) -> dns.asyncresolver.Resolver:
        """Built at first use: reading resolv.conf is not for gateways that discover nothing."""
        if self._built is None:
            if self._nameserver is None:
                resolver = dns.asyncresolver.Resolver()  # /etc/resolv.conf, search domains too
            else:
                host, port = split_nameserver(self._nameserver)
                resolver = dns.asyncresolver.Resolver(configure=False)
                resolver.nameservers = [host]
                resolver.port = port
            resolver.cache = None
            resolver.lifetime = self._timeout_s
            self._built = resolver
        return self._built

    async def addresses(self, name: str) -> tuple[str, ...] | None:
        """The name's addresses, sorted (IPv4 first); () when it has none or does not exist; None
        when the resolver gave no answer (keep what was known)."""
        answers = await asyncio.gather(*(self._records(name, kind) for kind in ("A", "AAAA")))
        if all(answer is None for answer in answers):
            return None
        found = {address for answer in answers for address in answer or ()}
        return tuple(sorted(found, key=lambda text: ipaddress.ip_address(text).packed.rjust(16, b"\0")))

    async def _records(self, name: str, kind: str) -> tuple[str, ...] | None:
        try:
            answer = await self._resolver.resolve(name, kind, search=True)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return ()
        except dns.exception.DNSException as exc:  # timeout, SERVFAIL, no nameserver answered
            _log.warning("discovery: resolving %s %s failed: %s", name, kind, exc)
            return None
        return tuple(str(record.address) for record in answer)


def split_nameserver(text: str) -> tuple[str, int]:
    """`host`, `host:port` or `[v6]:port` to (host, port); port 53 when none is given."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest.removeprefix(":") or 53)
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, 53


def member_url(base_url: str, address: str, port: int | None) -> str:
    """The upstream's URL with its host replaced by one discovered address (and the port given)."""
    url = httpx.URL(base_url)
    url = url.copy_with(host=address, port=port if port is not None else url.port)
    return str(url).rstrip("/")


def member_name(group: str, address: str) -> str:
    return f"{group}@{address}"


class DiscoveryLoop:
    """Re-resolves every discovered upstream's name when its interval is due and hands the
    addresses to `apply(group, addresses)` (the pool's `set_addresses`). The groups are read
    afresh each tick, so a live reload's added, removed or changed upstreams are followed."""

    def __init__(
        self,
        resolver: DnsResolver,
        groups: Callable[[], Mapping[str, UpstreamConfig]],
        apply: Callable[[str, tuple[str, ...]], None],
    ) -> None:
        self._resolver = resolver
        self._groups = groups
        self._apply = apply
        self._due: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="tantra-discovery")

    async def close(self) -> None:
        await cancelled(self._task)
        self._task = None

    async def resolve_due(self) -> None:
        """One round: every group whose interval is over (or new) is resolved, concurrently."""
        now = time.monotonic()
        groups = self._groups()
        self._due = {name: due for name, due in self._due.items() if name in groups}
        due = {name: config for name, config in groups.items() if self._due.get(name, 0.0) <= now}
        names = list(due)
        found = await asyncio.gather(*(self._resolve(name, due[name]) for name in names))
        for name, addresses in zip(names, found, strict=True):
            config = due[name]
            assert config.discovery is not None
            self._due[name] = time.monotonic() + config.discovery.interval_s
            if addresses is not None and name in self._groups():  # not removed by a reload meanwhile
                self._apply(name, addresses)

    async def _resolve(self, name: str, config: UpstreamConfig) -> tuple[str, ...] | None:
        assert config.discovery is not None
        host = config.discovery.dns or httpx.URL(str(config.url)).host
        try:
            return await self._resolver.addresses(host)
        except Exception:  # a resolver bug must not empty the group: keep the last members
            _log.exception("discovery: resolving %s for upstream %s failed", host, name)
            return None

    async def _loop(self) -> None:
        while True:
            try:
                await self.resolve_due()
            except Exception:  # never end the loop: members would freeze as they are
                _log.exception("discovery round failed")
            await asyncio.sleep(_TICK_S if not self._due else min(_TICK_S, self._next_in()))

    def _next_in(self) -> float:
        return max(0.05, min(self._due.values()) - time.monotonic())
