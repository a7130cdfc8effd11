"""Train-split cross_reference_recall of the related-passages step, per ranking rule and per ``related_passages``.

    PYTHONPATH=. .venv/bin/python bench/related_passages.py                 # train, retrieval_k 3 (~1 min)
    PYTHONPATH=. .venv/bin/python bench/related_passages.py --retrieval-k 5

No LM: the program's references are simulated in two scenarios, exactly as ``BibleQA.forward`` assembles
them (``bibleqa.program.program_references``):

- ``bm25``: the LM cites nothing and its answer is unknown; the references are the BM25 top-``retrieval_k``
  verses, and the similarity query is the question alone;
- ``cited``: a perfect LM, which cites the item's own ``references`` and answers with the gold answer;
  the retrieved verses follow its citations.

Both score against the split's gold ``cross_references``.  The ranking rule was chosen on ``--split
train`` only (rule-derived gold); dev and test hold the hand-curated gold and are for reporting after
the fact.  Prints two tables:

1. recall at 5, 10 and 15 related passages for candidate rules (the chosen one is computed by
   ``bibleqa.related`` itself; the variants re-weight its candidates' features here);
2. the chosen rule for several ``related_passages``: recall (the metric itself, split into questions
   that name a verse, ``\\d+:\\d+``, and those that don't) and precision.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

os.environ.setdefault("TQDM_DISABLE", "1")

import dspy

from bibleqa.dataset import QAItem, load_dataset
from bibleqa.metrics import MAX_COUNTED_VERSES, MAX_REFERENCE_VERSES, cross_reference_precision, cross_reference_recall
from bibleqa.program import program_references
from bibleqa.related import Candidate, candidates, source_verses
from bibleqa.retrieval import retrieve
from bibleqa.scripture import format_verse_id, verse_ids
from bibleqa.tsk import cross_references

NAMES_A_VERSE = re.compile(r"\d+:\d+")
SCENARIOS = ("bm25", "cited")
RULE_COUNTS = (5, 10, 15)
KNOB_VALUES = (0, 5, 10, 15, 20)


@dataclass(frozen=True)
class Case:
    """One question in one scenario: the references before the related step, the query, the candidates."""

    item: QAItem
    base: list[str]
    query: str
    found: list[Candidate]
    links_back: dict[int, int]
    near: dict[int, bool]
    gold: frozenset[int]


def build_case(item: QAItem, scenario: str, retrieval_k: int) -> Case:
    retrieved = [passage.reference for passage in retrieve(item.question, retrieval_k)]
    cited = list(item.references) if scenario == "cited" else []
    query = f"{item.question} {item.answer}" if scenario == "cited" else item.question
    base = list(dict.fromkeys([*cited, *retrieved]))
    sources = source_verses(base)
    found = candidates(base, query)
    links_back = {c.verse_id: sum(verse in sources for verse in cross_references(c.verse_id)) for c in found}
    chapters = {verse // 1000 for verse in sources}
    near = {c.verse_id: c.verse_id // 1000 in chapters for c in found}
    gold = frozenset(verse for reference in item.cross_references for verse in verse_ids(reference))
    return Case(item, base, query, found, links_back, near, gold)


@functools.cache
def _verses(reference: str) -> tuple[int, ...]:
    return verse_ids(reference, strict=False)


def fast_recall(case: Case, related: list[int]) -> float:
    """``cross_reference_recall`` of ``case.base`` + ``related`` without re-parsing every reference (the
    metric's rule: the first ``MAX_COUNTED_VERSES`` verses of references at most ``MAX_REFERENCE_VERSES``
    wide); checked against the metric itself in ``main``."""
    counted: dict[int, None] = {}
    for reference in case.base:
        verses = _verses(reference)
        if len(verses) <= MAX_REFERENCE_VERSES:
            counted.update(dict.fromkeys(verses))
    counted.update(dict.fromkeys(related))
    return len(case.gold & set(list(counted)[:MAX_COUNTED_VERSES])) / len(case.gold)


Weights = dict[str, float]


def weighted(weights: Weights) -> Callable[[Case], list[int]]:
    """A variant rule: score = similarity + votes*(votes-1) - rank*source_rank + back*links_back + near*near."""

    def rank(case: Case) -> list[int]:
        def score(c: Candidate) -> float:
            return (
                weights.get("similarity", 1.0) * c.similarity
                + weights.get("votes", 0.0) * (c.votes - 1)
                - weights.get("rank", 0.0) * c.source_rank
                + weights.get("back", 0.0) * case.links_back[c.verse_id]
                + weights.get("near", 0.0) * case.near[c.verse_id]
            )

        return [c.verse_id for c in sorted(case.found, key=lambda c: (-score(c), c.verse_id))]

    return rank


def chosen(case: Case) -> list[int]:
    """The program's own rule (``bibleqa.related``), with enough passages to cover every count."""
    references = program_references(case.base, [], case.query, max(KNOB_VALUES))
    return [verse_ids(reference)[0] for reference in references[len(case.base) :]]


