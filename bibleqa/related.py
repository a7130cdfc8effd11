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

    score = similarity
            + VOTE_WEIGHT * (votes - 1)                       # 0.5
            + SOURCE_SIMILARITY_WEIGHT * source_similarity    # 0.75
            - SOURCE_RANK_WEIGHT * source_rank                # 0.25

- ``similarity``: the BM25 score of the candidate's KJV text for the question and the program's answer,
  divided by the best candidate's (so it lies in [0, 1] for every question);
- ``votes``: how many sources list the candidate in the TSK;
- ``source_similarity``: the same normalised BM25 similarity, of the best source that lists it: a
  source that has nothing to do with the question (an LM citing at random) vouches for little;
- ``source_rank``: the smallest source rank among the sources that list it.

Candidates are ranked by score, best first; ties go to canonical (book, chapter, verse) order.

How it was chosen
-----------------
On the train split only, against its rule-derived gold, with ``bench/related_passages.py
--lm-references bench/lm_references_train.jsonl`` (its docstring has the command; retrieval_k 3), in
three scenarios for the program's references and answer: ``bm25``, the BM25 top 3 alone (an LM that
cites nothing, answer unknown; 393 questions); ``cited``, the item's own verses then the BM25 top 3, with
the gold answer (a perfect LM; 393); ``lm``, what the bundled LM really cited and answered (160).  The
rule is the one with the best mean train ``cross_reference_recall`` over the three scenarios at 10 and
15 related passages; below, that mean, then (bm25, cited, lm) recall at 10:

- TSK's own order (each source's list in turn), the baseline: 0.456 (0.290, 0.594, 0.344).
- The chosen rule: 0.627 (0.354, 0.870, 0.576).
- Similarity is the main signal: similarity alone gives 0.563 (0.313, 0.739, 0.527); with the question
  only, not the answer, the chosen rule falls to 0.536 (0.354, 0.585, 0.559).
- Source rank 0.25: weight 0 gives 0.604, 0.5 gives 0.620, strict source order (100) 0.579 (0.329,
  0.881, 0.429): an LM's first citation is often wrong, so it must not take every place.
- Source similarity 0.75: weight 0 gives 0.614 (0.347, 0.871, 0.534); 0.5 and 1.0 give 0.626.
- Votes 0.5: weight 0 gives 0.623, 1.0 gives 0.625.
- Left out, because they did not help: whether the candidate links back to a source (+0.25 per link:
  0.618), and whether it lies in a source's chapter (+/-0.25: 0.624 and 0.622).

Beware: train gold is derived by a rule that itself prefers candidates listed by several of the item's
verses and sharing words with its question and answer (``scripts/derive_cross_references.py``), so votes
and similarity look better on train than they can on the hand-curated dev and test gold.  And on the
``lm`` questions the bundled LM's citations buy nothing: the BM25 top 3 alone reach 0.580 at 10.

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
SOURCE_SIMILARITY_WEIGHT = 0.75
"""Score per unit of similarity of the candidate's best source to the query (train-tuned)."""
SOURCE_RANK_WEIGHT = 0.25
"""Score lost per position of the candidate's first source in the program's references (train-tuned)."""


@dataclass(frozen=True)
class Candidate:
    """One TSK neighbour of the program's verses, with what the rule reads."""

    verse_id: int
    votes: int
    source_rank: int
    similarity: float
    source_similarity: float

    @property
    def score(self) -> float:
        """The rule's score: higher ranks first."""
        return (
            self.similarity
            + VOTE_WEIGHT * (self.votes - 1)
            + SOURCE_SIMILARITY_WEIGHT * self.source_similarity
            - SOURCE_RANK_WEIGHT * self.source_rank
        )


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
    with what the rule reads (see ``Candidate`` and the module docstring)."""
    sources = source_verses(references)
    source_similarity = _normalised(verse_index().scores(query, sources))
    votes: dict[int, int] = {}
    first_source: dict[int, int] = {}
    best_source: dict[int, float] = {}
    for verse, rank in sources.items():
        for target in cross_references(verse):
            if target in sources:
                continue
            votes[target] = votes.get(target, 0) + 1
            first_source[target] = min(first_source.get(target, rank), rank)
            best_source[target] = max(best_source.get(target, 0.0), source_similarity[verse])
    targets = sorted(votes)
    similarity = _normalised(verse_index().scores(query, targets))
    return [
        Candidate(target, votes[target], first_source[target], similarity[target], best_source[target])
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


def _normalised(scores: dict[int, float]) -> dict[int, float]:
    """``scores`` divided by the best of them: in [0, 1], all 0 when none is positive."""
    best = max(scores.values(), default=0.0)
    return {verse: score / best if best > 0 else 0.0 for verse, score in scores.items()}


def related_references(references: Sequence[str], query: str, limit: int) -> list[str]:
    """``related_verses`` as canonical single-verse references ("Hebrews 11:7"), best first."""
    return [format_verse_id(verse) for verse in related_verses(references, query, limit)]
