"""What flows through the pipeline: candidate items, scores, picks and the user profile."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, model_validator


def without_nul(text: str) -> str:
    """`text` without NUL characters, which PostgreSQL refuses in any text value."""
    return text.replace("\x00", "")


# Text from a source or the model: a NUL in it would make the store refuse the whole row.
Text = Annotated[str, AfterValidator(without_nul)]


# What extracting a news link's text showed about it (pipeline/links.py).
LinkStatus = Literal["accessible", "suspected_paywall", "broken", "unknown"]


class Item(BaseModel):
    """One candidate for the digest: an arXiv paper or a news article."""

    item_id: Text
    kind: Literal["paper", "news"] = "paper"
    title: Text
    abstract: Text
    authors: list[Text] = Field(default_factory=list)
    categories: list[Text] = Field(default_factory=list)
    primary_category: Text | None = None
    published: Text | None = None
    url: Text
    pdf_url: Text | None = None
    source: Text | None = None
    # News only, set once the item is chosen for a digest; None for papers.
    link_status: LinkStatus | None = None


class ScoredItem(BaseModel):
    item: Item
    score: float


class Analysis(BaseModel):
    summary: Text
    why_it_matters: Text
    key_takeaway: Text
    # News only: the one thing the reader could do about the story.
    action_item: Text | None = None


HighlightType = Literal["paper", "news", "trend"]


class Highlight(BaseModel):
    """One of the day's highlights: a short title and the insight behind it."""

    title: Text
    insight: Text
    type: HighlightType

    @model_validator(mode="before")
    @classmethod
    def _from_bullet(cls, value: Any) -> Any:
        # Checkpoints written before highlights had a shape hold plain bullets.
        if isinstance(value, str):
            return {"title": "", "insight": value, "type": "trend"}
        return value


class Pick(BaseModel):
    item: Item
    relevance: float = Field(ge=0.0, le=1.0)
    rank: int = Field(ge=1)
    analysis: Analysis | None = None