RULES: dict[str, Callable[[Case], list[int]]] = {
    "TSK order (sources in turn)": lambda case: [
        c.verse_id for c in sorted(case.found, key=lambda c: (c.source_rank, c.verse_id))
    ],
    "votes, then TSK order": lambda case: [
        c.verse_id for c in sorted(case.found, key=lambda c: (-c.votes, c.source_rank, c.verse_id))
    ],
    "similarity only": weighted({}),
    "sources in turn, by similarity": weighted({"rank": 100}),
    "sim - 0.5 rank (no votes)": weighted({"rank": 0.5}),
    "sim + 0.5 votes (no rank)": weighted({"votes": 0.5}),
    "sim + 0.5 votes - 0.25 rank": weighted({"votes": 0.5, "rank": 0.25}),
    "CHOSEN sim + 0.5 votes - 0.5 rank": chosen,
    "sim + 0.5 votes - 1.0 rank": weighted({"votes": 0.5, "rank": 1.0}),
    "sim + 0.5 votes, sources in turn": weighted({"votes": 0.5, "rank": 100}),
    "sim + 1.0 votes - 0.5 rank": weighted({"votes": 1.0, "rank": 0.5}),
    "sim + 0.25 votes - 0.5 rank": weighted({"votes": 0.25, "rank": 0.5}),
    "chosen + 0.25 links back": weighted({"votes": 0.5, "rank": 0.5, "back": 0.25}),
    "chosen + 0.25 same chapter": weighted({"votes": 0.5, "rank": 0.5, "near": 0.25}),
    "chosen - 0.25 same chapter": weighted({"votes": 0.5, "rank": 0.5, "near": -0.25}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="train", choices=("train", "dev", "test"))
    parser.add_argument("--retrieval-k", type=int, default=3)
    args = parser.parse_args()
    started = time.perf_counter()
    items = load_dataset().by_split[args.split]
    cases = {scenario: [build_case(item, scenario, args.retrieval_k) for item in items] for scenario in SCENARIOS}

    print(f"## {args.split} ({len(items)} questions), retrieval_k {args.retrieval_k}: cross_reference_recall by rule")
    print(f"{'rule':<36} | " + " | ".join(f"{s} @{n:<2}" for s in SCENARIOS for n in RULE_COUNTS))
    for name, rule in RULES.items():
        cells = []
        for scenario in SCENARIOS:
            ranked = [rule(case) for case in cases[scenario]]
            for n in RULE_COUNTS:
                recall = sum(fast_recall(case, r[:n]) for case, r in zip(cases[scenario], ranked, strict=True))
                cells.append(f"{recall / len(items):8.3f}")
        print(f"{name:<36} | " + " | ".join(cells), flush=True)

    print(f"\n## {args.split}: the chosen rule by related_passages (the metrics themselves)")
    print("scenario | related_passages | recall | recall (names a verse) | recall (no verse) | precision")
    for scenario in SCENARIOS:
        ranked = [chosen(case) for case in cases[scenario]]
        for n in KNOB_VALUES:
            recalls, names, precision = [], [], 0.0
            for case, verses in zip(cases[scenario], ranked, strict=True):
                example = case.item.to_example()
                pred = dspy.Prediction(references=case.base + [format_verse_id(verse) for verse in verses[:n]])
                recall = cross_reference_recall(example, pred)
                assert abs(recall - fast_recall(case, verses[:n])) < 1e-9, case.item.id
                recalls.append(recall)
                names.append(bool(NAMES_A_VERSE.search(case.item.question)))
                precision += cross_reference_precision(example, pred) / len(items)
            named = [r for r, flag in zip(recalls, names, strict=True) if flag]
            unnamed = [r for r, flag in zip(recalls, names, strict=True) if not flag]
            print(
                f"{scenario} | {n} | {sum(recalls) / len(recalls):.3f} | "
                f"{sum(named) / max(1, len(named)):.3f} (n={len(named)}) | "
                f"{sum(unnamed) / max(1, len(unnamed)):.3f} (n={len(unnamed)}) | {precision:.3f}",
                flush=True,
            )
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
