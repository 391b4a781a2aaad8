"""The Responses API's `web_search` tool (and `web_search_preview`), run by the gateway as
file_search.py runs file search: before the engine is called, the request's latest user text is
searched with a pluggable provider, the pages found are numbered in the model's context (ahead of that
user message, with citations.py's instruction to mark them `[n]`), and the engine never sees the
tool. The answer gets OpenAI's shapes: a `web_search_call` output item first (`action.sources` with
`include: ["web_search_call.action.sources"]`) and `url_citation` annotations on the text.

Providers: a SearXNG-compatible JSON API (TANTRA_WEB_SEARCH_URL, `GET <url>/search?q=...&format=json`;
an operator's URL, so not under the SSRF rules users' URLs are), or, offline and by default, the
tenant's own vector stores (the newest 100, searched as file_search searches; a file's `url`
attribute is its citation's URL, else its content's path on the gateway). A provider that fails
leaves the call `failed` and the model answers without results (OpenAI's call item has that status).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from gateway.admission import Ticket
from gateway.protocol.hosted_tools import WebSearchTool
from gateway.services.citations import INSTRUCTION, numbered_context, url_citation, with_tool_call
from gateway.services.file_search import first_tool, put_context, strip_tool
from gateway.services.responses_items import new_id
from gateway.services.vector_core import Acting
from gateway.services.vector_stores import VectorStoresService
from gateway.store.owned import Owner, PageQuery

TYPES = ("web_search", "web_search_preview", "web_search_2025_08_26", "web_search_preview_2025_03_11")
INCLUDE_SOURCES = "web_search_call.action.sources"
_HEADER = "Web search results for the user's question, most relevant first. " + INSTRUCTION
# Results fed per `search_context_size`, as a share of TANTRA_WEB_SEARCH_MAX_RESULTS; characters of
# one page's text.
_SHARE = {"low": 0.5, "medium": 1.0, "high": 2.0}
_PAGE_CHARS = {"low": 600, "medium": 1500, "high": 4000}


@dataclass(frozen=True)
class Page:
    url: str
    title: str
    text: str


class SearchFailed(Exception):
    """The provider could not answer (the call item is then `failed`)."""


class SearchProvider(Protocol):
    async def search(self, ticket: Ticket, query: str, k: int) -> list[Page]: ...


class SearxngProvider:
    """A SearXNG-compatible JSON API: `results[]` with `url`, `title` and `content`."""

    def __init__(self, base_url: str, client: httpx.AsyncClient, *, timeout_s: float) -> None:
        self._url = base_url.rstrip("/") + "/search"
        self._client = client
        self._timeout_s = timeout_s

    async def search(self, ticket: Ticket, query: str, k: int) -> list[Page]:
        try:
            answer = await self._client.get(
                self._url, params={"q": query, "format": "json"}, timeout=self._timeout_s
            )
            answer.raise_for_status()
            results = answer.json().get("results")
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            raise SearchFailed(type(exc).__name__) from None
        pages = [
            Page(str(r["url"]), str(r.get("title") or r["url"]), str(r.get("content") or ""))
            for r in results or []
            if isinstance(r, dict) and isinstance(r.get("url"), str)
        ]
        return pages[:k]


class VectorStoreProvider:
    """The tenant's own vector stores, the offline default."""

    def __init__(self, stores: VectorStoresService) -> None:
        self._stores = stores

    async def search(self, ticket: Ticket, query: str, k: int) -> list[Page]:
        principal = ticket.principal
        owner = Owner(principal.tenant_id, principal.key_id)
        rows, _ = await self._stores.core.store.page(owner, PageQuery(limit=100, order="desc"))
        if not rows:
            return []
        acting = Acting(owner.key_id, ticket.tab.request_id)
        results = await self._stores.core.search(acting, owner, [r.id for r in rows], [query], k)
        return [
            Page(str(r.attributes.get("url") or f"/v1/files/{r.file_id}/content"), r.filename, r.text)
            for r in results
        ]


@dataclass(frozen=True)
class Browsed:
    """One request's web search: what the answer shows of it."""

    call_id: str
    query: str
    pages: list[Page]
    failed: bool
    include_sources: bool

    @property
    def context(self) -> str:
        return numbered_context(_HEADER, (f"{p.title} ({p.url}):\n{p.text}" for p in self.pages))

    @property
    def sources(self) -> dict[str, list[str]]:
        """The texts the model was given, by the key of the citation naming them (citation_spans.py)."""
        found: dict[str, list[str]] = {}
        for p in self.pages:
            found.setdefault("url:" + p.url, []).append(p.text)
        return found

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        """The engine's response with the `web_search_call` item and the citations (a copy)."""
        action: dict[str, Any] = {"type": "search", "query": self.query}
        if self.include_sources:
            action["sources"] = [{"type": "url", "url": p.url} for p in self.pages]
        call = {
            "id": self.call_id,
            "type": "web_search_call",
            "status": "failed" if self.failed else "completed",
            "action": action,
        }
        return with_tool_call(body, call, [url_citation(p.url, p.title) for p in self.pages])


class WebSearch:
    def __init__(self, provider: SearchProvider, *, max_results: int) -> None:
        self.provider = provider
        self._max_results = max_results

    async def prepare(
        self, ticket: Ticket, payload: dict[str, Any], query: str, engine_body: dict[str, Any]
    ) -> Browsed | None:
        """Search for a request with a web search tool: the engine body without the tool and with the
        pages in its context. None when the request has no such tool."""
        found = first_tool(payload, TYPES, WebSearchTool)
        if found is None:
            return None
        tool = found[1]
        size = tool.search_context_size or "medium"
        k = max(1, min(20, round(self._max_results * _SHARE[size])))
        pages, failed = [], False
        if query:
            try:
                pages = await self.provider.search(ticket, query, k)
            except SearchFailed:
                failed = True
        pages = [Page(p.url, p.title, p.text[: _PAGE_CHARS[size]]) for p in pages]
        include = payload.get("include")
        browsed = Browsed(
            new_id("ws"), query, pages, failed, isinstance(include, list) and INCLUDE_SOURCES in include
        )
        strip_tool(engine_body, TYPES, INCLUDE_SOURCES)
        if browsed.context:
            put_context(engine_body, browsed.context)
        return browsed
