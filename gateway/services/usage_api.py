"""The tenants' own usage and costs (issue 21, point 7): OpenAI's `GET /v1/organization/usage/{kind}`
and `GET /v1/organization/costs`, read from the usage ledger.

A tenant's API key sees its own tenant only (its `project_ids` filter cannot widen that); the admin
key sees every tenant and may filter by `project_ids`. A key's request is admitted like any other
(authenticated, limited: one request, no tokens; settled in the ledger, traced); the admin key's is
not metered, as the admin API's are not.

Buckets run from `start_time` (as given, not rounded) in steps of `bucket_width`, every bucket of
the page listed even when empty, as OpenAI lists them; `next_page` is the next bucket's start.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.admission import Admission, Outcome, validate
from gateway.auth import AdminGuard
from gateway.errors import APIError, InvalidRequest
from gateway.limits import Estimate
from gateway.protocol.usage import COSTS_LIMITS, LIMITS, MAX_TIME, WIDTH_S, UsageQuery
from gateway.store.usage_buckets import BucketQuery, UsageBuckets


@dataclass(frozen=True)
class Kind:
    """One usage endpoint: the ledger endpoints it counts, its result object, and its group-bys."""

    endpoints: tuple[str, ...] | None
    result: str
    groups: tuple[str, ...] = ("project_id", "api_key_id", "model")
    batch: bool = False


_COMPLETIONS = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/responses",
    "POST /v1/responses (background)",
    "/v1/messages",
)
KINDS: dict[str, Kind] = {
    "completions": Kind(
        _COMPLETIONS,
        "organization.usage.completions.result",
        ("project_id", "api_key_id", "model", "batch"),
        True,
    ),
    "embeddings": Kind(("/v1/embeddings",), "organization.usage.embeddings.result"),
    "moderations": Kind(("/v1/moderations",), "organization.usage.moderations.result"),
    "audio_speeches": Kind(("/v1/audio/speech",), "organization.usage.audio_speeches.result"),
    "audio_transcriptions": Kind(
        ("/v1/audio/transcriptions", "/v1/audio/translations"),
        "organization.usage.audio_transcriptions.result",
    ),
    "costs": Kind(None, "organization.costs.result", ("project_id", "line_item")),
}
_NOTHING = Estimate(0, 0, 0)
_NO_TOKENS = {"prompt_tokens": 0, "completion_tokens": 0}
_LISTS = ("group_by", "project_ids", "api_key_ids", "models")
_FILTERS = {"project_ids": "project_id", "api_key_ids": "api_key_id", "models": "model"}


class UsageAnalytics:
    def __init__(
        self,
        admission: Admission,
        guard: AdminGuard,
        buckets: UsageBuckets,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._admission = admission
        self._guard = guard
        self._buckets = buckets
        self._clock = clock

    async def handle(self, request: Request, kind: str) -> Response:
        if self._is_admin(request):
            # The admin key: every tenant, not metered (as the admin API).
            return _json(await self.page(KINDS[kind], _params(request), tenant_id=None))
        path = "GET /v1/organization/costs" if kind == "costs" else f"GET /v1/organization/usage/{kind}"
        async with self._admission.enter(request, path) as ticket:
            await ticket.reserve(_NOTHING)
            body = await self.page(KINDS[kind], _params(request), tenant_id=ticket.principal.tenant_id)
            ticket.settle(Outcome.COMPLETED, usage=_NO_TOKENS)
            return Response(orjson.dumps(body), media_type="application/json", headers=ticket.limit_headers)

    def _is_admin(self, request: Request) -> bool:
        if not self._guard.enabled:
            return False
        try:
            self._guard.check(request.headers)
        except APIError:
            return False
        return True

    async def page(self, kind: Kind, raw: dict[str, Any], *, tenant_id: str | None) -> dict[str, Any]:
        """One page of buckets for `tenant_id` (None: all tenants)."""
        query = validate(UsageQuery, raw)
        width = _width(kind, query)
        start = _page_start(query.page) if query.page is not None else query.start_time
        end = query.end_time if query.end_time is not None else int(self._clock())
        default, most = COSTS_LIMITS if kind.endpoints is None else LIMITS[query.bucket_width]
        limit = query.limit or default
        if limit > most:
            raise InvalidRequest(f"limit must be at most {most} for this bucket_width.", param="limit")
        groups = _groups(kind, query.group_by or [])
        stop = min(end, start + limit * width)
        rows = await self._buckets.rows(
            BucketQuery(
                endpoints=kind.endpoints,
                start=start,
                end=max(stop, start),
                width_s=width,
                group_by=groups,
                tenant_id=tenant_id,
                filters={_FILTERS[key]: values for key, values in _filters(query).items()},
                batch=query.batch if kind.batch else None,
            )
        )
        by_bucket: dict[int, list[dict[str, Any]]] = {}
        for row in rows:
            by_bucket.setdefault(int(row["bucket"]), []).append(_result(kind, row, groups))
        data = [
            {
                "object": "bucket",
                "start_time": start + index * width,
                "end_time": min(start + (index + 1) * width, end),
                "results": by_bucket.get(index, []),
            }
            for index in range(max(0, -(-(stop - start) // width)))
        ]
        more = stop < end
        return {
            "object": "page",
            "data": data,
            "has_more": more,
            "next_page": _page_token(stop) if more else None,
        }


def _width(kind: Kind, query: UsageQuery) -> int:
    if kind.endpoints is None and query.bucket_width != "1d":
        raise InvalidRequest("The costs endpoint only supports bucket_width '1d'.", param="bucket_width")
    if query.end_time is not None and query.end_time <= query.start_time:
        raise InvalidRequest("end_time must be after start_time.", param="end_time")
    return WIDTH_S[query.bucket_width]


def _groups(kind: Kind, asked: list[str]) -> list[str]:
    for name in asked:
        if name not in kind.groups:
            allowed = ", ".join(kind.groups)
            raise InvalidRequest(f"Invalid group_by {name!r}: expected one of {allowed}.", param="group_by")
    return list(dict.fromkeys(asked))


def _filters(query: UsageQuery) -> dict[str, list[str]]:
    return {name: values for name in _FILTERS if (values := getattr(query, name))}


def _result(kind: Kind, row: dict[str, Any], groups: list[str]) -> dict[str, Any]:
    """One result of a bucket in OpenAI's shape; fields not grouped by are null."""
    group = {name: (row[name] if name in groups else None) for name in kind.groups}
    if "batch" in group and group["batch"] is not None:
        group["batch"] = bool(group["batch"])
    requests, tokens_in, tokens_out = (
        int(row["requests"]),
        int(row["input_tokens"]),
        int(row["output_tokens"]),
    )
    if kind.endpoints is None:
        amount = {"value": int(row["cost_micros"]) / 1_000_000, "currency": "usd"}
        return {"object": kind.result, "amount": amount, **group}
    counts: dict[str, Any] = {"num_model_requests": requests}
    if kind.result.endswith("completions.result"):
        counts.update(
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            input_cached_tokens=0,
            input_audio_tokens=0,
            output_audio_tokens=0,
        )
    elif kind.result.endswith("transcriptions.result"):
        counts["seconds"] = round(float(row["audio_seconds"]), 3)
    elif kind.result.endswith("speeches.result"):
        # The ledger keeps the input's tokens (a character count / 4), not its characters.
        counts.update(characters=None, input_tokens=tokens_in)
    else:
        counts["input_tokens"] = tokens_in
    return {"object": kind.result, **counts, **group}


def _params(request: Request) -> dict[str, Any]:
    """The query string: scalars as given, lists from repeated keys, `key[]` and commas."""
    raw: dict[str, Any] = {}
    for key, value in request.query_params.multi_items():
        name = key.removesuffix("[]")
        if name in _LISTS:
            raw.setdefault(name, []).extend(part for part in value.split(",") if part)
        else:
            raw[name] = value
    return raw


def _page_token(start: int) -> str:
    return "page_" + base64.urlsafe_b64encode(str(start).encode()).decode().rstrip("=")


def _page_start(token: str) -> int:
    try:
        encoded = token.removeprefix("page_")
        start = int(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode())
    except ValueError:
        start = -1
    if not 0 <= start <= MAX_TIME:
        raise InvalidRequest("Invalid page cursor.", param="page")
    return start


def _json(body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")
