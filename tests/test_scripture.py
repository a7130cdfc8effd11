"""bibleqa.scripture: the pythonbible sharp edges, handled in one place."""

from __future__ import annotations

import pytest

from bibleqa.errors import ScriptureReferenceError
from bibleqa.scripture import format_verse_id, kjv_verses, parse_references, read_references, verse_ids, verse_text


def test_semicolon_part_without_book_continues_the_previous_book():
    # pythonbible alone drops "2:7" here.
    assert verse_ids("Gen 1:1; 2:7") == (1001001, 1002007)


def test_semicolon_parts_with_their_own_books():
    assert verse_ids("John 3:16; Rom 5:8") == (43003016, 45005008)


def test_dot_between_book_and_chapter_is_read_as_a_space():
    # pythonbible alone raises ValueError on "Acts.18".
    ids = verse_ids("Acts.18")
    assert ids[0] == 44018001 and ids[-1] == 44018028


def test_verse_past_the_end_of_a_chapter_raises_in_strict_mode():
    # pythonbible alone returns nothing for "John 3:99", without a word.
    with pytest.raises(ScriptureReferenceError, match="John 3:99"):
        verse_ids("John 3:99")


def test_lenient_mode_skips_what_names_no_verse():
    assert verse_ids("John 3:99; Romans 5:8", strict=False) == (45005008,)
    assert verse_ids("no reference here", strict=False) == ()


def test_not_a_reference_raises_in_strict_mode():
    with pytest.raises(ScriptureReferenceError):
        parse_references("Hezekiah 1:1")


def test_ranges_and_formatting():
    assert verse_ids("1 Cor 13:4-7") == (46013004, 46013005, 46013006, 46013007)
    assert format_verse_id(45005008) == "Romans 5:8"


def test_kjv_text_has_every_verse_without_italic_brackets():
    verses = kjv_verses()
    assert len(verses) == 31102
    assert verse_text(43011035) == "Jesus wept."
    assert "[" not in verse_text(1002004)  # "These [are] the generations ..."
    with pytest.raises(ScriptureReferenceError):
        verse_text(43003099)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # pythonbible alone reads "1" as a verse of Hebrews 11 here.
        ("Hebrews 11:7, 1 Peter 3:20", (58011007, 60003020)),
        ("Heb 11:7, I Pet 3:20", (58011007, 60003020)),
        ("Genesis 1:1, 2 Kings 2:11", (1001001, 12002011)),
        ("Romans 5:8; 1 John 4:10", (45005008, 62004010)),
        ("John 3:16, 18", (43003016, 43003018)),  # a verse list, not a new book
    ],
)
def test_a_separator_before_a_numbered_book_starts_a_new_reference(text, expected):
    assert verse_ids(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hb 11:7", 58011007),
        ("Hebr 11:7", 58011007),
        ("Hebr. 11:7", 58011007),
        ("Jn 3:16", 43003016),
        ("Ps 23:1", 19023001),
        ("1 Jn 4:8", 62004008),
        ("I John 4:8", 62004008),
        ("Mt 5:3", 40005003),
    ],
)
def test_common_abbreviations(text, expected):
    assert verse_ids(text) == (expected,)


def test_dropped_parts_are_counted():
    reading = read_references("John 3:16; John 3:99; not a reference; Hb 11:7")
    assert [format_verse_id(verse) for ref in reading.references for verse in verse_ids_of(ref)] == [
        "John 3:16",
        "Hebrews 11:7",
    ]
    assert reading.dropped == 2
    assert read_references("Romans 5:8").dropped == 0


def verse_ids_of(reference) -> list[int]:
    from pythonbible import convert_reference_to_verse_ids

    return convert_reference_to_verse_ids(reference)
