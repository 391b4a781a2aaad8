"""EndpointSlice discovery (issue 26, point 1) against a Kubernetes API speaking the list and watch
protocol over real HTTP (tests/kube_api.py; no live cluster is used): the pool's members follow the
ready endpoints, a terminating pod is drained, a watch that ends resumes from its resourceVersion,
410 Gone re-lists, the service account's token is sent, and an unreachable API keeps the members."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from gateway.settings.sections import ModelRoute, UpstreamConfig
from gateway.upstreams.endpointslices import KubernetesApi, ready_addresses
from gateway.upstreams.pool import PoolPolicy, UpstreamPool
from tests.gateway.upstreams.test_discovery import until
from tests.kube_api import KubeApi, endpoint_slice, kube_api

NAMESPACE, SERVICE, TOKEN = "llm", "tantra-engine-headless", "service-account-token"


@pytest.fixture(scope="module")
def api() -> Iterator[KubeApi]:
    with kube_api(NAMESPACE, TOKEN, watch_s=1.0) as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as http:
        yield http


def sliced_pool(client: httpx.AsyncClient, api: KubeApi, token_file: Path) -> UpstreamPool:
    # The Service and namespace come from the URL's host, as the chart writes it.
    url = f"http://{SERVICE}.{NAMESPACE}.svc:8001"
    discovery = {"mode": "endpointslices"}
    config = UpstreamConfig.model_validate({"url": url, "discovery": discovery})
    kubernetes = KubernetesApi(url=api.url, token_file=token_file, ca_file=None)
    policy = PoolPolicy(breaker_failures=1, breaker_open_s=7.5, max_outstanding=0, kubernetes=kubernetes)
    routes = {"tiny": ModelRoute(upstreams=["engine"])}
    return UpstreamPool(client, {"engine": url}, {"engine": config}, routes, policy)


def test_ready_addresses_skip_endpoints_not_ready() -> None:
    slices = [
        endpoint_slice("a", SERVICE, {"10.0.0.2": True, "10.0.0.3": False}),
        endpoint_slice("b", SERVICE, {"10.0.0.1": None, "fd00::1": True}),  # unset: ready
    ]
    assert ready_addresses(slices) == ("10.0.0.1", "10.0.0.2", "fd00::1")
    assert ready_addresses([{"endpoints": None}]) == ()


def test_the_in_cluster_api_comes_from_the_pod_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    api = KubernetesApi.in_cluster()
    assert api.url == "https://10.96.0.1:443"
    assert str(api.token_file) == "/var/run/secrets/kubernetes.io/serviceaccount/token"
    assert KubernetesApi.in_cluster("https://api.example:6443/").url == "https://api.example:6443"


async def test_members_follow_the_slices_through_list_watch_and_gone(
    api: KubeApi, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    api.put(endpoint_slice("engine-a", SERVICE, {"10.0.0.1": True, "10.0.0.2": True}))
    api.put(endpoint_slice("engine-b", SERVICE, {"10.0.0.3": True}))
    api.put(endpoint_slice("other", "another-service", {"10.9.9.9": True}))  # not selected
    pool = sliced_pool(client, api, token)
    pool.start()
    try:
        await until(lambda: len(pool.members) == 3)
        assert set(pool.members) == {"engine@10.0.0.1", "engine@10.0.0.2", "engine@10.0.0.3"}
        assert pool.members["engine@10.0.0.2"].upstream.base_url == "http://10.0.0.2:8001"
        listed = next(r for r in api.requests if "watch" not in r)
        assert listed["labelSelector"] == f"kubernetes.io/service-name={SERVICE}"
        first, second, third = (pool.members[f"engine@10.0.0.{n}"] for n in (1, 2, 3))
        first.breaker.failure("refused")  # its own breaker only
        assert (second.breaker.state, third.breaker.state) == ("closed", "closed")

        # 10.0.0.2 terminates (ready: false) with a stream in flight; 10.0.0.4 joins, by a watch event.
        second.take()
        api.put(endpoint_slice("engine-a", SERVICE, {"10.0.0.1": True, "10.0.0.2": False, "10.0.0.4": True}))
        await until(lambda: "engine@10.0.0.4" in pool.members)
        assert pool.draining == {"engine@10.0.0.2": second} and second.draining
        assert pool.members["engine@10.0.0.3"] is third  # a staying member keeps its breaker
        second.give_back()
        pool.sweep_drained()
        assert not pool.draining

        # The server ends each watch after a second: the next resumes from the version last seen.
        await until(lambda: sum(1 for r in api.requests if r.get("watch")) >= 3)
        versions = [int(r["resourceVersion"]) for r in api.requests if r.get("watch")]
        assert versions == sorted(versions) and versions[-1] > versions[0]

        # The history is compacted (410 Gone): the watcher lists again and still follows.
        lists_before = sum(1 for r in api.requests if "watch" not in r)
        api.compact()
        api.delete("engine-b")
        await until(lambda: "engine@10.0.0.3" not in pool.members)
        assert sum(1 for r in api.requests if "watch" not in r) > lists_before
        assert set(pool.members) == {"engine@10.0.0.1", "engine@10.0.0.4"}
    finally:
        await pool.close()


async def test_an_unreachable_or_refusing_api_keeps_the_members(
    api: KubeApi, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("a stale token")  # the API answers 401: no member is invented or dropped
    api.put(endpoint_slice("engine-c", SERVICE, {"10.0.0.7": True}))
    pool = sliced_pool(client, api, token)
    pool.set_addresses("engine", ("10.0.0.5",))  # what an earlier watch had found
    pool.start()
    try:
        await until(lambda: sum(1 for r in api.requests if r.get("path", "").endswith("endpointslices")) > 0)
        await asyncio.sleep(0.3)
        assert set(pool.members) == {"engine@10.0.0.5"}
        token.write_text(TOKEN)  # the kubelet rotates the token in: it is read afresh each call
        await until(lambda: "engine@10.0.0.7" in pool.members, within_s=8.0)
    finally:
        await pool.close()
