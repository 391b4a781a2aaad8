"""Moderation's parts on their own: the classifiers' category mapping (real models), the banned
terms, the LLM judge's verdict parsing, what text a chat or completions request is judged by,
the image safety hook's NudeNet check (real detector), and the stream guard's holding and cutting."""

from __future__ import annotations

from typing import Any, get_args

import orjson
import pytest

from adapters import ImageFilter, MediaError
from adapters.images import ImageFacts
from adapters.moderation import CATEGORIES, BannedTerms, image_scores, text_scores
from adapters.moderation.image import SEXUAL_LABELS, NudityFilter, detections, nudity_filter
from gateway.protocol.moderation import Category
from gateway.services.moderated import prompt_texts
from gateway.services.moderation_judge import CODES, SCHEMA, judge_request, parse_verdict
from gateway.services.moderation_stream import _GuardedSink
from gateway.services.relay import StreamUsage
from tests.gateway.moderation.images import benign, yellow_disc


def test_the_protocol_and_the_classifiers_name_the_same_categories_in_order() -> None:
    """Two copies by design: gateway/protocol imports only pydantic, adapters nothing of the gateway."""
    assert get_args(Category) == CATEGORIES


def test_text_scores_map_offensive_language_to_harassment_and_hate_only() -> None:
    calm, rude = text_scores(["Thank you for your help.", "Shut up, you worthless piece of shit."])
    assert set(calm) == set(CATEGORIES) and calm["harassment"] < 0.2
    assert rude["harassment"] == rude["hate"] > 0.8
    assert all(rude[name] == 0 for name in CATEGORIES if name not in ("harassment", "hate"))


def test_image_scores_are_the_highest_exposed_detection() -> None:
    found = detections(yellow_disc())
    expected = max((d["score"] for d in found if d["class"] in SEXUAL_LABELS), default=0.0)
    scores = image_scores(yellow_disc())
    assert scores["sexual"] == pytest.approx(expected, abs=1e-5) and scores["sexual"] > 0.1
    assert scores["sexual/minors"] == 0.0  # never asserted from an image (docs/moderation.md)
    assert image_scores(benign())["sexual"] == 0.0


def _facts(image: Any) -> ImageFacts:
    return ImageFacts("messages[0].content[1]", "PNG", image.width, image.height, 1000, "image/png")


def test_the_image_safety_hook_refuses_what_nudenet_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    """`TANTRA_MEDIA_IMAGE_FILTER=adapters.moderation.image:nudity_filter`: chat images go through it."""
    strict = ImageFilter([NudityFilter(threshold=0.2)])
    with pytest.raises(MediaError) as refused:
        strict.check(_facts(yellow_disc()), yellow_disc())
    assert refused.value.code == "image_rejected" and refused.value.param == "messages[0].content[1]"
    strict.check(_facts(benign()), benign())
    monkeypatch.delenv("TANTRA_MODERATION_IMAGE_THRESHOLD", raising=False)
    default = nudity_filter()
    assert default.threshold == 0.5 and default(_facts(yellow_disc()), yellow_disc()).allowed


def test_banned_terms() -> None:
    terms = BannedTerms({"illicit": ["zorblax powder"], "violence": ["smash"]})
    scores = terms.scores("Buy ZORBLAX  powder? No: Zorblax Powder, then SMASH it.")
    assert scores["illicit"] == 1.0 and scores["violence"] == 1.0
    assert terms.scores("smashing zorblaxpowder")["violence"] == 0.0  # whole words only
    assert not BannedTerms({})
    with pytest.raises(ValueError, match="nonsense"):
        BannedTerms({"nonsense": ["x"]})


def test_judge_request_and_verdicts() -> None:
    body = judge_request("tantra-tiny", "some text")
    assert body["response_format"]["json_schema"]["schema"] == SCHEMA
    assert "S13: violence/graphic." in body["messages"][0]["content"]
    assert len(CODES) == 13

    def answer(content: str) -> bytes:
        return orjson.dumps({"choices": [{"message": {"content": content}}]})

    unsafe = parse_verdict(answer('{"verdict": "unsafe", "categories": ["S1", "S10", "S99"]}'))
    assert unsafe["harassment"] == 1.0 and unsafe["sexual"] == 1.0 and sum(unsafe.values()) == 2.0
    assert sum(parse_verdict(answer('{"verdict": "safe", "categories": ["S1"]}')).values()) == 0
    assert sum(parse_verdict(answer("not json")).values()) == 0
    assert sum(parse_verdict(b"{}").values()) == 0


def test_prompt_texts() -> None:
    chat = {
        "messages": [
            {"role": "system", "content": "Be nice."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "image_url"}]},
            {"role": "assistant", "content": None},
        ]
    }
    assert prompt_texts(chat) == ["Be nice.", "Hi"]
    assert prompt_texts({"prompt": "Once"}) == ["Once"]
    assert prompt_texts({"prompt": ["a", [1, 2]]}) == ["a"]
    assert prompt_texts({"prompt": [1, 2, 3]}) == []


def _chunk(text: str, finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(body) + b"\n\n"


class _Client:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def __call__(self, message: Any) -> None:
        self.sent.append(message["body"])

    def text(self) -> str:
        out = ""
        for event in b"".join(self.sent).split(b"\n\n"):
            if event.startswith(b"data: {"):
                for choice in orjson.loads(event[6:])["choices"]:
                    out += choice.get("delta", {}).get("content") or ""
        return out


async def test_stream_guard_holds_until_a_sentence_ends_and_cuts_a_flagged_one() -> None:
    judged: list[str] = []

    async def judge(text: str) -> bool:
        judged.append(text)
        return "forbidden" in text

    client = _Client()
    sink = _GuardedSink(StreamUsage(forward_usage=True), client, judge)
    await sink.feed(_chunk("Hello"))
    await sink.feed(_chunk(" world"))
    assert client.sent == []  # mid-sentence: held
    await sink.feed(_chunk(". Next"))
    assert client.text() == "Hello world. Next" and judged == ["Hello world. Next"]
    await sink.feed(_chunk(" is forbidden"))
    await sink.feed(_chunk(" here."))
    assert sink.cut and client.text() == "Hello world. Next"  # the flagged sentence never left
    await sink.feed(_chunk(" more."))  # after the cut, nothing more is read or sent
    assert judged[-1] == " is forbidden here."
    ending = orjson.loads(sink.ending()[6:-2])
    assert ending["choices"] == [
        {"index": 0, "logprobs": None, "finish_reason": "content_filter", "delta": {}}
    ]
    assert ending["id"] == "chatcmpl-1" and ending["object"] == "chat.completion.chunk"


async def test_stream_guard_judges_the_tail_at_the_end() -> None:
    async def judge(text: str) -> bool:
        return False

    client = _Client()
    sink = _GuardedSink(StreamUsage(forward_usage=True), client, judge)
    await sink.feed(_chunk("no sentence end", "length"))
    assert client.sent == []
    await sink.take(b"data: [DONE]\n\n", final=True)
    assert client.text() == "no sentence end" and client.sent[-1].endswith(b"data: [DONE]\n\n")
