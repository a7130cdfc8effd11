"""bibleqa.dataset and the bundled data: schema, splits, references, concepts, cross references."""

from __future__ import annotations

import json
import re
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest

from bibleqa.dataset import load_dataset
from bibleqa.errors import DataError
from bibleqa.lexicon import load_lexicon
from bibleqa.metrics import accuracy, key_term_accuracy, theological_match_score
from bibleqa.scripture import format_verse_id, kjv_verses, verse_ids
from bibleqa.text import tokens
from bibleqa.tsk import cross_references, tsk_links
from bibleqa.wording import Wording

DATA = load_dataset()
LEXICON = load_lexicon()


def test_size_and_fixed_splits():
    assert len(DATA.items) >= 200
    assert len(DATA.dev) >= 60 and len(DATA.test) >= 60
    assert len(DATA.train) == len(DATA.items) - len(DATA.dev) - len(DATA.test)
    for split in ("train", "dev", "test"):
        categories = Counter(item.category for item in DATA.by_split[split])
        assert categories["factual"] > 0 and categories["doctrinal"] > 0, split


def number_values(text: str) -> set[int]:
    return {word.number for word in Wording.of(text).words if word.number is not None}


def cited_verses(items) -> set[int]:
    return {verse for item in items for reference in item.references for verse in verse_ids(reference)}


def test_no_verse_cited_by_dev_or_test_is_cited_by_train():
    # Computed from the data: an evaluation item whose verse a train item also cites could be answered from
    # that train item, as a demo or through bootstrapping.
    shared = cited_verses(DATA.train) & (cited_verses(DATA.dev) | cited_verses(DATA.test))
    assert {format_verse_id(verse) for verse in shared} == set()
    assert cited_verses(DATA.dev) & cited_verses(DATA.test) == set()


BIBLE_REFERENCE = re.compile(r"\b(?:[1-3] )?[A-Z][a-z]+(?: (?:of )?[A-Z][a-z]+)* \d+(?::\d+(?:[-–]\d+)?)?")


