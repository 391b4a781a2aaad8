"""What a request costs, from per-model prices in USD per million tokens."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.settings.sections import ModelPrice


class PriceBook:
    def __init__(self, prices: Mapping[str, ModelPrice]) -> None:
        self._prices = dict(prices)

    def cost_micros(self, model: str, prompt_tokens: int, completion_tokens: int) -> int:
        """Millionths of a dollar; models without a price cost nothing."""
        price = self._prices.get(model)
        if price is None:
            return 0
        return round(prompt_tokens * price.prompt + completion_tokens * price.completion)
