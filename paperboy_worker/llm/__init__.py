"""The LLM side of the worker: the provider's client, what calls cost, and `LLMWriter`."""

from paperboy_worker.llm.budgets import Budgets
from paperboy_worker.llm.client import FIREWORKS_BASE_URL, llm_budgets, llm_client, llm_model
from paperboy_worker.llm.errors import classify
from paperboy_worker.llm.prices import PRICES, PriceTable
from paperboy_worker.llm.writer import LLMWriter

__all__ = [
    "FIREWORKS_BASE_URL",
    "PRICES",
    "Budgets",
    "LLMWriter",
    "PriceTable",
    "classify",
    "llm_budgets",
    "llm_client",
    "llm_model",
]
