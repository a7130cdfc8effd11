"""bibleqa.related: the TSK neighbours of the program's verses, in the documented order, cut to a count.

Every expectation is computed here from the data (``bibleqa.tsk``'s links and BM25 scores of the verses),
not from the module's own candidate list.
"""

from __future__ import annotations

import pytest

from bibleqa.related import related_references, related_verses
from bibleqa.retrieval import verse_index
from bibleqa.scripture import format_verse_id, verse_ids
from bibleqa.tsk import cross_references

# Two cited verses that share TSK neighbours (the ark), then a retrieved verse about something else.
REFERENCES = ["Genesis 6:14", "Hebrews 11:7", "Exodus 2:3"]
QUERY = "Who built the ark? Noah"


def documented_order(references: list[str], query: str) -> list[int]:
    """The rule of ``bibleqa.related``'s docstring, computed from the TSK and BM25 directly."""
    rank_of: dict[int, int] = {}
    for rank, reference in enumerate(references):
        for verse in verse_ids(reference):
            rank_of.setdefault(verse, rank)
    neighbours = {target for verse in rank_of for target in cross_references(verse)} - set(rank_of)
    votes = {target: sum(target in cross_references(verse) for verse in rank_of) for target in neighbours}
    source_rank = {
        target: min(rank for verse, rank in rank_of.items() if target in cross_references(verse))
        for target in neighbours
    }
    bm25 = verse_index().scores(query, neighbours | set(rank_of))
    best = max(bm25[target] for target in neighbours) or 1.0  # a query with no indexed word: all 0
    best_source = max(bm25[verse] for verse in rank_of) or 1.0
    source_similarity = {
        target: max(bm25[verse] for verse in rank_of if target in cross_references(verse)) / best_source
        for target in neighbours
    }
    score = {
        target: bm25[target] / best
        + 0.5 * (votes[target] - 1)
        + 0.75 * source_similarity[target]
        - 0.25 * source_rank[target]
        for target in neighbours
    }
    return sorted(neighbours, key=lambda target: (-score[target], target))


# Samson's death first (it matches nothing in the question), then the ark: both list Matthew 24:38.
OFF_TOPIC_FIRST = ["Judges 16:30", "Genesis 6:14"]


@pytest.mark.parametrize("references", [REFERENCES, OFF_TOPIC_FIRST], ids=["ark", "off-topic-first"])
def test_the_expansion_is_the_tsk_neighbours_of_the_cited_verses_in_the_documented_order(references):
    sources = {verse for reference in references for verse in verse_ids(reference)}
    neighbours = {target for verse in sources for target in cross_references(verse)} - sources
    expected = documented_order(references, QUERY)
    assert len(neighbours) > 20  # a real test of the order: the verses have many neighbours

    found = related_verses(references, QUERY, limit=1000)
    assert found == expected
    assert set(found) == neighbours
    assert len(found) == len(set(found))  # no duplicates
    assert not set(found) & sources  # none of the program's own verses
    assert related_verses(references, QUERY, limit=7) == expected[:7]
    assert related_references(references, QUERY, limit=3) == [format_verse_id(verse) for verse in expected[:3]]


@pytest.mark.parametrize("limit", [0, -3])
def test_no_limit_no_passages(limit):
    assert related_verses(REFERENCES, QUERY, limit=limit) == []


def test_references_wider_than_five_verses_and_nonsense_are_not_expanded():
    assert related_verses(["Genesis 6", "not a reference"], QUERY, limit=10) == []
    assert related_verses([], QUERY, limit=10) == []


def test_a_query_without_indexed_words_ranks_by_votes_and_source_order():
    found = related_verses(REFERENCES, "?!", limit=1000)
    assert len(found) > 40 and found == documented_order(REFERENCES, "?!")
