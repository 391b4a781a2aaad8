"""Chat's and completions' moderation under the caller's tenant policy: the prompt before the
model (`screen_input`: 400 `content_policy_violation` under `block`), a JSON answer after it
(`screen_answer`: a flagged choice's text withheld, `finish_reason: "content_filter"`), and a
stream sentence by sentence (`relay`, moderation_stream.py). Every flag is stored for review."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from gateway.admission import Ticket
from gateway.http.streaming import RawStream
from gateway.protocol.moderation import ModerationPolicy
from gateway.services.moderation_check import ContentPolicyViolation, FlagEvent, Moderation
from gateway.services.moderation_stream import Judge, ModeratedRelay
from gateway.services.relay import SSERelay


class ModeratedChat:
    def __init__(self, moderation: Moderation) -> None:
        self.moderation = moderation

    async def screen_input(self, ticket: Ticket, payload: dict[str, Any], path: str) -> ModerationPolicy:
        """The tenant's policy; under it, the prompt's text judged before the model sees it."""
        policy = await self.moderation.policies.of(ticket.principal.tenant_id)
        if policy.input == "off":
            return policy
        texts = prompt_texts(payload)
        with ticket.stage("moderation"):
            verdict = await self.moderation.check(texts, policy)
        if not verdict:
            return policy
        action = "blocked" if policy.input == "block" else "flagged"
        event = FlagEvent(path, "input", action, verdict, "\n".join(texts), _user(payload))
        await self.moderation.record(ticket, event)
        if policy.input == "block":
            raise ContentPolicyViolation(
                "Your request was rejected by the gateway's content policy "
                f"(flagged: {', '.join(verdict.flagged)}).",
                param="messages" if "messages" in payload else "prompt",
            )
        return policy

    async def screen_answer(
        self, ticket: Ticket, policy: ModerationPolicy, answer: bytes, path: str, user: str | None
    ) -> bytes:
        """A JSON answer, its choices' text withheld when flagged under `block`."""
        if policy.output == "off":
            return answer
        try:
            body = orjson.loads(answer)
            choices = [choice for choice in body["choices"] if isinstance(choice, dict)]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return answer
        texts = [_choice_text(choice) for choice in choices]
        if not any(texts):
            return answer
        with ticket.stage("moderation"):
            verdict = await self.moderation.check(texts, policy)
        if not verdict:
            return answer
        action = "cut" if policy.output == "block" else "flagged"
        event = FlagEvent(path, "output", action, verdict, "\n".join(texts), user)
        await self.moderation.record(ticket, event)
        if policy.output != "block":
            return answer
        for choice in choices:
            choice["finish_reason"] = "content_filter"
            message = choice.get("message")
            if isinstance(message, dict):
                message.update(content=None, tool_calls=None, reasoning=None, reasoning_content=None)
            if "text" in choice:
                choice["text"] = ""
        return orjson.dumps(body)

    async def screen_reply(
        self, ticket: Ticket, policy: ModerationPolicy, reply: Response, path: str, payload: dict[str, Any]
    ) -> Response:
        """The answer under the policy's `output`: a JSON answer judged whole, a relayed stream
        judged sentence by sentence (a spoken answer's stream is not: its audio is made as the text
        arrives; its text is judged by the input and JSON paths only)."""
        if policy.output == "off":
            return reply
        user = _user(payload)
        if isinstance(reply, SSERelay):
            return ModeratedRelay.around(reply, self._judge(ticket, policy, path, user))
        if isinstance(reply, RawStream):
            return reply
        answer = await self.screen_answer(ticket, policy, bytes(reply.body), path, user)
        if answer is reply.body:
            return reply
        return Response(answer, media_type="application/json", headers=ticket.limit_headers)

    def _judge(self, ticket: Ticket, policy: ModerationPolicy, path: str, user: str | None) -> Judge:
        flagged_once = False

        async def judge(text: str) -> bool:
            nonlocal flagged_once
            verdict = await self.moderation.check([text], policy)
            if not verdict:
                return False
            block = policy.output == "block"
            if block or not flagged_once:  # flag-only: the first flagged sentence is recorded
                flagged_once = True
                action = "cut" if block else "flagged"
                await self.moderation.record(ticket, FlagEvent(path, "output", action, verdict, text, user))
            return block

        return judge


def prompt_texts(payload: dict[str, Any]) -> list[str]:
    """The text a chat or completions request gives the model (its messages' text parts, or its
    prompt strings); token-id prompts carry no text to judge."""
    texts: list[str] = []
    messages = payload.get("messages")
    if isinstance(messages, list):
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                texts.append(content)
            elif isinstance(content, list):
                texts.extend(
                    part["text"]
                    for part in content
                    if isinstance(part, dict) and isinstance(part.get("text"), str)
                )
        return texts
    prompt = payload.get("prompt")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list):
        return [entry for entry in prompt if isinstance(entry, str)]
    return texts


def _choice_text(choice: dict[str, Any]) -> str:
    message = choice.get("message")
    if isinstance(message, dict):
        # The reasoning is shown to the client too (docs/orchestration.md, "Reasoning"): judged with it.
        reasoning = message.get("reasoning") or message.get("reasoning_content")
        return "\n".join(str(text) for text in (reasoning, message.get("content")) if text)
    return str(choice.get("text") or "")


def _user(payload: dict[str, Any]) -> str | None:
    user = payload.get("user")
    return user if isinstance(user, str) and user else None
