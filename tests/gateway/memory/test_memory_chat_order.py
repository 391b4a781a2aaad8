"""What memory in chat does before an answer's first byte and what after (unit, fakes): the recall's
record is handed to the caller to start once the answer is sent (or written beside it when no caller
takes it) and still lands; the extraction job is queued once the body is sent (`after_body`), for a
relayed stream and a plain response alike. And where the placed block goes in the messages."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from types import SimpleNamespace
from typing import Any, cast

from starlette.responses import Response
from starlette.types import Message, Send

from gateway.admission import Outcome, Ticket
from gateway.http.streaming import RawStream, after_body, send_chunk
from gateway.services.memory_chat import ChatMemory, ChatMemoryOptions, placed_block, with_block
from gateway.services.memory_core import Found, MemoryCore
from gateway.store.memories import Memory, Scope
from gateway.store.memory_recalls import Recalled, RecallStore
from gateway.store.owned import Owner
from gateway.vector_setup import close_memory

T0 = datetime(2026, 12, 6, 9, 0, 0)


def _memory(seq: int, text: str) -> Memory:
    return Memory(seq, f"m{seq}", text, "h", Scope(user_id="pat"), {}, [], T0, T0, b"")


class _Core:
    graph = None
    redactor = None

    async def search(self, *_: Any, **__: Any) -> list[Found]:
        return [Found(_memory(1, "likes green tea"), 0.9), Found(_memory(2, "owns a bicycle"), 0.4)]


class _SlowRecalls:
    """A recall store whose writes finish only when the test lets them."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.written: list[Recalled] = []

    async def record(self, owner: Owner, recall: Recalled, *, record_id: str, at: datetime) -> None:
        await self.release.wait()
        self.written.append(recall)


def _ticket() -> Ticket:
    principal = SimpleNamespace(tenant_id="t1", key_id="k1", memory_on=lambda default: True)
    tab = SimpleNamespace(request_id="req-1")
    stage = lambda name: contextlib.nullcontext()  # noqa: E731 -- tracing off
    return cast(Ticket, SimpleNamespace(principal=principal, tab=tab, record=None, stage=stage))


async def test_the_recall_answers_before_its_record_is_written_and_the_record_lands() -> None:
    recalls = _SlowRecalls()
    chat = ChatMemory(cast(MemoryCore, _Core()), None, ChatMemoryOptions(), cast(RecallStore, recalls))
    payload = {"user": "pat", "messages": [{"role": "user", "content": "what tea do I like"}]}

    recall = await asyncio.wait_for(chat.recall(_ticket(), payload), 10)
    assert recall is not None and [memory_id for memory_id, _ in recall.used] == ["m1", "m2"]
    assert recalls.written == []  # the request went on without waiting for the write

    recalls.release.set()
    await asyncio.wait_for(chat.settle(), 10)
    (written,) = recalls.written
    assert written.request_id == "req-1" and written.end_user == "pat"
    assert [row["id"] for row in written.found] == ["m1", "m2"] and all(r["placed"] for r in written.found)
    assert (
        written.prompt.startswith("Remembered facts about the user:") and "likes green tea" in written.prompt
    )


async def test_a_record_handed_to_later_is_not_started_until_it_is_run() -> None:
    """The gateway's chat path (InferenceService) hands the record to `after_body`: no SQL write of
    the panel's record runs before the answer is sent."""
    recalls = _SlowRecalls()
    recalls.release.set()
    chat = ChatMemory(cast(MemoryCore, _Core()), None, ChatMemoryOptions(), cast(RecallStore, recalls))
    payload = {"user": "pat", "messages": [{"role": "user", "content": "what tea do I like"}]}
    held: list[Callable[[], Coroutine[Any, Any, None]]] = []

    recall = await asyncio.wait_for(chat.recall(_ticket(), payload, held.append), 10)
    assert recall is not None and len(held) == 1
    await asyncio.sleep(0.05)
    assert recalls.written == [] and not chat._pending  # nothing started

    await chat.start(held[0])  # what the answer's after-body work does
    await asyncio.wait_for(chat.settle(), 10)
    (written,) = recalls.written
    assert written.request_id == "req-1" and [row["id"] for row in written.found] == ["m1", "m2"]


