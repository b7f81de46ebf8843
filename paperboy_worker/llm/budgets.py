"""How many completion tokens each call may use."""

from __future__ import annotations

from dataclasses import dataclass

# Room for a reasoning model's thinking and its answer (the old service settled on 8,000 after
# its reasoning model answered nothing within the plain budgets).
REASONING_MAX_TOKENS = 8_000


@dataclass(frozen=True)
class Budgets:
    """Each step's own budget, or `max_tokens` for every step; more for a reasoning model."""

    max_tokens: int | None = None
    reasoning_max_tokens: int = REASONING_MAX_TOKENS
    reasoning: bool = False  # the model is known to reason from its first call

    def for_step(self, step_budget: int, reasons: bool) -> int:
        budget = self.max_tokens or step_budget
        return max(budget, self.reasoning_max_tokens) if reasons else budget