def test_no_question_gives_away_another_splits_answer():
    # A question that states another split's answer (a name, a place, a number) about a nearby passage
    # (same book, within 5 chapters) gives that answer away: "Who thrust three darts through the heart of
    # Absalom?" answers "Which son of David was caught by his head in an oak?".  A book named in a
    # reference ("Matthew 6:9") states nothing.
    chapters = {item.id: {verse // 1000 for verse in cited_verses([item])} for item in DATA.items}
    leaks = []
    for asking in DATA.items:
        text = f" {' '.join(tokens(BIBLE_REFERENCE.sub(' ', asking.question)))} "
        for answering in DATA.items:
            if asking.split == answering.split:
                continue
            nearby = any(
                a // 1000 == b // 1000 and abs(a % 1000 - b % 1000) <= 5
                for a in chapters[asking.id]
                for b in chapters[answering.id]
            )
            stated = [
                gold
                for gold in (answering.answer, *answering.aliases)
                if 0 < len(tokens(gold)) <= 4 and f" {' '.join(tokens(gold))} " in text
            ]
            if nearby and stated:
                leaks.append((asking.id, answering.id, stated[0]))
    assert leaks == []


def test_questions_are_unique():
    questions = [item.question.strip().lower() for item in DATA.items]
    assert len(questions) == len(set(questions))


def test_every_reference_parses_to_real_kjv_verses():
    verses = kjv_verses()
    for item in DATA.items:
        for reference in (*item.references, *item.cross_references):
            ids = verse_ids(reference)  # strict: raises on anything that names no verse
            assert ids and all(verse in verses for verse in ids), (item.id, reference)


def test_every_concept_is_in_the_lexicon_and_only_doctrinal_items_have_concepts():
    for item in DATA.items:
        assert all(concept in LEXICON for concept in item.concepts), item.id
        assert bool(item.concepts) == (item.category == "doctrinal"), item.id


def test_every_item_has_key_terms_inside_its_answer():
    for item in DATA.items:
        assert item.key_terms, item.id
        assert key_term_accuracy(item.to_example(), {"answer": item.answer}) == 1.0, item.id


def test_every_gold_answer_and_alias_scores_full_marks():
    # The data, the lexicon and the metrics agree: the gold answer and every alias is right by every answer
    # metric (theological_match_score where the item has concepts).
    wrong = []
    for item in DATA.items:
        example = item.to_example()
        for text in (item.answer, *item.aliases):
            prediction = {"answer": text}
            scores = [accuracy(example, prediction), key_term_accuracy(example, prediction)]
            if item.concepts:
                scores.append(theological_match_score(example, prediction))
            if scores != [1.0] * len(scores):
                wrong.append((item.id, text, scores, sorted(LEXICON.concepts_in(text))))
    assert wrong == []


def test_number_key_terms_are_whole_numbers_of_the_gold():
    # "thirty" must not stand for "four hundred and thirty": a key term holding a number holds the gold's
    # whole number (read by value).
    for item in DATA.items:
        gold = number_values(item.answer)
        for term in item.key_terms:
            values = number_values(term)
            assert values <= gold or item.category == "doctrinal", (item.id, term)
            if item.category == "factual" and gold and values:
                assert values == gold, (item.id, term)


def test_cross_references_are_2_to_5_single_verses_from_the_tsk_of_the_items_own_verses():
    for item in DATA.items:
        assert 2 <= len(item.cross_references) <= 5, item.id
        own = {verse for reference in item.references for verse in verse_ids(reference)}
        candidates = {target for verse in own for target in cross_references(verse)} - own
        for cross_reference in item.cross_references:
            assert len(verse_ids(cross_reference)) == 1, (item.id, cross_reference)
            assert verse_ids(cross_reference)[0] in candidates, (item.id, cross_reference)


def test_dev_and_test_cross_references_are_the_hand_curated_ones():
    curated = {}
    for split in ("dev", "test"):
        path = (
            Path(__file__).resolve().parent.parent / "bibleqa" / "data" / "curation" / f"cross_references_{split}.jsonl"
        )
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            curated[record["id"]] = (split, tuple(record["cross_references"]), record["note"])
    evaluated = [item for item in DATA.items if item.split != "train"]
    assert {item.id for item in evaluated} == set(curated)
    for item in evaluated:
        split, references, note = curated[item.id]
        assert (item.split, item.cross_references) == (split, references) and note, item.id


def test_tsk_ships_whole_and_the_subset_file_is_gone():
    links = tsk_links()
    assert len(links) == 31_102 and sum(map(len, links.values())) == 386_550
    assert not resources.files("bibleqa.data").joinpath("tsk_subset.json").is_file()


def test_lexicon_has_80_concepts_with_forms():
    assert len(LEXICON) >= 80
    for concept in LEXICON.concepts.values():
        assert concept.forms, concept.id
    # A few concepts the seed's users track.
    for concept_id in ("atonement", "justification", "grace", "covenant", "resurrection"):
        assert concept_id in LEXICON


def test_a_broken_line_names_the_file_and_the_line(tmp_path):
    lines = (resources.files("bibleqa.data").joinpath("qa.jsonl").read_text(encoding="utf-8")).splitlines()
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join([lines[0], lines[1], '{"id": "x", "question": ', lines[2]]) + "\n")
    with pytest.raises(DataError, match=rf"{broken}:3: not valid JSON"):
        load_dataset(broken)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"split": "validation"}, "split 'validation' is not one of train, dev, test"),
        ({"aliases": "Noe"}, "aliases must be a list of strings"),
        ({"answer": ""}, "answer must be a non-empty string"),
        ({"colour": "red"}, "unknown key colour"),
    ],
)
def test_schema_errors_name_the_line(tmp_path, change, message):
    record = {**json.loads(resources.files("bibleqa.data").joinpath("qa.jsonl").read_text().splitlines()[0]), **change}
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(DataError, match=rf"{path}:1: {message}"):
        load_dataset(path)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot read the data file"):
        load_dataset(tmp_path / "nope.jsonl")


def test_dataset_hash_identifies_the_file():
    assert len(DATA.sha256) == 64
    assert load_dataset(DATA.path).sha256 == DATA.sha256
