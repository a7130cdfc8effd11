"""Re-draw the fixed train/dev/test splits of ``bibleqa/data/qa.jsonl`` so that no split leaks into another.

    .venv/bin/python scripts/resplit.py

A developer runs this by hand, once, after adding or editing items; CI never does.  It rewrites the
``split`` field of ``qa.jsonl`` in place and prints every group it had to move.

The rule:

1. Two items are *linked* when
   a. they cite verses of the same chapter at most ``NEAR_VERSES`` verses apart (the same verse included):
      they are about one passage, so one would teach the other's answer; or
   b. one's question, with its Bible references removed, contains the other's gold answer or an alias
      (at most 4 words, as whole words), and the two cite the same book within ``NEAR_CHAPTERS``
      chapters: the question gives the answer away ("Who thrust three darts through the heart of
      Absalom?" gives away "Which son of David was caught by his head in an oak?").
2. Linked items form groups (connected components).  A whole group goes to one split: the split most of
   its items already had; on a tie test, then dev, then train, so the evaluation splits do not shrink.
3. Dev and test are topped up to ``PER_CATEGORY`` items of each category with items that link to
   nothing, drawn from train by a seeded shuffle.  A split may hold more than that when a group needs it.

``tests/test_dataset.py`` checks the outcome from the data itself: no verse cited by a dev or test item is
cited by a train item, and no question gives away another split's answer.
"""

from __future__ import annotations

import collections
import json
import random
import re
from collections.abc import Iterable

from bibleqa.dataset import bundled_data_path
from bibleqa.scripture import verse_ids
from bibleqa.text import tokens

NEAR_VERSES = 2
NEAR_CHAPTERS = 5
PER_CATEGORY = 32
SEED = 6
TIE_ORDER = ("test", "dev", "train")

# "Matthew 6:9-10", "1 Peter 2:9", "Song of Solomon 2:4": a book name followed by a chapter (and verses).
REFERENCE_IN_TEXT = re.compile(r"\b(?:[1-3]\s)?[A-Z][a-z]+(?:\s(?:of\s)?[A-Z][a-z]+)*\s\d+(?::\d+(?:[-–]\d+)?)?")


def cited_verses(item: dict) -> set[int]:
    return {verse for reference in item["references"] for verse in verse_ids(reference)}


def same_passage(a: set[int], b: set[int]) -> bool:
    return any(x // 1000 == y // 1000 and abs(x - y) <= NEAR_VERSES for x in a for y in b)


def near_chapters(a: set[int], b: set[int]) -> bool:
    return any(
        x // 1_000_000 == y // 1_000_000 and abs(x // 1000 % 1000 - y // 1000 % 1000) <= NEAR_CHAPTERS
        for x in a
        for y in b
    )


def gives_away(question: str, golds: Iterable[str]) -> str | None:
    """The gold (answer or alias) that ``question``, without its references, states; None if none."""
    text = f" {' '.join(tokens(REFERENCE_IN_TEXT.sub(' ', question)))} "
    for gold in golds:
        words = tokens(gold)
        if words and len(words) <= 4 and f" {' '.join(words)} " in text:
            return gold
    return None


def links(items: list[dict]) -> dict[str, set[str]]:
    """``{item id: ids of the items it is linked to}`` by rule 1."""
    verses = {item["id"]: cited_verses(item) for item in items}
    linked: dict[str, set[str]] = collections.defaultdict(set)
    for a in items:
        for b in items:
            if a is b:
                continue
            va, vb = verses[a["id"]], verses[b["id"]]
            if same_passage(va, vb) or (
                near_chapters(va, vb) and gives_away(a["question"], [b["answer"], *b["aliases"]])
            ):
                linked[a["id"]].add(b["id"])
                linked[b["id"]].add(a["id"])
    return linked


def groups(items: list[dict], linked: dict[str, set[str]]) -> list[list[str]]:
    seen: set[str] = set()
    found = []
    for item in items:
        if item["id"] in seen:
            continue
        group, todo = [], [item["id"]]
        seen.add(item["id"])
        while todo:
            current = todo.pop()
            group.append(current)
            for other in sorted(linked.get(current, ())):
                if other not in seen:
                    seen.add(other)
                    todo.append(other)
        found.append(sorted(group))
    return found


def main() -> None:
    path = bundled_data_path()
    items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    by_id = {item["id"]: item for item in items}
    linked = links(items)
    for group in groups(items, linked):
        votes = collections.Counter(by_id[item_id]["split"] for item_id in group)
        split = max(TIE_ORDER, key=lambda name: (votes[name], -TIE_ORDER.index(name)))
        moved = [item_id for item_id in group if by_id[item_id]["split"] != split]
        if moved:
            print(f"group {', '.join(group)} -> {split} (moved {', '.join(moved)})")
        for item_id in group:
            by_id[item_id]["split"] = split

    rng = random.Random(SEED)
    free = [item for item in items if item["split"] == "train" and not linked.get(item["id"])]
    rng.shuffle(free)
    for split in ("dev", "test"):
        for category in ("factual", "doctrinal"):
            have = sum(item["split"] == split and item["category"] == category for item in items)
            for item in [item for item in free if item["category"] == category][: max(0, PER_CATEGORY - have)]:
                item["split"] = split
                free.remove(item)
                print(f"{item['id']} train -> {split} (top-up)")

    path.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items), encoding="utf-8")
    counts = collections.Counter((item["split"], item["category"]) for item in items)
    print(", ".join(f"{split} {category} {counts[split, category]}" for split in TIE_ORDER[::-1]
                    for category in ("factual", "doctrinal")))  # fmt: skip


if __name__ == "__main__":
    main()
