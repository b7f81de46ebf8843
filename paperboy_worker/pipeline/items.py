"""What flows through the pipeline: candidate items, scores, picks and the user profile."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from shared.models import NOT_SPECIFIED


class Item(BaseModel):
    """One candidate for the digest: an arXiv paper or a news article."""

    item_id: str
    kind: Literal["paper", "news"] = "paper"
    title: str
    abstract: str
    authors: list[str] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list)
    primary_category: str | None = None
    published: str | None = None
    url: str
    pdf_url: str | None = None
    source: str | None = None


class ScoredItem(BaseModel):
    item: Item
    score: float


class Analysis(BaseModel):
    summary: str
    why_it_matters: str
    key_takeaway: str


class Pick(BaseModel):
    item: Item
    relevance: float = Field(ge=0.0, le=1.0)
    rank: int = Field(ge=1)
    analysis: Analysis | None = None


class Profile(BaseModel):
    """The reader a digest is written for; relevance is measured against it."""

    name: str
    title: str = NOT_SPECIFIED
    goals: str = NOT_SPECIFIED
    news_interest: str | None = None

    def query_text(self) -> str:
        """The profile text relevance is scored against; placeholders and blanks are left out."""
        parts = (self.goals, self.title, self.news_interest)
        return " ".join(p.strip() for p in parts if p and p.strip() and p.strip() != NOT_SPECIFIED)
