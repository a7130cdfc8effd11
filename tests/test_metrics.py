"""bibleqa.metrics: each metric's rule, including empty, None and malformed predictions."""

from __future__ import annotations

import dspy
import pytest

from bibleqa.metrics import (
    METRICS,
    TRACKED_METRICS,
    BootstrapMetric,
    accuracy,
    composite_score,
    cross_reference_precision,
    cross_reference_recall,
    dropped_references,
    key_term_accuracy,
    theological_match_score,
)

NOAH = dspy.Example(
    question="Who built the ark?",
    answer="Noah",
    aliases=["Noe"],
    key_terms=["Noah"],
    concepts=[],
    cross_references=["Genesis 7:23", "Hebrews 11:7"],
)
ROMANS = dspy.Example(
    question="What does Romans 5:8 say about God's love?",
    answer="God showed his love in that Christ died for us while we were still sinners.",
    aliases=[],
    key_terms=["love", "sinners", "died"],
    concepts=["atonement", "love_of_god", "sin"],
    cross_references=["John 3:16", "1 John 4:10"],
)


def pred(answer=None, references=None):
    return dspy.Prediction(answer=answer, references=references)


MALFORMED = [None, pred(), pred(answer=""), pred(answer=42), pred(answer=["Noah"]), {"answer": None}, object()]


@pytest.mark.parametrize("name", list(METRICS))
@pytest.mark.parametrize("bad", MALFORMED, ids=lambda bad: type(bad).__name__)
def test_every_metric_scores_malformed_predictions_zero(name, bad):
    assert METRICS[name](ROMANS, bad) == 0.0
    assert METRICS[name](NOAH, bad) == 0.0


@pytest.mark.parametrize("name", list(METRICS))
def test_every_metric_stays_in_unit_interval(name):
    for example in (NOAH, ROMANS):
        for answer in ("Noah", ROMANS.answer, "x " * 300, "Noah, Moses"):
            score = METRICS[name](example, pred(answer, ["Romans 5", "John 3:16", "Hebrews 11:7"]))
            assert 0.0 <= score <= 1.0


def test_accuracy_accepts_the_answer_or_an_alias_as_whole_words():
    assert accuracy(NOAH, pred("Noah")) == 1.0
    assert accuracy(NOAH, pred("It was Noah who built the ark.")) == 1.0
    assert accuracy(NOAH, pred("noe")) == 1.0
    assert accuracy(NOAH, pred("Noah, the son of Lamech")) == 1.0
    assert accuracy(NOAH, pred("Noah's ark was his own work")) == 1.0
    assert accuracy(NOAH, pred("Jonah")) == 0.0
    assert accuracy(NOAH, pred("Moses")) == 0.0


def test_accuracy_rejects_a_list_of_candidates():
    assert accuracy(NOAH, pred("Noah, Moses, David, Abraham")) == 0.0
    assert accuracy(NOAH, pred("Moses or Noah")) == 0.0
    assert accuracy(NOAH, pred("Noah; Moses")) == 0.0


def test_accuracy_lets_aliases_stand_together():
    assert accuracy(NOAH, pred("Noah (Noe)")) == 1.0
    assert accuracy(NOAH, pred("Noah, or Noe")) == 1.0


def test_theological_match_is_f1_over_lexicon_concepts():
    assert theological_match_score(ROMANS, pred(ROMANS.answer)) == 1.0
    assert theological_match_score(ROMANS, pred("Christ made atonement.")) == pytest.approx(0.5)  # P 1, R 1/3
    assert theological_match_score(ROMANS, pred("God is good.")) == 0.0


def test_theological_match_counts_items_without_concepts_as_their_accuracy():
    # A short correct factual answer is not punished for expressing no concept.
    assert theological_match_score(NOAH, pred("Noah")) == 1.0
    assert theological_match_score(NOAH, pred("Moses")) == 0.0


def test_length_alone_never_raises_the_theological_match():
    short = theological_match_score(ROMANS, pred("Christ made atonement for sin."))
    padded_answer = "Christ made atonement for sin. " + "And it came to pass in those days that they went. " * 20
    assert theological_match_score(ROMANS, pred(padded_answer)) <= short
    # Listing concepts beyond the gold ones lowers precision.
    flooded = "atonement sin grace faith hope covenant resurrection baptism prayer creation"
    assert theological_match_score(ROMANS, pred(flooded)) < short


