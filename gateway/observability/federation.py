"""The engines' own metrics (vllm:*), federated into the gateway's /metrics/engines.

Each upstream's exposition is fetched (by the upstream itself) when scraped, never on the request
path, and every sample gains an `upstream` label, so one scrape of any gateway shows the whole
fleet's engines and series from two engines stay apart. Upstreams without metrics of their own
(providers) are left out rather than shown down.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.upstreams.interface import Upstream


class Exposition:
    """Families from several upstreams, merged so that each family's samples stay together (as the
    text format requires), every sample labelled with the upstream it came from."""

    def __init__(self) -> None:
        self._meta: dict[str, list[str]] = {}
        self._samples: dict[str, list[str]] = {}

    def add(self, text: str, upstream: str) -> None:
        label = f'upstream="{_escape(upstream)}"'
        family = ""
        for line in text.splitlines():
            if not line:
                continue
            if line.startswith("#"):
                parts = line.split(" ", 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    family = parts[2]
                    meta = self._meta.setdefault(family, [])
                    self._samples.setdefault(family, [])
                    if not any(m.split(" ", 3)[1] == parts[1] for m in meta):
                        meta.append(line)
                continue
            name_end = min(i for i in (line.find("{"), line.find(" "), len(line)) if i >= 0)
            name = line[:name_end]
            key = family if family and name.startswith(family) else name
            self._samples.setdefault(key, []).append(_with_label(line, name_end, label))

    def lines(self) -> list[str]:
        out: list[str] = []
        for family, samples in self._samples.items():
            out.extend(self._meta.get(family, ()))
            out.extend(samples)
        return out


def _with_label(line: str, name_end: int, label: str) -> str:
    if name_end < len(line) and line[name_end] == "{":
        close = line.find("}", name_end)
        inner = line[name_end + 1 : close]
        joined = f"{label},{inner}" if inner.strip() else label
        return f"{line[:name_end]}{{{joined}}}{line[close + 1 :]}"
    return f"{line[:name_end]}{{{label}}}{line[name_end:]}"


async def federate(upstreams: Mapping[str, Upstream], timeout_s: float) -> bytes:
    """Every metrics-serving upstream's metrics in one exposition; one that does not answer is
    marked down with `tantra_engine_scrape_up 0` instead of failing the whole scrape."""
    scraped = {name: upstream for name, upstream in upstreams.items() if upstream.capabilities.serves_metrics}
    names = list(scraped)
    texts = await asyncio.gather(*(scraped[name].scrape_metrics(timeout_s) for name in names))
    exposition = Exposition()
    lines = [
        "# HELP tantra_engine_scrape_up 1 when the upstream's own /metrics answered this scrape.",
        "# TYPE tantra_engine_scrape_up gauge",
    ]
    for name, text in zip(names, texts, strict=True):
        lines.append(f'tantra_engine_scrape_up{{upstream="{_escape(name)}"}} {0 if text is None else 1}')
    for name, text in zip(names, texts, strict=True):
        if text is not None:
            exposition.add(text, name)
    lines.extend(exposition.lines())
    return ("\n".join(lines) + "\n").encode()


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class FederationCache:
    """One fan-out scrape serves every /metrics/engines request for `ttl_s`: each request would
    otherwise scrape every engine, so anyone able to reach the route could multiply the engines'
    load. Concurrent requests wait for the scrape in progress instead of starting their own."""

    def __init__(self, ttl_s: float) -> None:
        self._ttl_s = ttl_s
        self._lock = asyncio.Lock()
        self._body = b""
        self._at = -math.inf

    async def get(self, upstreams: Callable[[], Mapping[str, Upstream]], timeout_s: float) -> bytes:
        async with self._lock:
            if time.monotonic() - self._at >= self._ttl_s:
                self._body = await federate(upstreams(), timeout_s)
                self._at = time.monotonic()
            return self._body
