"""Train-split cross_reference_recall of the related-passages step, per ranking rule and per ``related_passages``.

    PYTHONPATH=. .venv/bin/python bench/related_passages.py --lm-references bench/lm_references_train.jsonl
    PYTHONPATH=. .venv/bin/python bench/related_passages.py --retrieval-k 5      # without the lm scenario

(about 2 minutes on one core).
No LM: the program's references are simulated in two scenarios, exactly as ``BibleQA.forward`` assembles
them (``bibleqa.program.program_references``):

- ``bm25``: the LM cites nothing and its answer is unknown; the references are the BM25 top-``retrieval_k``
  verses, and the similarity query is the question alone;
- ``cited``: a perfect LM, which cites the item's own ``references`` and answers with the gold answer;
  the retrieved verses follow its citations;
- ``lm`` (with ``--lm-references FILE``): what the bundled LM really answered and cited on 160 train
  questions (``bench/lm_references_train.jsonl``, recorded by ``bench/lm_references.py``); only they are
  scored in this scenario, and ``bm25 on lm's`` scores the same questions with the LM's citations and
  answer ignored.

Both score against the split's gold ``cross_references``.  The ranking rule was chosen on ``--split
train`` only (rule-derived gold); dev and test hold the hand-curated gold and are for reporting after
the fact.  Prints two tables:

1. recall at 10 and 15 related passages for candidate rules (the chosen one is computed by
   ``bibleqa.related`` itself; the variants re-weight its candidates' features here), and the mean over
   the ``bm25``, ``cited`` and ``lm`` scenarios at both counts, by which the rule was chosen;
2. the chosen rule for several ``related_passages``: recall (the metric itself, split into questions
   that name a verse, ``\\d+:\\d+``, and those that don't) and precision.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import dspy

from bibleqa.dataset import QAItem, load_dataset
from bibleqa.metrics import MAX_COUNTED_VERSES, MAX_REFERENCE_VERSES, cross_reference_precision, cross_reference_recall
from bibleqa.program import program_references
from bibleqa.related import (
    SOURCE_RANK_WEIGHT,
    SOURCE_SIMILARITY_WEIGHT,
    VOTE_WEIGHT,
    Candidate,
    candidates,
    related_verses,
    source_verses,
)
from bibleqa.retrieval import retrieve
from bibleqa.scripture import format_verse_id, verse_ids
from bibleqa.tsk import cross_references

NAMES_A_VERSE = re.compile(r"\d+:\d+")
SCENARIOS = ("bm25", "cited")
LM_SCENARIO = "lm"
RULE_COUNTS = (10, 15)
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


def build_case(item: QAItem, scenario: str, retrieval_k: int, recorded: dict | None = None) -> Case:
    if scenario == LM_SCENARIO:
        base, query = list(recorded["references"]), f"{item.question} {recorded['answer']}"
    else:
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


CHOSEN: Weights = {"votes": VOTE_WEIGHT, "source": SOURCE_SIMILARITY_WEIGHT, "rank": SOURCE_RANK_WEIGHT}


def weighted(weights: Weights) -> Callable[[Case], list[int]]:
    """A variant rule: score = similarity + votes*(votes-1) + source*source_similarity - rank*source_rank
    + back*links_back + near*near (the chosen rule has back = near = 0)."""

    def rank(case: Case) -> list[int]:
        def score(c: Candidate) -> float:
            return (
                c.similarity
                + weights.get("votes", 0.0) * (c.votes - 1)
                + weights.get("source", 0.0) * c.source_similarity
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
    "sim + 0.5 votes - 0.5 rank": weighted({"votes": 0.5, "rank": 0.5}),
    "CHOSEN (0.5 votes, 0.75 source, 0.25 rank)": chosen,
    "chosen, question only (no answer)": lambda case: related_verses(case.base, case.item.question, max(KNOB_VALUES)),
    "chosen, votes 0": weighted(CHOSEN | {"votes": 0.0}),
    "chosen, votes 1.0": weighted(CHOSEN | {"votes": 1.0}),
    "chosen, source 0": weighted(CHOSEN | {"source": 0.0}),
    "chosen, source 0.5": weighted(CHOSEN | {"source": 0.5}),
    "chosen, source 1.0": weighted(CHOSEN | {"source": 1.0}),
    "chosen, rank 0": weighted(CHOSEN | {"rank": 0.0}),
    "chosen, rank 0.5": weighted(CHOSEN | {"rank": 0.5}),
    "chosen, sources in turn (rank 100)": weighted(CHOSEN | {"rank": 100}),
    "chosen + 0.25 links back": weighted(CHOSEN | {"back": 0.25}),
    "chosen + 0.25 same chapter": weighted(CHOSEN | {"near": 0.25}),
    "chosen - 0.25 same chapter": weighted(CHOSEN | {"near": -0.25}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="train", choices=("train", "dev", "test"))
    parser.add_argument("--retrieval-k", type=int, default=3)
    parser.add_argument("--lm-references", type=Path, help="JSONL from bench/lm_references.py: adds scenario lm")
    args = parser.parse_args()
    started = time.perf_counter()
    items = load_dataset().by_split[args.split]
    cases = {scenario: [build_case(item, scenario, args.retrieval_k) for item in items] for scenario in SCENARIOS}
    if args.lm_references:
        lines = args.lm_references.read_text(encoding="utf-8").splitlines()
        recorded = {record["id"]: record for record in map(json.loads, lines) if not record.get("error")}
        cases[LM_SCENARIO] = [
            build_case(item, LM_SCENARIO, args.retrieval_k, recorded[item.id]) for item in items if item.id in recorded
        ]
        # The same questions with the LM's citations and answer ignored: what the LM adds, or costs.
        cases[f"bm25 on {LM_SCENARIO}'s"] = [case for case in cases["bm25"] if case.item.id in recorded]
    scenarios = list(cases)
    chosen_by = [scenario for scenario in scenarios if not scenario.startswith("bm25 on")]

    print(f"## {args.split} ({len(items)} questions), retrieval_k {args.retrieval_k}: cross_reference_recall by rule")
    print(", ".join(f"{scenario}: {len(cases[scenario])} questions" for scenario in scenarios))
    print(f"the rule is chosen by the mean of {', '.join(chosen_by)} at {' and '.join(map(str, RULE_COUNTS))}")
    print(f"{'rule':<44} | mean  | " + " | ".join(f"{s} @{n}" for s in scenarios for n in RULE_COUNTS))
    for name, rule in RULES.items():
        cells: dict[tuple[str, int], float] = {}
        for scenario in scenarios:
            ranked = [rule(case) for case in cases[scenario]]
            for n in RULE_COUNTS:
                recall = sum(fast_recall(case, r[:n]) for case, r in zip(cases[scenario], ranked, strict=True))
                cells[scenario, n] = recall / len(cases[scenario])
        chosen_cells = [cells[scenario, n] for scenario in chosen_by for n in RULE_COUNTS]
        mean = sum(chosen_cells) / len(chosen_cells)
        print(f"{name:<44} | {mean:.3f} | " + " | ".join(f"{value:.3f}" for value in cells.values()), flush=True)

    print(f"\n## {args.split}: the chosen rule by related_passages (the metrics themselves)")
    print("scenario | related_passages | recall | recall (names a verse) | recall (no verse) | precision")
    for scenario in scenarios:
        ranked = [chosen(case) for case in cases[scenario]]
        for n in KNOB_VALUES:
            recalls, names, precision = [], [], 0.0
            count = len(cases[scenario])
            for case, verses in zip(cases[scenario], ranked, strict=True):
                example = case.item.to_example()
                pred = dspy.Prediction(references=case.base + [format_verse_id(verse) for verse in verses[:n]])
                recall = cross_reference_recall(example, pred)
                assert abs(recall - fast_recall(case, verses[:n])) < 1e-9, case.item.id
                recalls.append(recall)
                names.append(bool(NAMES_A_VERSE.search(case.item.question)))
                precision += cross_reference_precision(example, pred) / count
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