def test_key_term_accuracy_is_the_share_of_key_terms_with_their_variants():
    # "love" is in the question, so only "sinners" and "died" count.
    assert key_term_accuracy(ROMANS, pred(ROMANS.answer)) == 1.0
    assert key_term_accuracy(ROMANS, pred("He loved sinners")) == pytest.approx(1 / 2)  # sinner(s)
    assert key_term_accuracy(ROMANS, pred("Christ dieth for the sinner")) == 1.0  # KJV -eth, singular
    assert key_term_accuracy(ROMANS, pred("Nothing relevant")) == 0.0


def test_cross_reference_recall_is_verse_level():
    assert cross_reference_recall(NOAH, pred("Noah", ["Genesis 7:23"])) == 0.5
    assert cross_reference_recall(NOAH, pred("Noah", ["Genesis 7:23", "Hebrews 11:7"])) == 1.0
    assert cross_reference_recall(NOAH, pred("Noah", "Genesis 7:23; Heb 11:7")) == 1.0
    assert cross_reference_recall(NOAH, pred("Noah", ["John 3:99", "not a reference"])) == 0.0


def test_only_the_first_20_returned_verses_count():
    # Written from the verses: 20 single verses of Genesis 1 first, then both gold verses.
    spam = [f"Genesis 1:{verse}" for verse in range(1, 21)]
    assert cross_reference_recall(NOAH, pred("Noah", [*spam, "Genesis 7:23", "Hebrews 11:7"])) == 0.0
    assert cross_reference_recall(NOAH, pred("Noah", [*spam[:19], "Genesis 7:23", "Hebrews 11:7"])) == 0.5
    # A chapter takes none of the 20 places.
    assert cross_reference_recall(NOAH, pred("Noah", ["Genesis 2", *spam[:18], "Hebrews 11:7"])) == 0.5


def test_a_whole_chapter_or_book_buys_no_recall():
    assert cross_reference_recall(NOAH, pred("Noah", ["Genesis 7", "Hebrews 11"])) == 0.0
    assert cross_reference_recall(NOAH, pred("Noah", ["Genesis", "Hebrews"])) == 0.0


def test_an_item_without_cross_references_earns_no_recall():
    bare = dspy.Example(question="Who built the ark?", answer="Noah", aliases=[], cross_references=[])
    assert cross_reference_recall(bare, pred("Noah", ["Genesis 7:23"])) == 0.0


@pytest.mark.parametrize(
    ("value", "expected"), [(1, 1), (3, 3), (0, 0), (-2, 0), ("3", 0), (True, 0), (None, 0), (2.0, 0)]
)
def test_dropped_references_are_read_as_a_positive_count_only(value, expected):
    assert dropped_references(dspy.Prediction(answer="Noah", dropped_references=value)) == expected
    assert dropped_references(dspy.Prediction(answer="Noah")) == 0


def test_cross_reference_precision_counts_every_returned_verse():
    assert cross_reference_precision(NOAH, pred("Noah", ["Genesis 7:23", "John 3:16"])) == 0.5
    wide = cross_reference_precision(NOAH, pred("Noah", ["Genesis 7:23", "Hebrews 11"]))
    assert 0 < wide < 0.1
    assert cross_reference_precision(NOAH, pred("Noah", [])) == 0.0


def test_composite_is_the_mean_of_three_answer_metrics():
    assert composite_score(NOAH, pred("Noah")) == 1.0
    assert composite_score(ROMANS, pred("Christ made atonement.")) == pytest.approx((0 + 0.5 + 0) / 3)


def test_bootstrap_metric_applies_its_threshold_only_while_bootstrapping():
    metric = BootstrapMetric("composite_score", 0.5)
    weak = pred("Christ made atonement.")
    assert metric(ROMANS, weak) == pytest.approx(1 / 6)
    assert metric(ROMANS, weak, trace=[]) is False
    assert metric(NOAH, pred("Noah"), trace=[]) is True


def test_bootstrap_metric_rejects_bad_settings():
    with pytest.raises(ValueError, match="'precision_at_k' is not one of accuracy, theological_match_score, "):
        BootstrapMetric("precision_at_k", 0.5)
    assert BootstrapMetric("accuracy", 0.0).threshold == 0.0  # both ends of [0, 1] are allowed
    assert BootstrapMetric("accuracy", 1.0).threshold == 1.0
    with pytest.raises(ValueError, match="bootstrap_threshold"):
        BootstrapMetric("accuracy", 1.5)


def test_the_seed_metric_names():
    assert TRACKED_METRICS == ("accuracy", "theological_match_score", "key_term_accuracy", "cross_reference_recall")
