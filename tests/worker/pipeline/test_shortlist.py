import pytest

from paperboy_worker.pipeline.arxiv_feed import SAMPLE_PATH, parse_feed
from paperboy_worker.pipeline.items import Item
from paperboy_worker.pipeline.shortlist import bm25_scores, normalise, shortlist, tokenize
from shared.models import UserInfo

RAG_TITLES = {
    "Retrieval-Augmented Generation with Calibrated Abstention",
    "Sparse & Dense Hybrid Retrieval for Retrieval-Augmented Question Answering over Long "
    "Documents",
    "Chunking Matters: An Empirical Study of Document Segmentation in Retrieval-Augmented "
    "Generation",
    "Attributable Answers: Training Retrieval-Augmented Generators to Cite Their Evidence",
    "Poisoned Passages: Robustness of Retrieval-Augmented Language Models to Corpus Injection",
    "Iterative Query Rewriting for Multi-Hop Retrieval-Augmented Generation",
    "Fewer Than Three Good Passages: Evaluating RAG When Recall@5 < 0.5",
}
PROTEIN_TITLES = {
    "Protein Structure Prediction from Single Sequences with Language Model Embeddings",
    "Refining Predicted Protein Structures with Equivariant Diffusion",
    "Predicting Conformational Ensembles of Intrinsically Disordered Proteins",
    "Multimer Structure Prediction for Antibody-Antigen Complexes",
    "Inverse Folding with Structure-Aware Sequence Design for De Novo Proteins",
    "Confidence Calibration of Protein Structure Predictors on Orphan Protein Families",
    "Protein-Ligand Binding Pose Prediction with Learned Scoring & Physics Priors",
}
RAG_PROFILE = UserInfo(
    name="Rae",
    title="NLP engineer",
    goals="Retrieval-augmented generation: grounding language model answers in retrieved documents",
)
PROTEIN_PROFILE = UserInfo(
    name="Pat",
    title="Computational biologist",
    goals="Protein structure prediction and protein design",
)


def make_item(n: int, title: str = "A title", abstract: str = "Some text.") -> Item:
    return Item(item_id=f"arXiv:2411.{n:05d}", title=title, abstract=abstract, url=f"http://x/{n}")


@pytest.fixture(scope="module")
def items() -> list[Item]:
    return parse_feed(SAMPLE_PATH.read_bytes())


def test_fixture_titles_exist_in_sample(items):
    titles = {item.title for item in items}

    assert titles >= RAG_TITLES
    assert titles >= PROTEIN_TITLES


def test_tokenize_lowercases_drops_stopwords_and_folds_plurals():
    text = "The Retrieval-Augmented Models of Proteins, and their Libraries!"

    assert tokenize(text) == ["retrieval", "augmented", "model", "protein", "library"]


@pytest.mark.parametrize(
    ("word", "expected"),
    [("graphs", "graph"), ("studies", "study"), ("analysis", "analysis"), ("process", "process")],
)
def test_normalise_is_crude_but_safe(word, expected):
    assert normalise(word) == expected


@pytest.mark.parametrize(
    ("profile", "relevant"), [(RAG_PROFILE, RAG_TITLES), (PROTEIN_PROFILE, PROTEIN_TITLES)]
)
def test_relevant_entries_rank_first(items, profile, relevant):
    ranked = [scored.item.title for scored in shortlist(items, profile, 10)]

    assert set(ranked[:5]) <= relevant
    assert set(ranked[:7]) == relevant


def test_shortlist_is_sorted_best_first_and_bounded(items):
    result = shortlist(items, RAG_PROFILE, 12)
    scores = [scored.score for scored in result]

    assert len(result) == 12
    assert scores == sorted(scores, reverse=True)
    assert scores[0] > 0


def test_shortlist_is_not_feed_order(items):
    first_in_feed = [item.item_id for item in items[:5]]

    assert [s.item.item_id for s in shortlist(items, PROTEIN_PROFILE, 5)] != first_in_feed


def test_empty_query_scores_zero_in_original_order(items):
    blank = UserInfo(name="Nobody")

    assert blank.query_text() == ""
    result = shortlist(items, blank, 10)
    assert [s.item for s in result] == items[:10]
    assert all(s.score == 0 for s in result)


def test_ties_keep_input_order():
    same = [make_item(n, title="graph networks") for n in range(4)]

    result = shortlist(same, UserInfo(name="G", goals="graph"), 4)

    assert [s.item.item_id for s in result] == [item.item_id for item in same]


def test_non_positive_limit_returns_nothing(items):
    assert shortlist(items, RAG_PROFILE, 0) == []
    assert shortlist([], RAG_PROFILE, 5) == []


def test_title_counts_more_than_abstract():
    in_title = make_item(1, title="Quantum error correction", abstract="We study codes.")
    in_abstract = make_item(2, title="Error correction codes", abstract="We study quantum codes.")

    result = shortlist([in_abstract, in_title], UserInfo(name="Q", goals="quantum"), 2)

    assert result[0].item is in_title


def test_bm25_rewards_frequency_rarity_and_short_documents():
    docs = [["rare", "common"], ["common", "common"], ["common"], ["rare", "filler", "filler"]]

    scores = bm25_scores(docs, ["rare", "common"])

    assert scores[0] > scores[3] > 0
    assert scores[0] > scores[1] > scores[2] > 0
    assert bm25_scores(docs, []) == [0.0, 0.0, 0.0, 0.0]
    assert bm25_scores([], ["rare"]) == []
