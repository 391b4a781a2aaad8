"""Mid-stream failover: what a stream has said so far, and how another replica carries it on.

The continuation is the original request plus the text already streamed: for chat an assistant
message holding it, with vLLM's `continue_final_message` (and no new generation prompt); for
completions the text appended to the prompt. The new replica's events are rewritten to the
first stream's id, created time and model, its opening role event is dropped, and its usage
is restated for the whole answer, so the client sees one stream. Only the failover path parses
and re-serialises events; the normal path passes the engine's bytes through.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import orjson

from gateway.http.sse import sse_event

if TYPE_CHECKING:
    from gateway.upstreams.attempt import Attempt, Target
    from gateway.upstreams.dispatch import Dispatcher
    from gateway.upstreams.pool import Member
    from gateway.upstreams.stream import UpstreamRequest
    from gateway.upstreams.timeouts import Deadline

CHAT = "/v1/chat/completions"

# Request fields whose answer cannot be stitched from two generations.
_UNSTITCHABLE = (
    "tools",
    "functions",
    "logprobs",
    "echo",
    "prompt_logprobs",
    "structured_outputs",
    "guided_json",
    "guided_regex",
    "guided_choice",
    "guided_grammar",
    "response_format",
    "continue_final_message",
)


def can_continue(path: str, payload: dict[str, Any]) -> bool:
    """Whether a stream of this request could be continued on another replica."""
    if payload.get("n", 1) not in (1, None) or payload.get("best_of", 1) not in (1, None):
        return False
    for name in _UNSTITCHABLE:
        value = payload.get(name)
        if value is None or value is False or value == []:
            continue
        if name == "response_format" and isinstance(value, dict) and value.get("type") == "text":
            continue
        return False
    if path != CHAT:
        return isinstance(payload.get("prompt"), str)
    return isinstance(payload.get("messages"), list)


class StreamTranscript:
    """What the client has been sent: the stream's identity, its text, and whether it finished."""

    def __init__(self, path: str, payload: dict[str, Any]) -> None:
        self.path = path
        self.payload = payload
        self.id: str | None = None
        self.created: int | None = None
        self.model: str | None = None
        self.pieces: list[str] = []
        # Chat's reasoning streamed so far (a reasoning parser's `reasoning`), apart from the answer.
        self.thought: list[str] = []
        self.events = 0  # events that carried text: at least one token each
        self.finished = False
        self.failovers = 0

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def see(self, body: dict[str, Any]) -> None:
        """Take in one event the client was sent (already parsed for usage)."""
        if self.id is None:
            self.id, self.created, self.model = body.get("id"), body.get("created"), body.get("model")
        choices = body.get("choices")
        if not choices or not isinstance(choices, list):
            return
        choice = choices[0]
        if not isinstance(choice, dict):
            return
        if self.path == CHAT:
            delta = choice.get("delta")
            piece = delta.get("content") if isinstance(delta, dict) else None
            thought = _reasoning(delta)
            if thought:
                self.thought.append(thought)
                self.events += 1
        else:
            piece = choice.get("text")
        if piece:
            self.pieces.append(piece)
            self.events += 1
        if choice.get("finish_reason"):
            self.finished = True

    def continuation(self, already: int) -> bytes | None:
        """The request for the rest of the answer, given `already` generated tokens; None when the
        token limit is already reached (the caller then ends the stream itself)."""
        payload = dict(self.payload)
        for name in ("max_completion_tokens", "max_tokens"):
            limit = payload.get(name)
            if isinstance(limit, int):
                if limit - already <= 0:
                    return None
                payload[name] = limit - already
        if isinstance(payload.get("min_tokens"), int):
            payload["min_tokens"] = max(0, payload["min_tokens"] - already)
        text = self.text
        if self.thought:
            # The model wrote its reasoning in `<think>` tags the engine's parser took off: put back
            # as written, the next replica goes on from there and its parser splits it again.
            text = "<think>" + "".join(self.thought) + ("</think>" + text if text else "")
        if text:
            if self.path == CHAT:
                payload["messages"] = [*payload["messages"], {"role": "assistant", "content": text}]
                payload["continue_final_message"] = True
                payload["add_generation_prompt"] = False
            else:
                payload["prompt"] = payload["prompt"] + text
        payload["stream"] = True
        options = payload.get("stream_options")
        payload["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        return orjson.dumps(payload)

    def rewrite(self, event: bytes, already: int) -> bytes | None:
        # `event` ends with its blank line; it is parsed without it.
        """One event of the continuation as the first stream would have sent it; None to drop it."""
        if not event.startswith(b"data: {"):
            return event
        try:
            body = orjson.loads(event[6:].rstrip())
        except orjson.JSONDecodeError:
            return event
        if "error" in body:
            return event
        body["id"], body["created"], body["model"] = self.id, self.created, self.model
        choices = body.get("choices")
        usage = body.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            prompt = usage.get("prompt_tokens")
            completion = usage["completion_tokens"] + already
            usage["completion_tokens"] = completion
            if isinstance(prompt, int):
                usage["prompt_tokens"] = max(0, prompt - already if self.text or self.thought else prompt)
                usage["total_tokens"] = usage["prompt_tokens"] + completion
        if self.path == CHAT and isinstance(choices, list) and choices and isinstance(choices[0], dict):
            delta = choices[0].get("delta")
            if isinstance(delta, dict) and "role" in delta:
                del delta["role"]  # the client had its role event from the first replica
                text = delta.get("content") or _reasoning(delta)
                if not (text or choices[0].get("finish_reason") or usage):
                    return None
        return sse_event(body)

    def finish_event(self) -> bytes:
        """The last event of a stream whose token limit was reached at the moment it broke."""
        choice: dict[str, Any] = {"index": 0, "finish_reason": "length", "logprobs": None}
        if self.path == CHAT:
            choice["delta"] = {}
            kind = "chat.completion.chunk"
        else:
            choice["text"] = ""
            kind = "text_completion"
        body: dict[str, Any] = {"id": self.id, "object": kind, "created": self.created, "model": self.model}
        body["choices"] = [choice]
        return sse_event(body)


class Failover:
    """Continues one stream on another replica when its upstream breaks, at most `limit` times."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        request: UpstreamRequest,
        *,
        plan: list[Target],
        deadline: Deadline,
        affinity: str | None,
    ) -> None:
        self.transcript = StreamTranscript(request.path, request.payload)
        self._dispatcher = dispatcher
        # Only an upstream that continues streams takes the continuation (`continue_final_message`
        # is vLLM's): a provider in the chain would refuse it, so a stream that broke there ends
        # with an error event.
        self._plan = [
            dataclasses.replace(
                target, members=[m for m in target.members if m.upstream.capabilities.continues_streams]
            )
            for target in plan
        ]
        self._headers = request.headers
        self._deadline = deadline
        self._affinity = affinity
        self._limit = request.failover_max
        self._metrics = dispatcher.metrics
        self._already = 0

    def possible(self, done: bool) -> bool:
        transcript = self.transcript
        if done or transcript.finished or transcript.id is None:
            return False
        return transcript.failovers < self._limit

    async def resume(self, failed: Attempt) -> Attempt | bytes:
        """The continuation's open stream, or the final event when nothing is left to generate."""
        transcript = self.transcript
        transcript.failovers += 1
        if self._metrics is not None:
            self._metrics.upstream_failovers.labels(failed.member.name).inc()
        # Tokens generated so far: each text event carried at least one, and the text re-tokenized
        # is close to what was generated; the larger of the two undercounts the least.
        already = transcript.events
        text = "".join(transcript.thought) + transcript.text
        counter = next((m for m in failed.target.members if _can_count(m, failed.member)), None)
        if text and counter is not None:
            wait_s = max(0.1, self._deadline.cap(failed.target.timeouts.ttft_s))
            counted = await counter.upstream.count_tokens(failed.target.served, text, timeout_s=wait_s)
            already = max(already, counted or 0)
        self._already = already
        body = transcript.continuation(already)
        if body is None:
            return transcript.finish_event()
        return await self._dispatcher.open_stream(
            transcript.path,
            body,
            {**self._headers, "x-request-id": f"{self._headers.get('x-request-id')}-f{transcript.failovers}"},
            self._plan,
            self._deadline,
            affinity=self._affinity,
            avoid={failed.member.name},
        )

    def rewrite(self, events: bytes) -> bytes:
        """Complete events of the continuation, as the first stream would have sent them."""
        out = (self.transcript.rewrite(event + b"\n\n", self._already) for event in events.split(b"\n\n"))
        return b"".join(event for event in out if event and event != b"\n\n")


def _reasoning(delta: Any) -> Any:
    """A chat delta's reasoning (vLLM 0.32 names it `reasoning`, earlier ones `reasoning_content`)."""
    if not isinstance(delta, dict):
        return None
    return delta.get("reasoning") or delta.get("reasoning_content")


def _can_count(member: Member, failed: Member) -> bool:
    """Whether `member` may re-tokenize the text for the failover (a tokenizer, its breaker letting
    traffic through)."""
    if member is failed or not member.upstream.capabilities.counts_tokens:
        return False
    return member.breaker.allows()
