"""Requests a feature makes to the gateway's own endpoints, in process (`Loopback`) and acting as a
caller's key, so that they are limited, billed and traced as that key's (memory's and the vector
stores' embeddings, tokenization and extraction)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson
from starlette.types import ASGIApp

from gateway.errors import APIError
from gateway.memory.index import Vector, normalized
from gateway.realtime.loopback import Loopback, read_all


async def post_json(
    app: ASGIApp, path: str, body: dict[str, Any], marks: Mapping[str, Any], what: str
) -> dict[str, Any]:
    """The endpoint's JSON answer; an error answer raises `APIError` with its status, message and
    code ("The <what>'s <path> request failed: ...")."""
    loopback = Loopback(app, {"type": "http", "scheme": "http"}, {})
    async with loopback.post(path, orjson.dumps(body), asyncio.Event(), marks=dict(marks)) as response:
        raw = await read_all(response.chunks)
        status = response.status
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        answer = {}
    if status >= 400:
        error = answer.get("error") if isinstance(answer, dict) else None
        message = error.get("message") if isinstance(error, dict) else "no answer"
        code = error.get("code") if isinstance(error, dict) else None
        raise APIError(f"The {what}'s {path} request failed: {message}", status=status, code=code)
    return answer if isinstance(answer, dict) else {}


def embedded(answer: dict[str, Any], texts: Sequence[str]) -> list[Vector]:
    """An embeddings answer's vectors in input order, normalised; one per text or a 502."""
    rows = sorted(answer.get("data") or [], key=lambda row: row.get("index", 0))
    vectors = [normalized(np.asarray(row["embedding"], dtype=np.float32)) for row in rows]
    if len(vectors) != len(texts):
        raise APIError("The embedding model answered with the wrong number of vectors.", status=502)
    return vectors
