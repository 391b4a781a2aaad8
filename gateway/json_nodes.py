"""How much JSON a request body holds, counted in a worker process before the event loop parses it
(gateway/admission/screen.py).

A module of its own that imports only orjson: a screening worker loads nothing else of the gateway.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class Verdict:
    """All that comes back from a worker, never the parsed object: the nodes counted (stopped at
    the first past the limit) or orjson's message for a body that is not JSON."""

    nodes: int = 0
    invalid: str | None = None


def screen(body: bytes, limit: int) -> Verdict:
    """`body` parsed and its nodes (every value: objects, arrays and scalars) counted up to
    `limit` + 1."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return Verdict(invalid=str(exc))
    return Verdict(nodes=count_nodes(value, limit))


def count_nodes(value: Any, limit: int) -> int:
    """The values in `value`, itself included, counted a container at a time: the count stops as
    soon as it passes `limit`, before the stack holds more than `limit` items."""
    count = 1
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        count += len(item)
        if count > limit:
            return count
        stack.extend(item)
    return count


def start_worker(nice: int) -> None:
    """A screening worker's start: below the gateway's priority, deaf to the terminal's Ctrl-C (the
    gateway stops its workers), and without the cyclic collector, which would otherwise walk
    millions of fresh containers again and again during one parse (objects here are freed by
    reference counting as soon as the count is done)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(nice)
    gc.disable()
