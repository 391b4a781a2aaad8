"""The replicas behind the gateway: which may take a request now, and which should.

Routing picks, among the replicas serving a model whose breaker lets traffic through and that
have room, the one the request's prompt prefix hashes to (rendezvous hashing, so vLLM's prefix
cache on that replica hits), unless it is busier than the least busy one by more than
`_AFFINITY_SLACK` requests; then the least busy one. Open breakers are probed in the background
(`/health`; a provider's `/v1/models`) and become half-open when it answers, so a restarted engine
rejoins on its own.

An upstream with `discovery` is a group: each address its DNS name resolves to is a member
(`<upstream>@<address>`, gateway/upstreams/discovery.py). A member whose address goes away is
drained: it takes no new request (not even a retry or a failover of a request planned before), the
streams it is serving finish, and it is dropped when the last one gives it back.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
import zlib
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from gateway.background import cancelled
from gateway.errors import EngineUnavailable, Overloaded
from gateway.observability.metrics import GatewayMetrics
from gateway.settings.sections import ModelRoute, UpstreamConfig
from gateway.upstreams.breaker import BreakerState, CircuitBreaker
from gateway.upstreams.discovery import DiscoveryLoop, DnsResolver, member_name, member_url
from gateway.upstreams.endpointslices import EndpointSliceDiscovery, KubernetesApi
from gateway.upstreams.factory import make_upstream
from gateway.upstreams.interface import Upstream, UpstreamSpec

_log = logging.getLogger("tantra.upstreams")

# How many more requests in flight the prefix's replica may have than the least busy one.
_AFFINITY_SLACK = 2
_PROBE_INTERVAL_S = 0.5


@dataclass(eq=False)
class Member:
    """One upstream in the pool, with what routing needs to know about it right now."""

    name: str
    upstream: Upstream
    breaker: CircuitBreaker
    max_outstanding: int = 0
    outstanding: int = 0
    served: frozenset[str] = field(default_factory=frozenset)
    cards: tuple[dict[str, Any], ...] = ()  # its last /v1/models answer
    group: str = ""  # the configured upstream it belongs to (its own name unless discovered)
    draining: bool = False  # its address left the DNS records: no new requests, then dropped

    @property
    def saturated(self) -> bool:
        return 0 < self.max_outstanding <= self.outstanding

    def take(self) -> None:
        self.outstanding += 1
        self.breaker.acquire()

    def give_back(self) -> None:
        self.outstanding = max(0, self.outstanding - 1)
        self.breaker.release()


@dataclass(frozen=True)
class PoolPolicy:
    breaker_failures: int
    breaker_open_s: float
    max_outstanding: int
    discovery_nameserver: str | None = None  # discovered upstreams' resolver; None: resolv.conf
    kubernetes: KubernetesApi | None = None  # `endpointslices` discovery's API; None: in-cluster


class UpstreamPool:
    """Every upstream by name, built from the settings' `upstreams` (or the one `engine_url`): the
    gateway's one registry of upstreams, which health checks and metrics federation read too.

    `probes` is the health probes' own client (gateway/clients.py, `probe_client`), which the pool
    then owns and closes; without it the probes share `client` with the requests."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        urls: Mapping[str, str],
        configs: Mapping[str, UpstreamConfig],
        routes: Mapping[str, ModelRoute],
        policy: PoolPolicy,
        metrics: GatewayMetrics | None = None,
        *,
        probes: httpx.AsyncClient | None = None,
    ) -> None:
        self._client = client
        self._probes = probes
        self._policy = policy
        self._metrics = metrics
        self.members: dict[str, Member] = {}
        self.draining: dict[str, Member] = {}  # left, with requests still in flight
        self.routes: dict[str, ModelRoute] = {}
        self._urls: dict[str, str] = {}
        self._configs: dict[str, UpstreamConfig] = {}
        self._addresses: dict[str, tuple[str, ...]] = {}  # each discovered upstream's last answer
        self._discovery: DiscoveryLoop | None = None
        self._slices: EndpointSliceDiscovery | None = None
        self._probe_task: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[], None]] = []
        self.reconfigure(urls, configs, routes)

    def reconfigure(
        self, urls: Mapping[str, str], configs: Mapping[str, UpstreamConfig], routes: Mapping[str, ModelRoute]
    ) -> None:
        """A live reload: known upstreams keep their breaker and counts, new ones start closed."""
        members: dict[str, Member] = {}
        for group, url in urls.items():
            config = configs.get(group) or UpstreamConfig.model_validate({"url": url})  # the defaults
            for name, address in self._expand(group, url, config):
                spec = UpstreamSpec(config.kind, address, config.api_key())  # a rotated key too
                member = self.members.get(name) or self.draining.pop(name, None)  # a pod back at once
                if member is None or not member.upstream.same_as(spec):
                    member = Member(
                        name,
                        make_upstream(spec, self._client, self._probes),
                        self._breaker(name),
                        group=group,
                    )
                    self._inherit(member)
                member.draining = False
                limit = config.max_outstanding
                member.max_outstanding = self._policy.max_outstanding if limit is None else limit
                members[name] = member
        self._retire([member for member in self.members.values() if members.get(member.name) is not member])
        self.members = members
        self.routes = dict(routes)
        self._urls, self._configs = dict(urls), dict(configs)
        self._addresses = {group: self._addresses.get(group, ()) for group in self.discovered()}
        for listener in self._listeners:
            listener()

    def _expand(self, group: str, url: str, config: UpstreamConfig) -> list[tuple[str, str]]:
        """(member name, base URL) of each member of a configured upstream: itself, or one per
        address its discovery last found."""
        if config.discovery is None:
            return [(group, url.rstrip("/"))]
        port = config.discovery.port
        return [
            (member_name(group, address), member_url(url, address, port))
            for address in self._addresses.get(group, ())
        ]

    def _inherit(self, member: Member) -> None:
        """A new pod of a discovered upstream serves what its group does (the pods of one Service
        run one model): it takes traffic at once, not after the catalogue is next read."""
        if member.name == member.group:
            return  # a configured upstream of its own: a new URL may well serve another model
        sibling = next((other for other in self.members.values() if other.group == member.group), None)
        if sibling is not None:
            member.served, member.cards = sibling.served, sibling.cards

    def _retire(self, leaving: list[Member]) -> None:
        """Members no longer configured or found: drained while they have requests in flight."""
        for member in leaving:
            member.draining = True
            if member.outstanding:
                _log.info("upstream %s left; draining %d in flight", member.name, member.outstanding)
                self.draining[member.name] = member
            else:
                _log.info("upstream %s left", member.name)
                self._forget(member.name)

    def discovered(self, mode: str | None = None) -> dict[str, UpstreamConfig]:
        """The configured upstreams whose members are found (in DNS or EndpointSlices; `mode`: one)."""
        return {
            group: config
            for group, config in self._configs.items()
            if group in self._urls and config.discovery is not None and mode in (None, config.discovery.mode)
        }

    def set_addresses(self, group: str, addresses: tuple[str, ...]) -> None:
        """A discovered upstream's addresses now: members join for new ones, drain for gone ones."""
        before = self._addresses.get(group)
        if before == addresses or group not in self.discovered():
            return
        joined = sorted(set(addresses) - set(before or ()))
        left = sorted(set(before or ()) - set(addresses))
        _log.info("discovery: upstream %s members %s (joined %s, left %s)", group, addresses, joined, left)
        self._addresses[group] = addresses
        self.reconfigure(self._urls, self._configs, self.routes)

    def sweep_drained(self) -> None:
        """Drop the draining members whose last request has ended."""
        for name, member in list(self.draining.items()):
            if member.outstanding == 0:
                _log.info("upstream %s drained and dropped", name)
                del self.draining[name]
                self._forget(name)

    def _forget(self, name: str) -> None:
        if self._metrics is not None and name not in self.members:  # not back under the same name
            self._metrics.forget_upstream(name)

    def on_reconfigure(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every reconfiguration (health checks probe new upstreams at once)."""
        self._listeners.append(listener)

    def upstreams(self) -> dict[str, Upstream]:
        """Every upstream by name, as configured now."""
        return {name: member.upstream for name, member in self.members.items()}

    def _breaker(self, name: str) -> CircuitBreaker:
        def changed(state: BreakerState) -> None:
            if state == "open":
                _log.warning("upstream %s circuit open; last failure: %s", name, breaker.last_failure)
            else:
                _log.info("upstream %s circuit %s", name, state)
            if self._metrics is not None:
                self._metrics.set_circuit(name, state)

        if self._metrics is not None:
            self._metrics.set_circuit(name, "closed")
        breaker = CircuitBreaker(
            failures=self._policy.breaker_failures, open_s=self._policy.breaker_open_s, on_change=changed
        )
        return breaker

    # -- which upstreams serve a model --------------------------------------------------------

    def route(self, model: str) -> ModelRoute | None:
        return self.routes.get(model)

    def members_for(self, model: str) -> list[Member]:
        """The upstreams configured for `model`; unconfigured, the vLLM servers whose model list
        names it (every one, before any list has been read). A provider serves only the models
        routed to it: its catalogue is not the gateway's."""
        route = self.routes.get(model)
        if route is not None and route.upstreams:
            return [member for group in route.upstreams for member in self.group(group)]
        engines = [member for member in self.members.values() if member.upstream.capabilities.joins_catalogue]
        serving = [member for member in engines if model in member.served]
        return serving or engines

    def group(self, group: str) -> list[Member]:
        """The members of one configured upstream (one, or those its discovery found)."""
        return [member for member in self.members.values() if member.group == group]

    async def list_models(self, timeout_s: float) -> list[dict[str, Any]]:
        """Every model the upstreams serve (asked concurrently), and the configured ones. An
        upstream that does not answer now (down, or too busy streaming to list in time) counts with
        its last answer: its models stay known, and reach its breaker (503), not a 404. Raises
        EngineUnavailable when nothing is known. Upstreams that do not join the catalogue (providers)
        are not asked: only the models configured for them are listed."""
        members = [member for member in self.members.values() if member.upstream.capabilities.joins_catalogue]
        answers = await asyncio.gather(
            *(member.upstream.list_models(timeout_s) for member in members), return_exceptions=True
        )
        cards: dict[str, dict[str, Any]] = {}
        for member, answer in zip(members, answers, strict=True):
            if not isinstance(answer, BaseException):
                member.served = frozenset(str(card["id"]) for card in answer)
                member.cards = tuple(answer)
            for card in member.cards:
                cards.setdefault(str(card["id"]), card)
        if not cards and all(isinstance(answer, BaseException) for answer in answers) and not self.routes:
            raise EngineUnavailable("No upstream is reachable; try again shortly.")
        for model, route in self.routes.items():
            if model not in cards:
                # A model no upstream listed (a provider's, or one whose engines are down) still
                # gets a whole card: `created` is required by OpenAI's schema (0: not known).
                base = cards.get(route.served_name or model, {})
                owner = base.get("owned_by", "tantra")
                cards[model] = {"created": 0, **base, "id": model, "object": "model", "owned_by": owner}
        return list(cards.values())

    # -- choosing one ---------------------------------------------------------------------------

    def choose(self, members: Iterable[Member], affinity: str | None, avoid: Collection[str] = ()) -> Member:
        """The member to send a request to: EngineUnavailable when every breaker is open,
        Overloaded (503, Retry-After) when every open one is full."""
        # While the background probe runs, it alone decides when an open upstream is tried again
        # (a hung one would otherwise cost a real request its timeout); without it, requests probe.
        probing = self._probe_task is not None
        usable = [
            member
            for member in members
            if not member.draining
            and member.breaker.allows()
            and not (probing and member.breaker.state == "open")
        ]
        if not usable:
            raise EngineUnavailable(
                "Every upstream serving this model is down; try again shortly.",
                retry_after_s=math.ceil(self._policy.breaker_open_s),
            )
        fresh = [member for member in usable if member.name not in avoid] or usable
        room = [member for member in fresh if not member.saturated]
        if not room:
            raise Overloaded("Every upstream serving this model is at capacity; try again shortly.")
        for member in room:
            if member.breaker.state == "half_open":
                return member  # the recovering upstream's trial: affinity alone might never send it
        least = min(member.outstanding for member in room)
        if affinity and len(room) > 1:
            preferred = max(room, key=lambda member: zlib.crc32(f"{member.name}\0{affinity}".encode()))
            if preferred.outstanding <= least + _AFFINITY_SLACK:
                return preferred
        return random.choice([member for member in room if member.outstanding == least])

    # -- state and recovery ---------------------------------------------------------------------

    def snapshot(self) -> dict[str, dict[str, Any]]:
        now = time.monotonic()
        return {
            name: {
                "url": member.upstream.base_url,
                "kind": member.upstream.kind,
                "group": member.group,
                "draining": member.draining,
                "state": member.breaker.state,
                "consecutive_failures": member.breaker.consecutive_failures,
                "last_failure": member.breaker.last_failure or None,
                "outstanding": member.outstanding,
                "max_outstanding": member.max_outstanding or None,
                "open_for_s": round(now - member.breaker.opened_at, 2)
                if member.breaker.state == "open"
                else None,
                "models": sorted(member.served),
            }
            for name, member in [*self.members.items(), *self.draining.items()]
        }

    def start(self) -> None:
        if self._probe_task is None:
            loop = asyncio.get_running_loop()
            self._probe_task = loop.create_task(self._probe_loop(), name="tantra-breakers")
        if self._discovery is None:
            resolver = DnsResolver(self._policy.discovery_nameserver)
            self._discovery = DiscoveryLoop(resolver, lambda: self.discovered("dns"), self.set_addresses)
            self._discovery.start()
        if self._slices is None:
            api = self._policy.kubernetes or KubernetesApi.in_cluster()
            self._slices = EndpointSliceDiscovery(
                api, lambda: self.discovered("endpointslices"), self.set_addresses
            )
            self._slices.start()

    async def close(self) -> None:
        if self._discovery is not None:
            await self._discovery.close()
            self._discovery = None
        if self._slices is not None:
            await self._slices.close()
            self._slices = None
        await cancelled(self._probe_task)
        self._probe_task = None
        if self._probes is not None:
            await self._probes.aclose()

    async def _probe_loop(self) -> None:
        """Open breakers whose wait is over get a /health probe: an answer half-opens the breaker
        (the next request is the trial), silence re-arms the wait."""
        while True:
            await asyncio.sleep(_PROBE_INTERVAL_S)
            try:
                self.sweep_drained()
                await self._probe_due()
            except Exception:  # a probe bug must not end the loop: breakers would stay open
                _log.exception("probing open upstreams failed")

    async def _probe_due(self) -> None:
        due = [member for member in self.members.values() if member.breaker.probe_due()]
        if due:
            results = await asyncio.gather(
                *(member.upstream.is_healthy(self._policy.breaker_open_s) for member in due)
            )
            for member, healthy in zip(due, results, strict=True):
                if member.breaker.state != "open":
                    continue
                if healthy:
                    member.breaker.acquire()  # to half-open ...
                    member.breaker.release()  # ... with the trial slot left for a real request
                else:
                    member.breaker.opened_at = time.monotonic()
