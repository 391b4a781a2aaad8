"""The Slack bot's answer logic against stand-ins (a scripted stream, a recording Web API): updates
are throttled to one per interval, one conversation per thread, errors told briefly. The real
gateway and Slack's signed requests: test_slack_bot.py."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import httpx
import openai
from openai.types.responses import ResponseTextDeltaEvent
from tantra_slack import Answerer, BotConfig


class _Web:
    def __init__(self) -> None:
        self.updates: list[str] = []

    def chat_postMessage(self, **fields: Any) -> dict[str, str]:
        return {"ts": "1.0"}

    def chat_update(self, **fields: Any) -> None:
        self.updates.append(fields["text"])


class _Tantra:
    def __init__(self, deltas: list[str], error: Exception | None = None) -> None:
        self.created: list[dict[str, Any]] = []
        self.asked: list[str] = []
        self.conversations = SimpleNamespace(create=self._create)
        self.responses = SimpleNamespace(create=self._respond)
        self._deltas, self._error = deltas, error

    def _create(self, **fields: Any) -> Any:
        self.created.append(fields)
        return SimpleNamespace(id=f"conv_{len(self.created)}")

    def _respond(self, **fields: Any) -> Any:
        if self._error:
            raise self._error
        self.asked.append(fields["conversation"])
        return iter(
            ResponseTextDeltaEvent.model_construct(type="response.output_text.delta", delta=d)
            for d in self._deltas
        )


def _answerer(tantra: _Tantra, ticks: list[float]) -> Answerer:
    clock = iter(ticks)
    answerer = Answerer(BotConfig("http://gw", "sk", "m", update_interval_s=1.0), clock=lambda: next(clock))
    answerer._clients["sk"] = cast(Any, tantra)
    return answerer


def test_updates_are_throttled_and_the_last_is_whole() -> None:
    tantra, web = _Tantra(["a", "b", "c", "d"]), _Web()
    # start 0; deltas at 0.5 (too soon), 1.2 (update, then reads 1.2), 1.5 (too soon), 2.3 (update)
    answerer = _answerer(tantra, [0, 0.5, 1.2, 1.2, 1.5, 2.3, 2.3])
    assert answerer.answer(cast(Any, web), "T", "C", "9.9", "hi") == "abcd"
    assert web.updates == ["ab …", "abcd …", "abcd"]


def test_one_conversation_per_thread() -> None:
    tantra, web = _Tantra(["x"]), _Web()
    answerer = _answerer(tantra, [0.0] * 20)
    for thread in ("1", "1", "2"):
        answerer.answer(cast(Any, web), "T", "C", thread, "hi")
    assert tantra.asked == ["conv_1", "conv_1", "conv_2"]
    assert answerer.reset("T", "C") == 2


def test_a_refusal_is_told_briefly() -> None:
    request = httpx.Request("POST", "http://gw/v1/responses")
    refusal = openai.RateLimitError(
        "Rate limit reached.",
        response=cast(Any, httpx.Response(429, request=request)),
        body={"message": "Rate limit reached."},
    )
    web = _Web()
    _answerer(_Tantra([], error=refusal), [0.0] * 5).answer(cast(Any, web), "T", "C", "1", "hi")
    assert web.updates == [":warning: Tantra: Rate limit reached."]
