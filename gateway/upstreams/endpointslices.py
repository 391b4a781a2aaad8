"""Engine discovery through the Kubernetes API: the EndpointSlices of a Service, listed then watched.

The alternative to DNS (gateway/upstreams/discovery.py) for an upstream whose `discovery.mode` is
`endpointslices`: the gateway lists `discovery.k8s.io/v1` EndpointSlices labelled
`kubernetes.io/service-name=<service>`, then watches them from the list's resourceVersion (one JSON
event a line), and hands the ready endpoints' addresses to the pool, which adds and drains members
exactly as for DNS. A change reaches the gateway as the API server sees it, not an interval later,
and a terminating pod (`ready: false`) leaves before its DNS record would.

A watch that ends is resumed from the last resourceVersion seen; a `410 Gone` (the version has been
compacted away) re-lists. While the API cannot be reached the last members are kept, and the call is
retried with backoff. Credentials are the pod's service account (its token, re-read on each call as
the kubelet rotates it, and the cluster's CA); the chart grants get, list and watch on EndpointSlices
in the release's namespace (docs/deploy.md, "Engine discovery"). httpx speaks the API, no client
library: the protocol needed is two GETs.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from gateway.background import cancelled

if TYPE_CHECKING:
    from gateway.settings.sections import UpstreamConfig

_log = logging.getLogger("tantra.discovery")

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_TICK_S = 1.0  # how often the watchers are matched to the configured groups (a reload may change them)
_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)


class Gone(Exception):
    """The watch's resourceVersion is too old (HTTP 410, or an ERROR event with code 410): re-list."""


