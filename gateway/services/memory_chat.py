"""Memory in chat (docs/memory.md): a request naming an end user, whose key or tenant has memory on,
gets the end user's most relevant memories in a system message within a token budget; the answer
says which (`x-tantra-memory: id:score,...`, `usage.tantra_memory` in a JSON answer, the
`tantra.memory` attribute of the request's span); and the request's messages are queued as a job
(`memory-extract`) that extracts and adds new memories off the request path.

The end user is `user` (OpenAI's), else `safety_identifier`, else `metadata.user_id`. The query is
the last user message's text. The placed memories' tokens are reserved on top of the request's.
What the search returned and the block placed are kept per request id (`memory_recalls`) for the
admin panel's memory page. Neither that record nor the extraction job's submission comes before the
answer's first byte: both are started once the answer's body is sent (`recall(later=...)`).

The Responses API places the same block through the same recall (`ChatMemory.place`) and queues its
turns through the same job (`ChatMemory.queue`); only where the block goes is its own
(memory_responses.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.responses import Response

from gateway.admission import Ticket
from gateway.errors import APIError
from gateway.jobs import Job, JobRunner
from gateway.services.memory_core import Caller, Found, MemoryCore, text_of
from gateway.store import utcnow
from gateway.store.memories import Scope
from gateway.store.memory_recalls import Recalled, RecallStore
from gateway.store.owned import Owner

log = logging.getLogger("tantra.memory")
KIND = "memory-extract"
HEADER = "x-tantra-memory"
# A rough count (4 characters a token) is enough for a budget of placed memories.
_CHARS_PER_TOKEN = 4
# The block's first line: what the lines under it are, in as few tokens as say it (7 with the tiny
# checkpoint's tokenizer, where the earlier "...from earlier conversations (use them when relevant):"
# took 15; docs/memory.md, "The placed block, counted").
_INTRO = "Remembered facts about the user:"


@dataclass(frozen=True)
class ChatMemoryOptions:
    default_on: bool = False
    top_k: int = 5
    token_budget: int = 256
    min_score: float = 0.2
    extract: bool = True  # queue the extraction of new memories after each answer


@dataclass(frozen=True)
class Placement:
    """What a request is given: the end user, the memories' ids and scores, the block of their
    texts and its estimated tokens."""

    user: str
    used: list[tuple[str, float]]
    block: str
    tokens: int

    @property
    def header(self) -> str:
        return recall_header(self.used)

    def usage(self) -> list[dict[str, Any]]:
        return [{"id": memory_id, "score": round(score, 4)} for memory_id, score in self.used]


@dataclass(frozen=True)
class Recall(Placement):
    """A chat request's placement and the body sent instead of the client's."""

    body: bytes
    payload: dict[str, Any]


Later = Callable[[Callable[[], Coroutine[Any, Any, None]]], None]


def _fitting(texts: list[str], token_budget: int) -> int:
    """How many of the memories' texts, best first, fit the budget as lines under the intro."""
    budget = token_budget * _CHARS_PER_TOKEN - len(_INTRO)
    count = 0
    for text in texts:
        line = f"- {text}"
        if len(line) + 1 > budget:
            break
        budget -= len(line) + 1
        count += 1
    return count


def placed_block(texts: list[str], token_budget: int) -> str:
    """The system message placed for these memories' texts, best first: the intro and one line each,
    as many as fit the budget ("" when none does). bench/memory_block.py sends the same."""
    kept = texts[: _fitting(texts, token_budget)]
    return "\n".join([_INTRO, *(f"- {text}" for text in kept)]) if kept else ""


def with_block(messages: list[Any], block: str) -> list[Any]:
    """The messages with the placed block: appended to the request's own system message when it
    opens with one (one system message, the client's instructions first and unchanged, as every
    chat template takes them), else as a system message of its own before them."""
    first = messages[0] if messages else None
    if isinstance(first, dict) and first.get("role") == "system":
        content = first.get("content")
        if isinstance(content, str):
            joined = f"{content}\n\n{block}" if content.strip() else block
            return [{**first, "content": joined}, *messages[1:]]
        if isinstance(content, list) and all(_text_part(part) for part in content):
            # vLLM joins a message's text parts with a newline.
            return [{**first, "content": [*content, {"type": "text", "text": block}]}, *messages[1:]]
    return [{"role": "system", "content": block}, *messages]


