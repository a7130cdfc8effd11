"""BM25 retrieval over all 31,102 KJV verses (``bm25s``, Snowball-stemmed, English stop words).

The index is built once per process (about a second) and shared by every program in it; nothing about
it is stored on the program, so a pickled program stays small.

Example::

    >>> from bibleqa.retrieval import retrieve
    >>> [passage.reference for passage in retrieve("Jesus wept", k=1)]
    ['John 11:35']
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from bibleqa.scripture import format_verse_id, kjv_verses
from bibleqa.text import stemmer

logger = logging.getLogger(__name__)

_index_lock = threading.Lock()


@dataclass(frozen=True)
class Passage:
    """One retrieved verse."""

    verse_id: int
    reference: str
    text: str
    score: float


class VerseIndex:
    """A BM25 index of KJV verses."""

    def __init__(self) -> None:
        import bm25s

        started = time.perf_counter()
        verses = kjv_verses()
        self._ids = list(verses)
        self._positions = {verse_id: position for position, verse_id in enumerate(self._ids)}
        self._texts = list(verses.values())
        self._bm25s = bm25s
        self._retriever = bm25s.BM25()
        self._retriever.index(self._tokenize(self._texts), show_progress=False)
        logger.info("indexed %d KJV verses in %.2f s", len(self._ids), time.perf_counter() - started)

    def _tokenize(self, texts: list[str]):
        return self._bm25s.tokenize(texts, stopwords="en", stemmer=stemmer(), show_progress=False)

    def search(self, query: str, k: int) -> list[Passage]:
        """The ``k`` best verses for ``query``, best first ([] for ``k <= 0`` or a query with no terms)."""
        if k <= 0 or not query.strip():
            return []
        query_tokens = self._tokenize([query])
        if not any(query_tokens.ids):
            return []
        documents, scores = self._retriever.retrieve(query_tokens, k=min(k, len(self._ids)), show_progress=False)
        passages = []
        for position, score in zip(documents[0], scores[0], strict=True):
            if score <= 0:
                continue
            verse_id = self._ids[int(position)]
            passages.append(Passage(verse_id, format_verse_id(verse_id), self._texts[int(position)], float(score)))
        return passages

    def scores(self, query: str, verse_ids: Iterable[int]) -> dict[int, float]:
        """The BM25 score of each of ``verse_ids`` for ``query``: 0.0 for a verse that shares no term with it
        (or for every verse, when ``query`` has no indexed term).  Unknown verse ids raise ``KeyError``."""
        wanted = list(verse_ids)
        positions = [self._positions[verse_id] for verse_id in wanted]
        terms = self._retriever.get_tokens_ids(self._tokenize_terms(query))
        if not terms or not wanted:
            return dict.fromkeys(wanted, 0.0)
        every = self._retriever.get_scores(terms)
        return {verse_id: float(every[position]) for verse_id, position in zip(wanted, positions, strict=True)}

    def _tokenize_terms(self, text: str) -> list[str]:
        return self._bm25s.tokenize([text], stopwords="en", stemmer=stemmer(), return_ids=False, show_progress=False)[0]


@functools.lru_cache(maxsize=1)
def _shared_index() -> VerseIndex:
    return VerseIndex()


def verse_index() -> VerseIndex:
    """The process-wide index, built on first use (thread-safe)."""
    with _index_lock:
        return _shared_index()


def retrieve(query: str, k: int) -> list[Passage]:
    """The ``k`` KJV verses that BM25 ranks best for ``query``."""
    return verse_index().search(query, k) if k > 0 else []
