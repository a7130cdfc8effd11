"""Derive each train item's ``cross_references`` from the Treasury of Scripture Knowledge, by rule.

    .venv/bin/python scripts/derive_cross_references.py

A developer runs this by hand, once, after editing the train questions; CI never does.  It reads the TSK
shipped with the package (``bibleqa.tsk``) and rewrites the train items of ``bibleqa/data/qa.jsonl`` in
place.  Dev and test cross references are hand-curated instead (``scripts/apply_curation.py``).

The rule, per train item (never the raw TSK list):

1. candidates are the TSK cross references of the item's own verses, minus those verses;
2. a candidate must share at least one content word (stemmed, stop words removed) with the item's
   question, answer and key terms; candidates listed by several of the item's verses rank first, then
   those with more shared words, then canonical order;
3. the best 2-5 are kept.  An item with fewer than 2 such candidates keeps the best TSK candidates by
   rank alone, up to 2.
"""

from __future__ import annotations

import json

from bm25s.stopwords import STOPWORDS_EN

from bibleqa.dataset import bundled_data_path
from bibleqa.scripture import format_verse_id, kjv_verses, verse_ids
from bibleqa.text import stems
from bibleqa.tsk import cross_references

MIN_CROSS_REFERENCES, MAX_CROSS_REFERENCES = 2, 5
STOP_STEMS = set(stems(" ".join(STOPWORDS_EN))) | {"shall", "unto", "thee", "thou", "thy", "ye", "hath", "saith"}


def curate(item: dict) -> list[str]:
    own = {verse for reference in item["references"] for verse in verse_ids(reference)}
    votes: dict[int, int] = {}
    for verse in sorted(own):
        for target in cross_references(verse):
            if target not in own:
                votes[target] = votes.get(target, 0) + 1
    topic = set(stems(" ".join([item["question"], item["answer"], *item["key_terms"]]))) - STOP_STEMS
    overlap = {target: len(topic & set(stems(kjv_verses()[target]))) for target in votes}
    ranked = sorted(votes, key=lambda target: (-votes[target], -overlap[target], target))
    chosen = [target for target in ranked if overlap[target] > 0][:MAX_CROSS_REFERENCES]
    if len(chosen) < MIN_CROSS_REFERENCES:
        chosen += [target for target in ranked if target not in chosen][: MIN_CROSS_REFERENCES - len(chosen)]
    return [format_verse_id(target) for target in sorted(chosen)]


def main() -> None:
    data_file = bundled_data_path()
    items = [json.loads(line) for line in data_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    short = []
    for item in items:
        if item["split"] != "train":
            continue
        item["cross_references"] = curate(item)
        if len(item["cross_references"]) < MIN_CROSS_REFERENCES:
            short.append(item["id"])
    data_file.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items), encoding="utf-8")
    print(f"train items with fewer than {MIN_CROSS_REFERENCES} cross references: {short or 'none'}")


if __name__ == "__main__":
    main()
