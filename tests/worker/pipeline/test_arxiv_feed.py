import re
from pathlib import Path

import pytest

from paperboy_worker.pipeline.arxiv_feed import (
    SAMPLE_PATH,
    FeedError,
    filter_categories,
    load_sample,
    parse_feed,
    total_results,
)

FEED_OPEN = (
    '<feed xmlns="http://www.w3.org/2005/Atom" '
    'xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/" '
    'xmlns:arxiv="http://arxiv.org/schemas/atom">'
)

ONE_ENTRY = f"""<?xml version="1.0" encoding="UTF-8"?>
{FEED_OPEN}
  <opensearch:totalResults>1234</opensearch:totalResults>
  <entry>
    <id>http://arxiv.org/abs/2411.00042v3</id>
    <published>2026-11-22T09:00:00Z</published>
    <title>  Spaced
      Out   Title &amp; More </title>
    <summary>
  First line of the abstract
  continues here.   Second sentence.
</summary>
    <author><name> Ada   Lovelace </name></author>
    <author><name>Alan Turing</name></author>
    <arxiv:comment>9 pages</arxiv:comment>
    <link href="http://arxiv.org/abs/2411.00042v3" rel="alternate" type="text/html"/>
    <arxiv:primary_category term="cs.LG" scheme="http://arxiv.org/schemas/atom"/>
    <category term="cs.LG" scheme="http://arxiv.org/schemas/atom"/>
    <category term="stat.ML" scheme="http://arxiv.org/schemas/atom"/>
    <category term="cs.LG" scheme="http://arxiv.org/schemas/atom"/>
  </entry>
</feed>
""".encode()

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE feed [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>x</id><title>&lol9;</title></entry></feed>
"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE feed [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>x</id><title>&xxe;</title></entry></feed>
"""

ARXIV_ERROR = f"""<?xml version="1.0"?>
{FEED_OPEN}
  <opensearch:totalResults>1</opensearch:totalResults>
  <entry>
    <id>http://arxiv.org/api/errors#incorrect_id_format_for_abc</id>
    <title>Error</title>
    <summary>incorrect id format for abc</summary>
  </entry>
</feed>
""".encode()


@pytest.fixture(scope="module")
def sample() -> bytes:
    return SAMPLE_PATH.read_bytes()


def test_sample_has_sixty_entries_and_matching_total(sample):
    items = parse_feed(sample)

    assert len(items) == 60
    assert total_results(sample) == 60


def test_sample_items_are_complete(sample):
    items = parse_feed(sample)

    assert len({item.item_id for item in items}) == len(items)
    for item in items:
        assert re.fullmatch(r"arXiv:2411\.0\d{4}", item.item_id)
        arxiv_id = item.item_id.removeprefix("arXiv:")
        assert item.kind == "paper"
        assert item.url.startswith(f"http://arxiv.org/abs/{arxiv_id}v")
        assert item.pdf_url is not None
        assert item.pdf_url.startswith(f"http://arxiv.org/pdf/{arxiv_id}v")
        assert item.published is not None
        assert item.published.startswith("2026-11-22")
        assert item.authors
        assert all(name and name == name.strip() for name in item.authors)
        assert item.primary_category in item.categories
        assert "\n" not in item.title + item.abstract
        assert "  " not in item.title + item.abstract
        assert item.abstract.endswith(".")


def test_sample_keeps_xml_special_characters_as_text(sample):
    titles = [item.title for item in parse_feed(sample)]

    assert "Sparse & Dense Hybrid Retrieval" in " ".join(titles)
    assert any("Recall@5 < 0.5" in title for title in titles)
    assert not any("&amp;" in title or "&lt;" in title for title in titles)


def test_entry_fields_are_normalised():
    [item] = parse_feed(ONE_ENTRY)

    assert item.item_id == "arXiv:2411.00042"
    assert item.title == "Spaced Out Title & More"
    assert item.abstract == "First line of the abstract continues here. Second sentence."
    assert item.authors == ["Ada Lovelace", "Alan Turing"]
    assert item.categories == ["cs.LG", "stat.ML"]
    assert item.primary_category == "cs.LG"
    assert item.published == "2026-11-22T09:00:00Z"
    assert item.url == "http://arxiv.org/abs/2411.00042v3"
    assert item.pdf_url is None
    assert total_results(ONE_ENTRY) == 1234


def test_billion_laughs_is_rejected():
    with pytest.raises(FeedError, match="unsafe XML"):
        parse_feed(BILLION_LAUGHS)


def test_external_entity_is_rejected():
    with pytest.raises(FeedError, match="unsafe XML"):
        parse_feed(EXTERNAL_ENTITY)
    with pytest.raises(FeedError):
        total_results(EXTERNAL_ENTITY)


@pytest.mark.parametrize(
    "payload",
    [b"", b"<feed", b"not xml at all", b"<html><body>maintenance</body></html>"],
)
def test_malformed_or_foreign_documents_are_rejected(payload):
    with pytest.raises(FeedError):
        parse_feed(payload)


def test_arxiv_error_entry_is_raised():
    with pytest.raises(FeedError, match="incorrect id format"):
        parse_feed(ARXIV_ERROR)


def test_total_results_requires_the_count():
    feed = f"{FEED_OPEN}</feed>".encode()

    assert parse_feed(feed) == []
    with pytest.raises(FeedError, match="totalResults"):
        total_results(feed)


def test_filter_categories_keeps_any_overlap(sample):
    items = parse_feed(sample)

    kept = filter_categories(items, ["quant-ph", "math.OC"])

    assert len(kept) == 8
    assert all({"quant-ph", "math.OC"} & set(item.categories) for item in kept)
    assert filter_categories(items, []) == []


async def test_load_sample_defaults_to_bundled_feed_and_filters():
    proteins = await load_sample(None, ["q-bio.BM"])
    ai = await load_sample(None, ["cs.AI", "cs.LG"])

    assert len(proteins) == 7
    assert all("q-bio.BM" in item.categories for item in proteins)
    assert 20 < len(ai) < 60
    assert all({"cs.AI", "cs.LG"} & set(item.categories) for item in ai)


async def test_load_sample_reads_a_given_path(tmp_path: Path):
    path = tmp_path / "feed.xml"
    path.write_bytes(ONE_ENTRY)

    assert [item.item_id for item in await load_sample(path, ["stat.ML"])] == ["arXiv:2411.00042"]
    assert await load_sample(path, ["cs.CV"]) == []
