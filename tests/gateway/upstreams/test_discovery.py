"""Engine discovery's parts against a real DNS server (dnslib, started here): the resolver, the pool's
members following the records (each its own breaker and affinity key), a member that leaves drained,
and the 503 with Retry-After when a discovered upstream has no member. The whole thing under load
against the real engine is tests/resilience/test_discovery_vllm.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry

from gateway.errors import EngineUnavailable
from gateway.observability.metrics import GatewayMetrics
from gateway.settings.sections import ModelRoute, UpstreamConfig
from gateway.upstreams.discovery import DnsResolver, member_url, split_nameserver
from gateway.upstreams.pool import PoolPolicy, UpstreamPool
from tests.dns_records import RecordServer, free_udp_port

NAME = "engine-headless.tantra.svc.cluster.local"


@pytest.fixture(scope="module")
def dns() -> Iterator[RecordServer]:
    with RecordServer() as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as http:
        yield http


def discovered_pool(
    client: httpx.AsyncClient,
    dns: RecordServer,
    interval_s: float = 0.2,
    metrics: GatewayMetrics | None = None,
) -> UpstreamPool:
    discovery = {"dns": NAME, "port": 8001, "interval_s": interval_s}
    config = UpstreamConfig.model_validate({"url": "http://engine-headless:8000", "discovery": discovery})
    policy = PoolPolicy(
        breaker_failures=1, breaker_open_s=7.5, max_outstanding=0, discovery_nameserver=dns.nameserver
    )
    routes = {"tiny": ModelRoute(upstreams=["engine"])}
    return UpstreamPool(client, {"engine": str(config.url)}, {"engine": config}, routes, policy, metrics)


async def test_the_resolver_reads_a_and_aaaa_and_tells_absence_from_silence(dns: RecordServer) -> None:
    dns.set(NAME, ("10.0.0.9", "fd00::2", "10.0.0.10"))
    dns.set("gone.test", None)
    dns.set("empty.test", ())
    resolver = DnsResolver(dns.nameserver)
    assert await resolver.addresses(NAME) == ("10.0.0.9", "10.0.0.10", "fd00::2")
    assert await resolver.addresses("gone.test") == ()  # NXDOMAIN: an answer, no member
    assert await resolver.addresses("empty.test") == ()  # no record: likewise
    silent = DnsResolver(f"127.0.0.1:{free_udp_port()}", timeout_s=0.3)  # nobody answers there
    assert await silent.addresses(NAME) is None  # no answer: the pool keeps its members


def test_member_urls_and_nameservers() -> None:
    assert member_url("http://engine-headless:8000", "10.1.2.3", None) == "http://10.1.2.3:8000"
    assert member_url("http://engine-headless:8000/", "fd00::1", 8001) == "http://[fd00::1]:8001"
    assert split_nameserver("10.0.0.53") == ("10.0.0.53", 53)
    assert split_nameserver("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert split_nameserver("[fd00::53]:5353") == ("fd00::53", 5353)


async def test_members_follow_the_records_and_a_leaving_one_is_drained(
    dns: RecordServer, client: httpx.AsyncClient
) -> None:
    dns.set(NAME, ("10.0.0.1", "10.0.0.2", "10.0.0.3"))
    metrics = GatewayMetrics(CollectorRegistry())
    pool = discovered_pool(client, dns, metrics=metrics)
    assert pool.members_for("tiny") == []  # nothing resolved yet: 503 with Retry-After, not a 404
    with pytest.raises(EngineUnavailable) as refused:
        pool.choose(pool.members_for("tiny"), None)
    assert refused.value.headers == {"retry-after": "8"}  # the breaker's wait, rounded up
    pool.start()
    try:
        await until(lambda: len(pool.members) == 3)
        assert set(pool.members) == {"engine@10.0.0.1", "engine@10.0.0.2", "engine@10.0.0.3"}
        assert pool.members["engine@10.0.0.2"].upstream.base_url == "http://10.0.0.2:8001"
        # One breaker per member: a failure opens only its own.
        first, second, third = (pool.members[f"engine@10.0.0.{n}"] for n in (1, 2, 3))
        first.breaker.failure("refused")
        states = (first.breaker.state, second.breaker.state, third.breaker.state)
        assert states == ("open", "closed", "closed")
        # Affinity per member: one prefix keeps one member while the others stay.
        chosen = {pool.choose(pool.members_for("tiny"), "same prompt prefix").name for _ in range(20)}
        assert len(chosen) == 1 and chosen != {first.name}

        # 10.0.0.2 leaves with a stream in flight, 10.0.0.4 joins.
        second.take()
        for member in pool.members.values():
            member.served = frozenset({"tiny"})  # as the catalogue read them
        planned = pool.members_for("tiny")  # a request planned before the change
        dns.set(NAME, ("10.0.0.1", "10.0.0.3", "10.0.0.4"))
        await until(lambda: "engine@10.0.0.4" in pool.members)
        assert "engine@10.0.0.2" not in pool.members and second.draining
        assert pool.draining == {"engine@10.0.0.2": second}
        assert pool.members["engine@10.0.0.3"] is third  # a staying member keeps its breaker and counts
        assert pool.members["engine@10.0.0.4"].served == {"tiny"}  # a new pod serves its group's model
        assert all(pool.choose(planned, None).name != second.name for _ in range(30))  # not even a retry
        assert pool.snapshot()["engine@10.0.0.2"]["draining"] is True
        second.give_back()  # its stream ends ...
        await until(lambda: not pool.draining)  # ... and it is dropped
        assert "engine@10.0.0.2" not in pool.snapshot()
        shown = metrics.render().decode()  # its gauges go too
        assert 'upstream="engine@10.0.0.2"' not in shown and 'upstream="engine@10.0.0.4"' in shown

        # A name that is gone (NXDOMAIN) empties the group; its return starts members afresh.
        dns.set(NAME, None)
        await until(lambda: not pool.members)
        dns.set(NAME, ("10.0.0.3",))
        await until(lambda: set(pool.members) == {"engine@10.0.0.3"})
        assert pool.members["engine@10.0.0.3"] is not third  # a new pod at an old address starts afresh
    finally:
        await pool.close()


async def test_a_reload_that_drops_discovery_goes_back_to_the_url(
    dns: RecordServer, client: httpx.AsyncClient
) -> None:
    dns.set(NAME, ("10.0.0.1",))
    pool = discovered_pool(client, dns)
    pool.set_addresses("engine", ("10.0.0.1", "10.0.0.5"))
    assert set(pool.members) == {"engine@10.0.0.1", "engine@10.0.0.5"}
    plain = {"engine": UpstreamConfig.model_validate({"url": "http://engine:8000"})}
    pool.reconfigure({"engine": "http://engine:8000"}, plain, {"tiny": ModelRoute(upstreams=["engine"])})
    assert set(pool.members) == {"engine"} and not pool.draining
    pool.set_addresses("engine", ("10.0.0.7",))  # a late answer for a group that is no more
    assert set(pool.members) == {"engine"}


async def until(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    """Wait, yielding to the pool's discovery loop, until `condition()` holds."""
    for _ in range(int(within_s / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached in time")
