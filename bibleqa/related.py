"""Related passages: the TSK neighbours of the verses the program cites, ranked by one rule, cut to a count.

Place in the data flow: ``BibleQA.forward`` retrieves verses, the LM answers and cites, and the program's
references are the LM-cited ones followed by the retrieved ones.  ``related_references`` then expands those
references through the Treasury of Scripture Knowledge (``bibleqa.tsk``, the whole TSK) and returns the best
``limit`` neighbours, which the program appends after them (the ``related_passages`` knob; 0 turns the step
off).  No LM call, nothing random: the same references, question and answer give the same list.

The rule
--------
The *sources* are the verses of the program's references, each with its *source rank*, the position of
its reference in the program's list (LM-cited first, in the LM's order, then the retrieved verses in BM25
order).  A reference wider than ``MAX_SOURCE_VERSES`` verses (a chapter the LM cited) is not expanded:
the metric ignores it too, and a chapter's 30 verses would outvote every other source.  The candidates
are every TSK cross reference of a source that is not itself a source.  Each gets::

    score = similarity + VOTE_WEIGHT * (votes - 1) - SOURCE_RANK_WEIGHT * source_rank

- ``similarity``: the BM25 score of the candidate's KJV text for the question and the program's answer,
  divided by the best candidate's (so it lies in [0, 1] for every question);
- ``votes``: how many sources list the candidate in the TSK;
- ``source_rank``: the smallest source rank among the sources that list it.

Candidates are ranked by score, best first; ties go to canonical (book, chapter, verse) order.

Each choice was measured on the train split only, against its rule-derived gold, by
``bench/related_passages.py`` (the table and the command are in its docstring), in two scenarios: the
program cites only its BM25 top-3 verses (an LM that cites nothing useful, answer unknown), and it cites
the item's true verses with the gold answer (a perfect LM).  Figures are train ``cross_reference_recall``
at 10 related passages, (BM25-only scenario, perfect-LM scenario):

- TSK's own order (canonical order per source, sources in turn), the baseline: (0.290, 0.605).
- Similarity matters most: ranking each source's neighbours by similarity instead of canonical order
  gives (0.330, 0.725) with the question alone, (0.330, 0.817) with the answer added.
- ``SOURCE_RANK_WEIGHT`` 0.5: neighbours of the first references come first, but a strong match of a
  later source can beat a weak one of an earlier source.  Weight 0 gives (0.313, 0.741); strict source
  order (weight 100) (0.329, 0.905); 0.5 gives (0.347, 0.898) and 1.0 gives (0.335, 0.906).
- ``VOTE_WEIGHT`` 0.5: a candidate listed by several sources is about what they share.  Weight 0
  (with rank weight 0.5) gives (0.347, 0.883); 0.5 gives (0.347, 0.898); 1.0 gives (0.345, 0.892).
- Left out, because they did not help: whether the candidate links back to a source (weight 0.25 on
  it: (0.324, 0.868); it favours verses that cross-reference everything), and whether it lies in a
  source's chapter (within 0.003 either way).

Beware: train gold is derived by a rule that itself prefers candidates sharing words with the question
and answer (``scripts/derive_cross_references.py``), so similarity looks better on train than it can on
the hand-curated dev and test gold.

Example::

    >>> from bibleqa.related import related_references
    >>> related_references(["Genesis 6:14"], "Who built the ark? Noah", limit=3)
    ['1 Peter 3:20', 'Matthew 24:38', 'Luke 17:27']
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from bibleqa.retrieval import verse_index
from bibleqa.scripture import format_verse_id, verse_ids
from bibleqa.tsk import cross_references

logger = logging.getLogger(__name__)

DEFAULT_RELATED_PASSAGES = 15
"""The ``related_passages`` knob's default.  With 3 retrieved and 1-2 cited verses, 15 related ones fill
the 20 verses that recall counts: on train, recall gains 0.04-0.07 from 10 to 15 and under 0.01 from 15
to 20, while precision keeps falling (``bench/related_passages.py``)."""
MAX_SOURCE_VERSES = 5
"""A reference wider than this many verses is not expanded (the metric's ``MAX_REFERENCE_VERSES``)."""
VOTE_WEIGHT = 0.5
"""Score per extra source that lists a candidate (train-tuned; see the module docstring)."""
SOURCE_RANK_WEIGHT = 0.5
"""Score lost per position of the candidate's first source in the program's references (train-tuned)."""


@dataclass(frozen=True)
class Candidate:
    """One TSK neighbour of the program's verses, with what the rule reads."""

    verse_id: int
    votes: int
    source_rank: int
    similarity: float

    @property
    def score(self) -> float:
        """The rule's score: higher ranks first."""
        return self.similarity + VOTE_WEIGHT * (self.votes - 1) - SOURCE_RANK_WEIGHT * self.source_rank


def source_verses(references: Sequence[str]) -> dict[int, int]:
    """``{verse_id: source rank}`` of the verses of ``references`` that are expanded, in their order.

    A verse's source rank is the position of the first reference that names it; references that name no
    verse, or more than ``MAX_SOURCE_VERSES``, are skipped.
    """
    sources: dict[int, int] = {}
    for rank, reference in enumerate(references):
        verses = verse_ids(reference, strict=False)
        if len(verses) > MAX_SOURCE_VERSES:
            continue
        for verse in verses:
            sources.setdefault(verse, rank)
    return sources


def candidates(references: Sequence[str], query: str) -> list[Candidate]:
    """Every TSK neighbour of the verses of ``references`` that is not one of them, in canonical order,
    with its votes, source rank and BM25 similarity to ``query`` (normalised by the best candidate's)."""
    sources = source_verses(references)
    votes: dict[int, int] = {}
    first_source: dict[int, int] = {}
    for verse, rank in sources.items():
        for target in cross_references(verse):
            if target in sources:
                continue
            votes[target] = votes.get(target, 0) + 1
            first_source[target] = min(first_source.get(target, rank), rank)
    if not votes:
        return []
    targets = sorted(votes)
    bm25 = verse_index().scores(query, targets)
    best = max(bm25.values())
    return [
        Candidate(target, votes[target], first_source[target], bm25[target] / best if best > 0 else 0.0)
        for target in targets
    ]


def rank_candidates(found: Sequence[Candidate]) -> list[Candidate]:
    """``found`` by the rule: score, best first, then canonical order."""
    return sorted(found, key=lambda candidate: (-candidate.score, candidate.verse_id))


def related_verses(references: Sequence[str], query: str, limit: int) -> list[int]:
    """The best ``limit`` TSK neighbours of ``references``' verses for ``query``, as verse ids, best first.

    Never a verse of an expanded reference, never twice; [] for ``limit <= 0``.
    """
    if limit <= 0:
        return []
    return [candidate.verse_id for candidate in rank_candidates(candidates(references, query))[:limit]]


def related_references(references: Sequence[str], query: str, limit: int) -> list[str]:
    """``related_verses`` as canonical single-verse references ("Hebrews 11:7"), best first."""
    return [format_verse_id(verse) for verse in related_verses(references, query, limit)]
