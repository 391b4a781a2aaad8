"""One try at an answer: the chain entry it was made for, and an open stream that has sent its
first event."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio
import httpx

from gateway.upstreams.interface import UpstreamAnswer
from gateway.upstreams.pool import Member
from gateway.upstreams.timeouts import Timeouts


@dataclass(frozen=True)
class Target:
    """One entry of a model's chain: a model name, the name its upstreams know, and its clocks."""

    model: str
    served: str
    members: list[Member]
    timeouts: Timeouts


@dataclass(eq=False)
class Attempt:
    """An upstream's stream that has sent its first event; the caller must `close` it."""

    member: Member
    target: Target
    response: UpstreamAnswer
    chunks: AsyncIterator[bytes]
    first: bytes
    closed: bool = field(default=False)

    async def close(self, *, failed: str | None = None) -> None:
        """`failed`: why the stream broke, when it counts against the upstream."""
        if self.closed:
            return
        self.closed = True
        try:
            with anyio.CancelScope(shield=True), contextlib.suppress(httpx.HTTPError):
                await self.response.aclose()  # for an unfinished stream: vLLM aborts the request
        finally:
            if failed is not None:
                self.member.breaker.failure(failed)
            self.member.give_back()
