"""An upstream's /v1/models answer becomes OpenAI's model cards even when a provider leaves fields
out (a card without `created` once made the gateway's /v1/models a 500)."""

from __future__ import annotations

from gateway.protocol import ModelList
from gateway.upstreams.http_api import model_cards


def test_missing_fields_are_filled_and_extras_kept() -> None:
    answer = {
        "object": "list",
        "data": [
            {"id": "bare"},
            {
                "id": "vllm",
                "object": "model",
                "created": 1700000000,
                "owned_by": "vllm",
                "max_model_len": 2048,
            },
            {"id": 7, "created": "yesterday", "owned_by": None},
            {"no": "id"},
            "not a card",
        ],
    }
    cards = model_cards(answer)
    assert cards == [
        {"id": "bare", "object": "model", "created": 0, "owned_by": "unknown"},
        {"id": "vllm", "object": "model", "created": 1700000000, "owned_by": "vllm", "max_model_len": 2048},
        {"id": "7", "object": "model", "created": 0, "owned_by": "unknown"},
    ]
    ModelList.model_validate({"object": "list", "data": cards})  # the route's response model


def test_an_answer_that_is_not_a_listing_has_no_cards() -> None:
    assert model_cards(None) == [] and model_cards({"data": None}) == [] and model_cards([1]) == []
