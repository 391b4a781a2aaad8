"""Each rule of a virtual model's choice on candidates built in memory (gateway/routing/rules.py),
what a body asks of a model (facts.py), the nearest-centroid classifier over a stand-in embedding
(classifier.py) and the configuration's checks. No I/O: the real engines are test_auto_engine.py."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from gateway.routing.classifier import TaskClassifier
from gateway.routing.config import TaskRule, VirtualModel
from gateway.routing.facts import asked_of
from gateway.routing.rules import Asked, Choice, Option, choose

SMALL = Option("small", context_length=512, features=frozenset(), usd_per_mtok=(0.1, 0.2), latency_ms=50)
LONG = Option(
    "long", context_length=8192, features=frozenset({"tools"}), usd_per_mtok=(1.0, 2.0), latency_ms=400
)
VISION = Option("vision", context_length=4096, accepts=frozenset({"text", "image"}), usd_per_mtok=(5, 10))
OPTIONS = [SMALL, LONG, VISION]


def virtual(*rules: dict[str, Any], default: str | None = None) -> VirtualModel:
    return VirtualModel.model_validate(
        {"candidates": {o.name: {} for o in OPTIONS}, "rules": list(rules), "default": default}
    )


async def never(rule: TaskRule, text: str) -> str | None:
    raise AssertionError("the classifier is called only when a task rule is reached")


async def pick(model: VirtualModel, asked: Asked, options: list[Option] = OPTIONS) -> Choice:
    return await choose(model, options, asked, never)


async def test_no_rule_or_nothing_to_narrow_is_the_default() -> None:
    assert await pick(virtual(), Asked(10)) == Choice("small", "default")
    assert await pick(virtual(default="long"), Asked(10)) == Choice("long", "default")
    everything = virtual({"type": "modality"}, {"type": "context"}, {"type": "features"})
    assert await pick(everything, Asked(10)) == Choice("small", "default")


async def test_modality_sends_images_to_a_model_taking_them() -> None:
    model = virtual({"type": "modality"})
    assert await pick(model, Asked(10, modalities=frozenset({"image"}))) == Choice("vision", "modality")
    # Audio nobody takes: the rule is passed over (the media service turns it into text).
    assert await pick(model, Asked(10, modalities=frozenset({"audio"}))) == Choice("small", "default")


async def test_context_sends_a_long_prompt_to_a_model_holding_it() -> None:
    model = virtual({"type": "context", "min_completion_tokens": 16})
    assert await pick(model, Asked(496)) == Choice("small", "default")  # 496 + 16 = 512 fits
    assert await pick(model, Asked(497)) == Choice("long", "context")
    assert await pick(model, Asked(100, completion_tokens=1000)) == Choice("long", "context")
    # Too long for all: the longest context (its engine says what is too long).
    assert await pick(model, Asked(100_000)) == Choice("long", "context")


async def test_features_go_to_a_model_declaring_them() -> None:
    model = virtual({"type": "features"})
    assert await pick(model, Asked(10, features=frozenset({"tools"}))) == Choice("long", "features")
    # `vision` declares nothing: every feature.
    assert await pick(model, Asked(10, features=frozenset({"json_schema"}))) == Choice("vision", "features")


async def test_budget_by_price_and_latency() -> None:
    by_price = virtual({"type": "budget", "max_usd_per_mtok": 1.5}, default="vision")
    assert await pick(by_price, Asked(100, completion_tokens=100)) == Choice("small", "budget")
    # The request's own mix of prompt and completion tokens prices it.
    assert await pick(by_price, Asked(1000, completion_tokens=10), [VISION, LONG]) == Choice("long", "budget")
    # Nothing within the budget: the rule is passed over.
    assert await pick(by_price, Asked(10, completion_tokens=1000), [VISION, LONG]) == Choice(
        "vision", "default"
    )
    by_latency = virtual({"type": "budget", "max_latency_ms": 100}, default="long")
    # `vision` declares no latency: it passes.
    assert await pick(by_latency, Asked(10)) == Choice("small", "budget")


async def test_rules_apply_in_order_and_the_last_that_narrowed_is_named() -> None:
    model = virtual({"type": "context"}, {"type": "budget", "max_usd_per_mtok": 6})
    assert await pick(model, Asked(1000)) == Choice("long", "context")  # budget left long and vision
    model = virtual({"type": "context"}, {"type": "budget", "max_usd_per_mtok": 2})
    assert await pick(model, Asked(1000), [SMALL, VISION, LONG]) == Choice("long", "budget")


async def test_task_rule_restricts_to_the_task_models_in_their_order() -> None:
    rule = {
        "type": "task",
        "embedding_model": "emb",
        "tasks": {"code": {"examples": ["def f():"], "models": ["vision", "long"]}},
    }
    asked: list[str] = []

    async def classify(rule: TaskRule, text: str) -> str | None:
        asked.append(text)
        return "code" if "python" in text else None

    model = virtual(rule)
    assert await choose(model, OPTIONS, Asked(10, text="write python"), classify) == Choice(
        "vision", "task:code"
    )
    assert await choose(model, OPTIONS, Asked(10, text="a poem"), classify) == Choice("small", "default")
    # No text to classify: no embedding call.
    assert await choose(model, OPTIONS, Asked(10), classify) == Choice("small", "default")
    assert asked == ["write python", "a poem"]


def test_facts_of_chat_completions_and_responses_bodies() -> None:
    chat = asked_of(
        {
            "model": "auto",
            "messages": [
                {"role": "system", "content": "x" * 400},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "what is this?"}, {"type": "image_url"}],
                },
            ],
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "a"}},
            "logprobs": True,
            "max_completion_tokens": 7,
        }
    )
    assert chat.modalities == {"image"}
    assert chat.features == {"tools", "json_schema", "logprobs"}
    assert chat.text == "what is this?"
    assert chat.prompt_tokens == (400 + 13 + 3) // 4 + 8
    assert chat.completion_tokens == 7
    completions = asked_of({"model": "auto", "prompt": "y" * 40, "max_tokens": 3, "logprobs": 0})
    assert (completions.prompt_tokens, completions.text, completions.features) == (14, "y" * 40, {"logprobs"})
    responses = asked_of(
        {
            "model": "auto",
            "instructions": "be brief",
            "input": [
                {"role": "user", "content": [{"type": "input_audio"}, {"type": "input_text", "text": "hi"}]}
            ],
            "text": {"format": {"type": "json_object"}},
            "max_output_tokens": 9,
        }
    )
    assert (responses.modalities, responses.features, responses.text) == ({"audio"}, {"json_object"}, "hi")
    assert responses.completion_tokens == 9
    assert asked_of({"model": "auto", "input": "hello"}).text == "hello"


def bag_of_words(text: str) -> list[float]:
    vector = np.zeros(32, dtype=np.float32)
    for word in re.findall(r"[a-z]+", text.lower()):
        vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % 32] += 1.0
    return vector.tolist()


async def test_classifier_nearest_centroid_computed_once() -> None:
    calls: list[tuple[str, int]] = []

    async def embed(model: str, texts: list[str]) -> list[list[float]]:
        calls.append((model, len(texts)))
        return [bag_of_words(text) for text in texts]

    rule = TaskRule.model_validate(
        {
            "type": "task",
            "embedding_model": "emb",
            "tasks": {
                "code": {"examples": ["write a python function", "fix this python bug"], "models": ["a"]},
                "poetry": {
                    "examples": ["write a poem about the sea", "a sonnet about love"],
                    "models": ["b"],
                },
            },
            "min_similarity": 0.3,
        }
    )
    classifier = TaskClassifier(embed)
    assert await classifier.classify(rule, "a python function please") == "code"
    assert await classifier.classify(rule, "a poem about the moon") == "poetry"
    assert await classifier.classify(rule, "zzz qqq") is None  # below min_similarity
    # The examples once (4 texts), then one text per prompt.
    assert calls == [("emb", 4), ("emb", 1), ("emb", 1), ("emb", 1)]
    # New examples (a reload): new centroids.
    changed = rule.model_copy(update={"embedding_model": "emb2"})
    await classifier.classify(changed, "python")
    assert calls[-2:] == [("emb2", 4), ("emb2", 1)]


def test_configuration_names_only_candidates() -> None:
    with pytest.raises(ValidationError, match="default 'nope' is not among the candidates"):
        VirtualModel.model_validate({"candidates": {"a": {}}, "default": "nope"})
    task = {"type": "task", "embedding_model": "e", "tasks": {"t": {"examples": ["x"], "models": ["b"]}}}
    with pytest.raises(ValidationError, match="task 't' names models that are not candidates"):
        VirtualModel.model_validate({"candidates": {"a": {}}, "rules": [task]})
    with pytest.raises(ValidationError):
        VirtualModel.model_validate({"candidates": {"a": {}}, "rules": [{"type": "astrology"}]})
    assert VirtualModel.model_validate({"candidates": {"a": {}, "b": {}}, "default": "b"}).preferred() == [
        "b",
        "a",
    ]


def test_settings_refuse_a_virtual_model_hiding_a_model_or_choosing_a_virtual_one() -> None:
    from gateway.settings.schema import Settings

    settings = Settings(
        models={"chat": {}},
        virtual_models={"chat": {"candidates": {"x": {}}}, "auto": {"candidates": {"chat": {}, "fast": {}}}},
    )
    problems = settings.problems()
    assert "virtual_models.chat (TANTRA_VIRTUAL_MODELS): has the name of a model in `models`" in problems
    assert any("virtual_models.auto.candidates" in p and "'chat' is a virtual model" in p for p in problems)