@dataclass(frozen=True)
class KubernetesApi:
    """Where the API server is and how to authenticate: in a pod, its service account."""

    url: str
    token_file: Path | None = SERVICE_ACCOUNT / "token"
    ca_file: Path | None = SERVICE_ACCOUNT / "ca.crt"
    namespace_file: Path = SERVICE_ACCOUNT / "namespace"

    @classmethod
    def in_cluster(
        cls, url: str | None = None, token_file: str | None = None, ca_file: str | None = None
    ) -> KubernetesApi:
        """The API named by the settings, else the one Kubernetes tells every pod of (its env)."""
        if url is None:
            host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
            url = f"https://{_bracketed(host)}:{port or 443}" if host else "https://kubernetes.default.svc"
        return cls(
            url=url.rstrip("/"),
            token_file=Path(token_file) if token_file else SERVICE_ACCOUNT / "token",
            ca_file=Path(ca_file) if ca_file else SERVICE_ACCOUNT / "ca.crt",
        )

    def headers(self) -> dict[str, str]:
        if self.token_file is None or not self.token_file.exists():
            return {}
        return {"Authorization": f"Bearer {self.token_file.read_text().strip()}"}

    def verify(self) -> ssl.SSLContext | bool:
        if self.url.startswith("http://"):
            return False
        if self.ca_file is not None and self.ca_file.exists():
            return ssl.create_default_context(cafile=str(self.ca_file))
        return True

    def own_namespace(self) -> str:
        return self.namespace_file.read_text().strip() if self.namespace_file.exists() else "default"


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def ready_addresses(slices: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """The addresses of the endpoints that are ready (an absent condition counts as ready, as the
    API defines it), over all slices, sorted as DNS discovery sorts them (IPv4 first)."""
    found: set[str] = set()
    for item in slices:
        for endpoint in item.get("endpoints") or ():
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            found.update(endpoint.get("addresses") or ())
    return tuple(sorted(found, key=lambda text: ipaddress.ip_address(text).packed.rjust(16, b"\0")))


class SliceWatcher:
    """One Service's EndpointSlices, kept current; `apply(addresses)` after every change."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        api: KubernetesApi,
        target: tuple[str, str],
        apply: Callable[[tuple[str, ...]], None],
    ) -> None:
        namespace, service = target
        self._client = client
        self._api = api
        self._path = f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"
        self._selector = f"kubernetes.io/service-name={service}"
        self._apply = apply
        self._slices: dict[str, Mapping[str, Any]] = {}
        self._version = ""
        self._last: tuple[str, ...] | None = None

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                if not self._version:
                    await self.list()
                await self.watch()
                failures = 0
            except Gone:
                _log.info("discovery: %s watch expired; listing again", self._selector)
                self._version = ""
            except (httpx.HTTPError, ValueError, KeyError) as exc:  # the last members are kept meanwhile
                _log.warning("discovery: EndpointSlices of %s: %s", self._selector, exc)
                await asyncio.sleep(_BACKOFF_S[min(failures, len(_BACKOFF_S) - 1)])
                failures += 1

    async def list(self) -> None:
        response = await self._client.get(
            self._api.url + self._path, params={"labelSelector": self._selector}, headers=self._api.headers()
        )
        response.raise_for_status()
        body = orjson.loads(response.content)
        self._slices = {item["metadata"]["name"]: item for item in body.get("items") or ()}
        self._version = body["metadata"]["resourceVersion"]
        self._publish()

    async def watch(self) -> None:
        """Follow the events from the last version until the server ends the stream."""
        params = {
            "labelSelector": self._selector,
            "watch": "1",
            "resourceVersion": self._version,
            "allowWatchBookmarks": "true",
        }
        url = self._api.url + self._path
        async with self._client.stream("GET", url, params=params, headers=self._api.headers()) as response:
            if response.status_code == 410:
                raise Gone
            response.raise_for_status()
            async for line in response.aiter_lines():
                if line.strip():
                    self._event(orjson.loads(line))

    def _event(self, event: Mapping[str, Any]) -> None:
        kind, item = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if item.get("code") == 410:
                raise Gone
            raise ValueError(f"watch error: {item.get('message')}")
        self._version = item["metadata"]["resourceVersion"]
        if kind == "BOOKMARK":
            return
        name = item["metadata"]["name"]
        if kind == "DELETED":
            self._slices.pop(name, None)
        else:  # ADDED, MODIFIED
            self._slices[name] = item
        self._publish()

    def _publish(self) -> None:
        addresses = ready_addresses(self._slices.values())
        if addresses != self._last:
            self._last = addresses
            self._apply(addresses)


class EndpointSliceDiscovery:
    """A watcher for each upstream discovered through EndpointSlices, started and stopped as the
    configured groups change (read afresh each tick, so a live reload is followed)."""

    def __init__(
        self,
        api: KubernetesApi,
        groups: Callable[[], Mapping[str, UpstreamConfig]],
        apply: Callable[[str, tuple[str, ...]], None],
    ) -> None:
        self._api = api
        self._groups = groups
        self._apply = apply
        self._client: httpx.AsyncClient | None = None
        self._watchers: dict[str, tuple[tuple[str, str], asyncio.Task[None]]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="tantra-endpointslices")

    async def close(self) -> None:
        await cancelled(self._task)
        self._task = None
        for _, task in self._watchers.values():
            await cancelled(task)
        self._watchers = {}
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def reconcile(self) -> None:
        """Start a watcher for each new group, stop those of groups gone or changed."""
        wanted = {name: self._target(config) for name, config in self._groups().items()}
        for name, (target, task) in list(self._watchers.items()):
            if wanted.get(name) != target:
                del self._watchers[name]
                await cancelled(task)
        for name, target in wanted.items():
            if name not in self._watchers:
                task = asyncio.get_running_loop().create_task(self._watcher(name, target).run())
                self._watchers[name] = (target, task)

    def _target(self, config: UpstreamConfig) -> tuple[str, str]:
        """(namespace, service) of an upstream: given, or the Service host `svc.ns.svc...` names."""
        assert config.discovery is not None
        labels = (httpx.URL(str(config.url)).host or "").split(".")
        service = config.discovery.service or labels[0]
        namespace = config.discovery.namespace or (
            labels[1] if len(labels) > 1 else self._api.own_namespace()
        )
        return namespace, service

    def _watcher(self, group: str, target: tuple[str, str]) -> SliceWatcher:
        if self._client is None:
            # No read timeout: a watch is quiet for minutes between events (bookmarks come ~each minute).
            timeout = httpx.Timeout(10.0, read=None)
            self._client = httpx.AsyncClient(verify=self._api.verify(), timeout=timeout, trust_env=False)
        return SliceWatcher(self._client, self._api, target, lambda found: self._apply(group, found))

    async def _loop(self) -> None:
        while True:
            try:
                await self.reconcile()
            except Exception:  # never end the loop: members would freeze as they are
                _log.exception("EndpointSlice discovery round failed")
            await asyncio.sleep(_TICK_S)
