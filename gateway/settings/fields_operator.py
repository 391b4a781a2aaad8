"""The operator's settings: where the operator endpoints listen, how many gateway processes serve
the ports, who may claim to be a proxy, and how long the engines' federated metrics are reused
(docs/configuration.md, "Operator port"; docs/performance.md, "Worker processes").

A mixin of `Settings` (gateway/settings/schema.py), read from TANTRA_* exactly as the schema's own.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Literal

from pydantic import BaseModel, Field, field_validator

# Shorter admin keys are refused at start: a guessable key opens every tenant's keys and usage.
ADMIN_KEY_MIN_CHARS = 24


class OperatorFields(BaseModel):
    """The operator surface: metrics, upstream health and the admin API, kept off the public port."""

    operator_port: int = Field(
        9090,
        ge=0,
        le=65535,
        description="Port of the operator listener (/metrics, /metrics/engines, /health/upstreams, "
        "detailed /readyz, /debug/profile); the API port answers those with 404. 0: no second listener, "
        "everything on the API port (only where that port is private).",
    )
    admin_listener: Literal["api", "operator", "both"] = Field(
        "both", description="Which listener serves /admin: the API port, the operator port, or both."
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or CIDR ranges of the reverse proxies whose X-Forwarded-For (client "
        "address) and X-Forwarded-User (audit actor) are believed; empty: the peer's address is used.",
    )
    workers: int | Literal["auto"] = Field(
        1,
        description="Gateway processes serving the ports on this host (gateway/workers.py): 1 serves "
        "in this process; 0 or `auto`: one per core this process may run on. More than one needs a "
        "Redis server (`redis_url`), so that every key's limits hold across them.",
    )
    engine_metrics_cache_s: float = Field(
        5.0, ge=0, description="How long one fan-out scrape of the engines serves /metrics/engines."
    )

    @field_validator("workers")
    @classmethod
    def _workers(cls, given: int | str) -> int | str:
        if isinstance(given, int) and given < 0:
            raise ValueError("must be 0 or more (0 or `auto`: one per available core)")
        return given

    def worker_count(self) -> int:
        """`workers` resolved: 0 and `auto` count the cores this process may run on (its CPU
        affinity: a container's or taskset's share, not the host's)."""
        if self.workers in (0, "auto"):
            return max(1, len(os.sched_getaffinity(0)))
        return int(self.workers)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, given: list[str]) -> list[str]:
        for entry in given:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR range") from None
        return given