def _text_part(part: Any) -> bool:
    return isinstance(part, dict) and part.get("type") == "text"


def recall_header(used: list[tuple[str, float]]) -> str:
    return ",".join(f"{memory_id}:{score:.4f}" for memory_id, score in used)


def end_user_of(payload: dict[str, Any]) -> str | None:
    for value in (payload.get("user"), payload.get("safety_identifier")):
        if isinstance(value, str) and value.strip():
            return value.strip()[:256]
    metadata = payload.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str) and metadata["user_id"]:
        return str(metadata["user_id"])[:256]
    return None


class ChatMemory:
    def __init__(
        self,
        core: MemoryCore,
        runner: JobRunner | None,
        options: ChatMemoryOptions,
        recalls: RecallStore | None = None,
    ) -> None:
        self.core = core
        self.runner = runner
        self.options = options
        # Each request's recall, kept for the panel's memory page (None: not kept).
        self.recalls = recalls
        # The recall records being written (kept so the tasks are not collected mid-write).
        self._pending: set[asyncio.Task[None]] = set()
        if runner is not None:
            runner.register(KIND, self._extract, priority=-5)

    def _later(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def start(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Start `work` (a recall's record) as a task `settle` waits for, and return at once: the
        answer's work after its body (`after_body`) hands it here."""
        self._later(work())

    async def settle(self) -> None:
        """Wait until the recall records under way are written (tests; the gateway's shutdown)."""
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    def end_user(self, ticket: Ticket, payload: dict[str, Any]) -> str | None:
        """The end user whose memories this request may read and add to (None: no end user is
        named, or memory is off for the caller)."""
        user = end_user_of(payload)
        if user is None or not ticket.principal.memory_on(self.options.default_on):
            return None
        return user

    async def recall(
        self, ticket: Ticket, payload: dict[str, Any], later: Later | None = None
    ) -> Recall | None:
        """The memories to place in this chat request, and the body with them (None: memory is off
        for the caller, no end user is named, or nothing relevant is remembered). The recall's
        record for the panel is handed to `later` (the caller starts it once the answer is sent),
        else started at once beside the answer."""
        user = self.end_user(ticket, payload)
        messages = payload.get("messages")
        if user is None or not isinstance(messages, list):
            return None
        query = next(
            (text_of(m) for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), ""
        )
        placement = await self.place(ticket, user, query, later)
        if placement is None:
            return None
        placed = {**payload, "messages": with_block(messages, placement.block)}
        return Recall(
            placement.user, placement.used, placement.block, placement.tokens, orjson.dumps(placed), placed
        )

    async def place(
        self, ticket: Ticket, user: str, query: str, later: Later | None = None
    ) -> Placement | None:
        """The end user's memories most relevant to `query` that fit the token budget, as the block
        to place (None: nothing relevant, or the search failed). Chat and the Responses API both
        recall through here; the record for the panel goes to `later` as `recall` says."""
        if not query:
            return None
        principal = ticket.principal
        caller = Caller(Owner(principal.tenant_id, principal.key_id), ticket.tab.request_id, principal)
        try:
            with ticket.stage("memory"):
                found = await self.core.search(
                    caller, Scope(user_id=user), query, self.options.top_k, threshold=self.options.min_score
                )
                found += await self._graph_found(caller, user, query, found)
        except APIError as exc:
            # The answer goes on without memories (the embedding model down or over its limits).
            log.warning("memory recall failed (%s): %s", exc.status, exc.message)
            return None
        texts = [hit.memory.memory for hit in found]
        used = [(hit.memory.id, hit.score) for hit in found[: _fitting(texts, self.options.token_budget)]]
        content = placed_block(texts, self.options.token_budget)
        tokens = len(content) // _CHARS_PER_TOKEN + 1 if used else 0
        # Never before the answer: the record is for the panel, not the model.
        record = functools.partial(self._record, caller, user, found, used, content, tokens)
        if later is None:
            self._later(record())
        else:
            later(record)
        if not used:
            return None
        if ticket.record is not None:
            ticket.record.span.set_attribute("tantra.memory", recall_header(used))
        return Placement(user, used, content, tokens)

    async def _graph_found(self, caller: Caller, user: str, query: str, found: list[Found]) -> list[Found]:
        """The memories only the knowledge graph reaches from the query's entities, nearest first,
        in the places the vector results left of `top_k` (when the graph is on and merges into
        search by default). Their score is the graph's (1 / (1 + hops)), not a cosine: `min_score`
        does not apply to them."""
        graph = self.core.graph
        room = self.options.top_k - len(found)
        if graph is None or not graph.options.search_default or room <= 0:
            return []
        seen = {f.memory.id for f in found}
        related = await self.core.related(caller, Scope(user_id=user), query)
        return [Found(r.memory, r.score) for r in related if r.memory.id not in seen][:room]

    async def _record(
        self,
        caller: Caller,
        user: str,
        found: list[Found],
        used: list[tuple[str, float]],
        content: str,
        tokens: int,
    ) -> None:
        """Keep what the search returned and what was placed, for the panel's memory page (the
        block as the tenant's PII policy lets it be stored). A failure costs the record only."""
        if self.recalls is None:
            return
        placed = {memory_id for memory_id, _ in used}
        rows = [
            {"id": f.memory.id, "score": round(f.score, 4), "placed": f.memory.id in placed} for f in found
        ]
        try:
            redactor = self.core.redactor
            if redactor is not None and content:
                content = await redactor.stored(caller.owner.tenant_id, content)
            recalled = Recalled(caller.request_id, user, rows, content, tokens)
            await self.recalls.record(
                caller.owner, recalled, record_id=f"mrec_{secrets.token_hex(12)}", at=utcnow()
            )
        except Exception as exc:
            log.warning("memory recall not recorded: %s", exc)

    async def remember(self, ticket: Ticket, payload: dict[str, Any]) -> None:
        """Queue the extraction of new memories from the chat request's messages (its own system
        messages and the placed memories are not read)."""
        user = self.end_user(ticket, payload)
        messages = payload.get("messages")
        if user is None or not isinstance(messages, list):
            return
        principal = ticket.principal
        await self.queue(principal.tenant_id, principal.key_id, user, messages, ticket.tab.request_id)

    async def queue(
        self,
        tenant_id: str | None,
        key_id: str | None,
        user: str,
        messages: list[Any],
        request_id: str,
    ) -> None:
        """Queue a `memory-extract` job over the user and assistant messages' text (chat messages or
        Responses message items alike); nothing when extraction is off or no message has text. The
        caller has checked that memory is on for the key."""
        if self.runner is None or not self.options.extract:
            return
        kept = [
            {"role": m.get("role"), "content": text_of(m)}
            for m in messages
            if isinstance(m, dict) and m.get("role") in ("user", "assistant") and text_of(m)
        ]
        if not kept:
            return
        try:
            await self.runner.submit(
                KIND,
                tenant_id,
                {"key_id": key_id, "user": user, "messages": kept, "request_id": request_id},
                created_by=key_id,
                user=user,
            )
        except Exception as exc:  # the answer is sent all the same; only this request's memories are lost
            log.warning("memory extraction not queued: %s", exc)

    async def _extract(self, job: Job) -> dict[str, Any]:
        payload = job.payload
        owner = Owner(job.record.tenant_id, payload.get("key_id"))
        caller = Caller(owner, f"{payload.get('request_id') or job.record.id}-extract")
        facts = await self.core.extract(caller, payload["messages"])
        done = await self.core.add(
            caller,
            Scope(user_id=payload["user"]),
            [(f, {}) for f in facts],
            dedupe=True,
            source=payload["messages"],
        )
        return {"events": [{"id": m.id, "event": event} for event, m in done]}


def annotate(response: Response, recall: Recall, *, json_answer: bool) -> Response:
    """The answer with the memories used: the header always, `usage.tantra_memory` in JSON."""
    response.headers[HEADER] = recall.header
    if json_answer:
        try:
            answer = orjson.loads(response.body)
        except orjson.JSONDecodeError:
            return response
        if isinstance(answer, dict):
            usage = answer.get("usage")
            usage = usage if isinstance(usage, dict) else {}
            answer["usage"] = {**usage, "tantra_memory": recall.usage()}
            headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
            return Response(
                orjson.dumps(answer),
                status_code=response.status_code,
                headers=headers,
                media_type="application/json",
            )
    return response
