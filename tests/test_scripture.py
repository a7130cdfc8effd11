"""bibleqa.scripture: the pythonbible sharp edges, handled in one place."""

from __future__ import annotations

import pytest

from bibleqa.errors import ScriptureReferenceError
from bibleqa.scripture import format_verse_id, kjv_verses, parse_references, verse_ids, verse_text


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
