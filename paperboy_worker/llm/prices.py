"""What LLM calls cost: list prices per million tokens, overridable from settings."""

from __future__ import annotations

from collections.abc import Mapping

# USD per 1M (prompt, completion) tokens, list prices when written; `LLM_PRICES` overrides them.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "accounts/fireworks/models/llama-v3p1-8b-instruct": (0.20, 0.20),
    "accounts/fireworks/models/llama-v3p1-70b-instruct": (0.90, 0.90),
    "accounts/fireworks/models/llama-v3p3-70b-instruct": (0.90, 0.90),
    # The old service's reasoning model; its thinking is billed as completion tokens.
    "accounts/fireworks/models/gpt-oss-120b": (0.15, 0.60),
}


class PriceTable:
    """Prices by model name; a dated snapshot (`gpt-4o-mini-2024-07-18`) costs as its family."""

    def __init__(self, overrides: Mapping[str, tuple[float, float]] | None = None) -> None:
        self.prices = {**PRICES, **(overrides or {})}

    def price(self, model: str) -> tuple[float, float] | None:
        if model in self.prices:
            return self.prices[model]
        # The longest known name the model starts with: "gpt-4o-mini-…" is not "gpt-4o".
        families = [name for name in self.prices if model.startswith(name + "-")]
        return self.prices[max(families, key=len)] if families else None

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        """USD for one call; 0 for a model without a price (logged by the caller)."""
        price = self.price(model)
        if price is None:
            return 0.0
        prompt, completion = price
        return round((prompt_tokens * prompt + completion_tokens * completion) / 1_000_000, 8)
