"""Apply the hand-curated dev and test gold in ``bibleqa/data/curation/`` to ``bibleqa/data/qa.jsonl``.

    .venv/bin/python scripts/apply_curation.py

A developer runs this by hand after editing a curation file; CI never does.  It is idempotent.

* ``cross_references_dev.jsonl``, ``cross_references_test.jsonl``: one line per dev or test item, with
  the curated ``cross_references`` (2-5 TSK cross references of the item's own verses, each about the
  question's person, event or teaching), every earlier cross reference that was ``dropped`` and why, and a
  ``note`` on what ties the kept verses to the question.  How they were checked is in
  ``bibleqa/data/README.md``.
* ``questions.jsonl``: the dev and test doctrinal questions rewritten so that they no longer name their
  reference (``old`` and ``new`` wording).

Train items are not touched: their cross references are derived by rule (``scripts/derive_cross_references.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

from bibleqa.dataset import bundled_data_path

CURATION = Path(__file__).resolve().parent.parent / "bibleqa" / "data" / "curation"


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main() -> None:
    data_file = bundled_data_path()
    items = read_lines(data_file)
    by_id = {item["id"]: item for item in items}
    curated = 0
    for split in ("dev", "test"):
        for record in read_lines(CURATION / f"cross_references_{split}.jsonl"):
            item = by_id[record["id"]]
            if item["split"] != split:
                raise SystemExit(f"{record['id']} is curated as {split} but is in {item['split']}")
            item["cross_references"] = record["cross_references"]
            curated += 1
    rewritten = 0
    for record in read_lines(CURATION / "questions.jsonl"):
        item = by_id[record["id"]]
        if item["question"] not in (record["old"], record["new"]):
            raise SystemExit(f"{record['id']}: its question is neither the old nor the new wording")
        item["question"] = record["new"]
        rewritten += 1
    data_file.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items), encoding="utf-8")
    print(f"{curated} items with curated cross references, {rewritten} rewritten questions")


if __name__ == "__main__":
    main()