def test_the_block_opens_the_messages_as_a_system_message_when_the_request_has_none() -> None:
    messages = [{"role": "user", "content": "hi"}]
    assert with_block(messages, "B") == [{"role": "system", "content": "B"}, *messages]
    assert with_block([], "B") == [{"role": "system", "content": "B"}]
    later_system = [{"role": "user", "content": "hi"}, {"role": "system", "content": "S"}]
    assert with_block(later_system, "B") == [{"role": "system", "content": "B"}, *later_system]


def test_the_block_is_appended_to_the_requests_own_system_message() -> None:
    """One system message, the client's instructions first and unchanged (every chat template takes
    that; a second system message some refuse, and the client's prompt stays a cacheable prefix)."""
    own = {"role": "system", "content": "Be brief.", "name": "ops"}
    user = {"role": "user", "content": "hi"}
    assert with_block([own, user], "B") == [
        {"role": "system", "content": "Be brief.\n\nB", "name": "ops"},
        user,
    ]
    assert own["content"] == "Be brief."  # the request's own message is not changed in place
    assert with_block([{"role": "system", "content": "  "}, user], "B")[0]["content"] == "B"
    parts = {"role": "system", "content": [{"type": "text", "text": "Be brief."}]}
    placed = with_block([parts, user], "B")
    assert placed[0]["content"] == [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "B"}]
    # A content it cannot extend as text: the block goes before it, as its own system message.
    odd = {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
    assert with_block([odd, user], "B") == [{"role": "system", "content": "B"}, odd, user]


def test_the_placed_block_is_a_short_intro_then_the_facts_verbatim() -> None:
    block = placed_block(["likes green tea", "owns a bicycle"], 256)
    assert block == "Remembered facts about the user:\n- likes green tea\n- owns a bicycle"
    assert placed_block(["x" * 2000], 256) == ""


async def test_shutdown_waits_for_the_records_under_way() -> None:
    """The gateway's stop settles chat memory before the database closes (vector_setup.close_memory)."""
    recalls = _SlowRecalls()
    chat = ChatMemory(cast(MemoryCore, _Core()), None, ChatMemoryOptions(), cast(RecallStore, recalls))
    payload = {"user": "pat", "messages": [{"role": "user", "content": "what tea do I like"}]}
    await asyncio.wait_for(chat.recall(_ticket(), payload), 10)
    closing = asyncio.ensure_future(close_memory(None, None, chat))
    await asyncio.sleep(0.05)
    assert not closing.done()  # held by the record still being written
    recalls.release.set()
    await asyncio.wait_for(closing, 10)
    assert len(recalls.written) == 1


class _OneChunk(RawStream):
    async def pump(self, send: Send) -> Outcome:
        await send_chunk(send, b"data: hello\n\n", more=False)
        return Outcome.COMPLETED


async def _served(response: Response) -> list[str]:
    """What happened, in order, while the response was sent: its messages, then the work after."""
    seen: list[str] = []

    async def receive() -> Message:
        await asyncio.Event().wait()  # the client never leaves
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        seen.append(message["type"])

    def later(name: str) -> Callable[[], Awaitable[None]]:
        async def work() -> None:
            seen.append(name)

        return work

    after_body(response, later("first"))
    after_body(response, later("second"))
    await response({"type": "http", "asgi": {"spec_version": "2.4"}}, receive, send)
    return seen


async def test_work_after_the_body_runs_once_a_stream_is_sent() -> None:
    seen = await _served(_OneChunk([], None, None))
    assert seen == ["http.response.start", "http.response.body", "first", "second"]


async def test_work_after_the_body_runs_once_a_plain_answer_is_sent() -> None:
    seen = await _served(Response(b"{}", media_type="application/json"))
    assert seen == ["http.response.start", "http.response.body", "first", "second"]
