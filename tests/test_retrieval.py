"""bibleqa.retrieval: BM25 over every KJV verse finds a verse from its own words."""

from __future__ import annotations

from collections import Counter

import pytest

from bibleqa.retrieval import retrieve
from bibleqa.scripture import format_verse_id, kjv_verses

VERSES = kjv_verses()
TEXT_COUNTS = Counter(VERSES.values())
# Every 1500th verse, from Genesis to Revelation, whose text occurs only once in the KJV.
QUOTED = [verse_id for verse_id in list(VERSES)[::1500] if TEXT_COUNTS[VERSES[verse_id]] == 1]


def test_the_index_holds_every_verse():
    assert len(VERSES) == 31102
    assert len(QUOTED) >= 20


@pytest.mark.parametrize("verse_id", QUOTED, ids=format_verse_id)
def test_a_verbatim_quotation_finds_its_verse_first(verse_id):
    [best] = retrieve(VERSES[verse_id], k=1)
    assert best.verse_id == verse_id
    assert best.reference == format_verse_id(verse_id)
    assert best.text == VERSES[verse_id]


def test_results_are_the_best_k_in_order():
    passages = retrieve("Noah built an ark of gopher wood", k=5)
    assert len(passages) == 5
    assert [passage.score for passage in passages] == sorted((passage.score for passage in passages), reverse=True)
    assert all(passage.score > 0 for passage in passages)
    assert passages[0].reference == "Genesis 6:14"  # "Make thee an ark of gopher wood"


def test_nothing_to_search_for_finds_nothing():
    assert retrieve("Jesus wept", k=0) == []
    assert retrieve("   ", k=3) == []
    assert retrieve("the and of", k=3) == []  # stop words only
    assert retrieve("qwertyuiop zxcvbnm", k=3) == []  # no verse has these words
