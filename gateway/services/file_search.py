"""The Responses API's `file_search` tool (docs/memory.md, "Vector stores and file search").

The gateway runs the tool itself, before the engine is called, as OpenAI's hosted tool runs: the
request's latest user text is the query (OpenAI's model writes its own queries; a served model here
may not call tools, so the user's words are searched as written), the tool's vector stores are
searched (`VectorCore.search`, the embedding as the caller's key), and the results are put in the
model's context as a text part ahead of that user message (any chat template takes it, where a second
system message may not be). The engine never sees the tool.

The answer gets OpenAI's shapes back: a `file_search_call` output item first (its `results` only
with `include: ["file_search_call.results"]`), and a `file_citation` annotation (file_id, filename,
index) on the message's text for each `[n]` marker the model wrote (the context asks for them), and
for each file it did not mark, at the end of the text (citations.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.admission import Ticket
from gateway.errors import InvalidRequest
from gateway.protocol.common import InvalidParam
from gateway.protocol.validation import ModelT, parse_object
from gateway.protocol.vector_stores import FileSearchTool
from gateway.services.citations import INSTRUCTION, file_citation, numbered_context, with_tool_call
from gateway.services.responses_items import new_id
from gateway.services.vector_core import Acting, Result
from gateway.services.vector_stores import VectorStoresService
from gateway.store.owned import Owner

INCLUDE_RESULTS = "file_search_call.results"
# Four characters to a token, as the Responses API's reservation estimates; the results placed take
# at most half the model's context (the rest is the conversation's and the answer's).
_CHARS_PER_TOKEN = 4
_DEFAULT_CONTEXT_TOKENS = 8192
_HEADER = (
    "Excerpts from the user's files found by file search, most relevant first. Use them to answer, "
    "and say so when they do not hold the answer. " + INSTRUCTION
)


@dataclass(frozen=True)
class Searched:
    """One request's file search: what the answer shows of it."""

    call_id: str
    queries: list[str]
    results: list[Result]
    include_results: bool

    @property
    def context(self) -> str:
        return numbered_context(
            _HEADER, (f"{r.filename} (file {r.file_id}):\n{r.text}" for r in self.results)
        )

    @property
    def sources(self) -> dict[str, list[str]]:
        """The texts the model was given, by the key of the citation naming them (citation_spans.py)."""
        found: dict[str, list[str]] = {}
        for r in self.results:
            found.setdefault("file:" + r.file_id, []).append(r.text)
        return found

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        """The engine's response with the `file_search_call` item and the citations (a copy)."""
        call: dict[str, Any] = {
            "id": self.call_id,
            "type": "file_search_call",
            "status": "completed",
            "queries": self.queries,
            "results": None,
        }
        if self.include_results:
            call["results"] = [
                {
                    "file_id": r.file_id,
                    "filename": r.filename,
                    "score": r.score,
                    "text": r.text,
                    "attributes": r.attributes,
                }
                for r in self.results
            ]
        return with_tool_call(body, call, [file_citation(r.file_id, r.filename) for r in self.results])


class FileSearch:
    def __init__(self, stores: VectorStoresService) -> None:
        self._stores = stores

    async def prepare(
        self,
        ticket: Ticket,
        payload: dict[str, Any],
        items: list[dict[str, Any]],
        engine_body: dict[str, Any],
        max_model_len: int | None = None,
    ) -> Searched | None:
        """Search for a request with a `file_search` tool: the engine body without the tool and with the
        results in its context (the best ones that fit half of `max_model_len`). None when the
        request has no such tool."""
        found = first_tool(payload, ("file_search",), FileSearchTool)
        if found is None:
            return None
        n, tool = found
        principal = ticket.principal
        owner = Owner(principal.tenant_id, principal.key_id)
        for store_id in tool.vector_store_ids:
            await self._stores.usable(owner, store_id, param=f"tools[{n}].vector_store_ids")
        query = latest_user_text(items)
        results: list[Result] = []
        if query:
            threshold = tool.ranking_options.score_threshold if tool.ranking_options else None
            results = await self._stores.core.search(
                Acting(owner.key_id, ticket.tab.request_id),
                owner,
                tool.vector_store_ids,
                [query],
                tool.max_num_results,
                filters=tool.filters,
                threshold=threshold,
            )
        room = (max_model_len // 2 if max_model_len else _DEFAULT_CONTEXT_TOKENS) * _CHARS_PER_TOKEN
        results = _fitting(results, room)
        include = payload.get("include")
        searched = Searched(
            new_id("fs"),
            [query] if query else [],
            results,
            include_results=isinstance(include, list) and INCLUDE_RESULTS in include,
        )
        _rewrite(engine_body, searched)
        return searched


def _fitting(results: list[Result], chars: int) -> list[Result]:
    """The best results whose texts fit in `chars`."""
    kept: list[Result] = []
    for result in results:
        chars -= len(result.text) + len(result.filename) + 32
        if chars < 0:
            break
        kept.append(result)
    return kept


def _rewrite(engine_body: dict[str, Any], searched: Searched) -> None:
    strip_tool(engine_body, ("file_search",), INCLUDE_RESULTS)
    if searched.context:
        put_context(engine_body, searched.context)


def first_tool(
    payload: dict[str, Any], types: tuple[str, ...], model: type[ModelT]
) -> tuple[int, ModelT] | None:
    """The request's first tool of one of `types` and its index, validated (an error names
    `tools[n]`); None when it has none."""
    tools = payload.get("tools")
    for n, raw in enumerate(tools if isinstance(tools, list) else []):
        if isinstance(raw, dict) and raw.get("type") in types:
            try:
                return n, parse_object(model, raw, "A tool must be an object.")
            except InvalidParam as exc:
                raise InvalidRequest(exc.message, param=f"tools[{n}].{exc.param}", code=exc.code) from None
    return None


def strip_tool(engine_body: dict[str, Any], types: tuple[str, ...], include: str) -> None:
    """The engine body without the gateway's tool (and its `include` option)."""
    rest = [t for t in engine_body.get("tools") or [] if not (isinstance(t, dict) and t.get("type") in types)]
    if rest:
        engine_body["tools"] = rest
    else:
        engine_body.pop("tools", None)
        engine_body.pop("tool_choice", None)
    kept = [i for i in engine_body.get("include") or [] if i != include]
    if kept:
        engine_body["include"] = kept
    else:
        engine_body.pop("include", None)


def put_context(engine_body: dict[str, Any], context: str) -> None:
    """`context` as a text part ahead of the latest user message (any chat template takes it)."""
    messages = engine_body.get("input")
    for item in reversed(messages if isinstance(messages, list) else []):
        if item.get("type", "message") == "message" and item.get("role") == "user":
            content = item.get("content")
            parts = (
                [{"type": "input_text", "text": content}] if isinstance(content, str) else list(content or [])
            )
            item["content"] = [{"type": "input_text", "text": context}, *parts]
            return


def latest_user_text(items: list[dict[str, Any]]) -> str:
    for item in reversed(items):
        if item.get("type", "message") == "message" and item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content.strip()
            texts = [
                p.get("text", "")
                for p in content or []
                if isinstance(p, dict) and p.get("type") == "input_text"
            ]
            return " ".join(t.strip() for t in texts if isinstance(t, str) and t.strip())
    return ""
