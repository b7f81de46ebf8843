import pytest

from paperboy_worker.pipeline import offline
from paperboy_worker.pipeline.items import Highlight, Item, Pick, ScoredItem
from shared.models import UserInfo

PROFILE = UserInfo(
    name="Pat",
    title="Computational biologist",
    goals="Protein structure prediction and protein-ligand docking",
)
ABSTRACT = (
    "Accurate protein structure prediction usually depends on multiple sequence alignments. "
    "We predict structure from a single sequence, e.g. for orphan proteins. "
    "The model is fast. "
    "Docking results improve when protein-ligand poses use the predicted structure."
)


def make_item(n: int = 1, **fields: object) -> Item:
    values: dict[str, object] = {
        "item_id": f"arXiv:2411.{n:05d}",
        "title": f"Paper {n}",
        "abstract": ABSTRACT,
        "url": f"http://arxiv.org/abs/2411.{n:05d}v1",
        "primary_category": "q-bio.BM",
        "categories": ["q-bio.BM"],
    }
    values.update(fields)
    return Item.model_validate(values)


def scored(n: int, score: float) -> ScoredItem:
    return ScoredItem(item=make_item(n), score=score)


def test_rank_normalises_and_drops_zero_scores():
    picks = offline.rank([scored(1, 2.0), scored(2, 8.0), scored(3, 0.0), scored(4, 4.0)], 10)

    assert [p.item.item_id for p in picks] == [
        "arXiv:2411.00002",
        "arXiv:2411.00004",
        "arXiv:2411.00001",
    ]
    assert [p.relevance for p in picks] == [1.0, 0.5, 0.25]
    assert [p.rank for p in picks] == [1, 2, 3]
    assert all(p.analysis is None for p in picks)


def test_rank_honours_top_n_and_duplicates():
    picks = offline.rank([scored(1, 5.0), scored(1, 5.0), scored(2, 4.0), scored(3, 3.0)], 2)

    assert [p.item.item_id for p in picks] == ["arXiv:2411.00001", "arXiv:2411.00002"]


@pytest.mark.parametrize("shortlisted", [[], [scored(1, 0.0), scored(2, 0.0)]])
def test_rank_returns_nothing_when_nothing_scores(shortlisted):
    assert offline.rank(shortlisted, 5) == []


def test_split_sentences_ignores_abbreviations():
    sentences = offline.split_sentences(ABSTRACT)

    assert len(sentences) == 4
    assert sentences[1] == "We predict structure from a single sequence, e.g. for orphan proteins."


def test_analyse_is_extractive_and_names_matched_goals():
    analysis = offline.analyse(make_item(), PROFILE)

    assert analysis.summary == " ".join(offline.split_sentences(ABSTRACT)[:2])
    assert "protein" in analysis.why_it_matters
    assert "protein-ligand" in analysis.why_it_matters
    assert "biologist" not in analysis.why_it_matters
    assert analysis.key_takeaway == offline.split_sentences(ABSTRACT)[3]


def test_analyse_clips_long_abstracts():
    long_sentence = "Protein " + "folding " * 80 + "matters."
    analysis = offline.analyse(make_item(abstract=long_sentence), PROFILE)

    assert len(analysis.summary) <= offline.SUMMARY_CHARS
    assert analysis.summary.endswith("…")


def test_analyse_without_overlap_falls_back_to_last_sentence():
    item = make_item(abstract="Cats purr loudly. Dogs bark often. Birds sing at dawn.")

    analysis = offline.analyse(item, PROFILE)

    assert analysis.key_takeaway == "Birds sing at dawn."
    assert "does not match your stated goals" in analysis.why_it_matters
    assert "q-bio.BM" in analysis.why_it_matters


def test_analyse_of_empty_abstract_uses_title():
    analysis = offline.analyse(make_item(abstract="", title="Protein folding"), PROFILE)

    assert analysis.summary == "Protein folding"
    assert analysis.key_takeaway == "Protein folding"


def test_highlights_summarise_the_picks():
    picks = offline.rank([scored(1, 3.0), scored(2, 2.0), scored(3, 1.0)], 3)

    found = offline.highlights(picks, PROFILE)

    assert 2 <= len(found) <= 4
    assert found[0] == Highlight(
        title="Today's picks", insight="3 papers picked for you today.", type="trend"
    )
    assert "Paper 1" in found[1].title
    assert found[1].type == "paper"
    assert any("protein" in h.insight for h in found)
    assert any("q-bio.BM" in h.insight for h in found)
    assert all(len(h.title) <= 80 and len(h.insight) < 200 for h in found)


def test_highlights_count_news_separately():
    news = make_item(9, kind="news", source="The Daily Fold", primary_category=None, categories=[])
    picks = [
        Pick(item=make_item(1), relevance=1.0, rank=1),
        Pick(item=news, relevance=0.5, rank=2),
    ]

    found = offline.highlights(picks, PROFILE)

    assert found[0].insight == "1 paper and 1 news story picked for you today."


def test_highlights_without_picks_say_so():
    assert offline.highlights([], PROFILE) == [
        Highlight(
            title="A quiet day",
            insight="Nothing in today's sources matched your profile closely.",
            type="trend",
        )
    ]


def test_a_checkpointed_plain_bullet_still_reads_as_a_highlight():
    # Checkpoints saved before highlights had a shape hold strings; a resumed digest replays them.
    assert Highlight.model_validate("Two papers today.") == Highlight(
        title="", insight="Two papers today.", type="trend"
    )
