"""Is an answer right?  The rules behind ``accuracy``, which ``key_term_accuracy`` and
``theological_match_score`` share for hedges, negations and contradictions.

A gold answer is one of two kinds, decided from its text alone (never from ``category`` or ``concepts``):

* **short** (at most 3 content words in at most 6 words: "Noah", "the mountains of Ararat", "four hundred
  and thirty", "Hur and Aaron"): the answer is right when it states the gold or an alias, affirmed, and
  names no rival.

  - *Stating*: every part of the gold ("Hur and Aaron" has two, in any order) occurs as consecutive content
    words (KJV forms and stems compared, ``bibleqa.text.word_key``); a number compares by value across
    digits, modern words and KJV forms (``bibleqa.numbers``): "430", "four hundred thirty" and "four hundred
    and thirty years" all state 430.
  - *Affirmed*: a mention inside a negation's scope ("not Noah", "It was not Noah; it was Moses") does not
    count (unless the gold itself is negated there: "none righteous" is stated by "no one is righteous").
  - *A rival* is another candidate of the gold's kind (a name for a name, a number for a number; for other
    golds, another noun offered with "or", "either", "perhaps") that stands beside a gold mention, or beside
    another rival, as an item of the same list: joined by "and", "or", "either...or", "," ";" "/".  Not rivals:
    a negated candidate ("Noah, not Moses"), an elaboration ("Noah, the son of Lamech", "On Mount Sinai,
    where God gave Moses the law": an item that opens with a preposition or a relative word, or whose head is
    not a candidate), a list that spells out something else ("Noah built the ark with his sons Shem, Ham and
    Japheth": its items stand beside Shem, not beside Noah), another alias ("Matthew, or Levi"), and any
    word of the question.

* **phrase or sentence** (more content words): the answer is right when it states the gold's content in
  other words, or in the KJV wording of the cited verses, without contradicting it:

  - *Content*: words of the question do not count, and an answer with under ``OFF_TOPIC`` of its other words
    from the gold, its aliases or its verses (an echo of the question, a list of lexicon words, spam) is
    off topic: it earns nothing on any metric.  With A the answer's remaining content words, and each
    reference R (the gold, each alias, the cited verses' KJV text) read the same way, the answer covers
    R when at least ``COVERAGE`` of R's content words are in A (for the verses' text, of as many words as the
    gold has: the answer need not quote the whole passage), and at least ``ON_TOPIC`` of A's words are in the
    gold, the aliases or the verses (so pasting a chapter or spam does not pass).
  - *Contradiction*: the answer negates a content word that the gold (or an alias) affirms, or affirms one
    that the gold negates ("saved by works" against "not by works"; "God does not love sinners").
  - *Swapped agents*: a party of the reference (a name, a pronoun's person, a person word such as "man" or
    "wives") stands before (or after) a word where the reference has another of its parties ("God died for
    us" against "Christ died for us"; "God made us ... to be sin for him" against "God made him ... for
    us"), or a comparison is turned round ("sacrifice rather than mercy").
  - *Hedge*: the answer offers alternatives ("or perhaps", "either ... or", "depending on how you read it").

The thresholds were calibrated on the case file's cases written from train items
(``tests/cases/metric_cases.yaml``; ``tests/test_metric_cases.py`` prints the false-positive and
false-negative rates).

Example::

    >>> from bibleqa.judgement import Gold, judge
    >>> noah = Gold(question="Who built the ark?", answer="Noah", aliases=("Noe",))
    >>> judge(noah, "Noah built it.").right, judge(noah, "Noah and Moses").hedged, judge(noah, "Not Noah").negated
    (True, True, True)
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from bibleqa.scripture import verse_ids, verse_text
from bibleqa.wording import Word, Wording

SHORT_GOLD_CONTENT_WORDS = 3
SHORT_GOLD_WORDS = 6
"""A gold of at most 3 content words in at most 6 words (a number counts as one) is a short answer: a name,
a number, a place, a thing.  Anything longer is a phrase or a sentence ("Be doers of the word, and not
hearers only": 3 content words in 9)."""
COVERAGE = 0.5
"""Share of a reference's content words (question words left out) that a phrase answer must state."""
ON_TOPIC = 0.5
"""Share of a phrase answer's content words that must come from the gold, its aliases or its verses."""
OFF_TOPIC = 0.25
"""A phrase answer with less of its words than this from the gold, its aliases and its verses (an echo, a
list of lexicon words, spam) earns nothing on any metric."""
CLOSE_REWORDING = 0.7
"""A phrase answer with at least this share of its words from the gold is checked for swapped agents."""

OR_JOINERS = frozenset({"or", "nor", "either", "neither", "perhaps", "maybe", "possibly", "probably", "/"})
LIST_JOINERS = OR_JOINERS | {",", ";", "&", "and", ":"}
ELABORATION_WORDS = frozenset(
    """who whom whose which where when while that because since after before if of to from in at by with for
    into on upon unto over under against through as than until like whereby wherein""".split()
)
"""A list item that opens with one of these elaborates on what came before; it is not a rival."""
FILLER_WORDS = frozenset("perhaps maybe possibly probably likely either neither think believe guess answer".split())
DIVINE_NAMES = frozenset({"god", "lord", "jesus", "christ", "spirit", "ghost", "holi", "father", "son"})
"""Names that accompany any answer ("by God's command") and so never count as rivals."""
_LIST_IN_GOLD = re.compile(r",|\band\b|&")
HEDGE_MARKERS = (
    ("or", "perhaps"), ("or", "possibly"), ("or", "maybe"), ("or", "probably"), ("depending",),
    ("another", "reading"), ("some", "say"), ("others", "say"), ("or", "else"), ("whether", "or", "not"),
    ("regardless",),
)  # fmt: skip
"""Word sequences by which a sentence answer offers alternatives instead of one answer (or claims both, as
"whether or not" does)."""


@dataclass(frozen=True)
class Gold:
    """What an answer is judged against: the question, the gold answer, its aliases and the cited verses."""

    question: str
    answer: str
    aliases: tuple[str, ...] = ()
    references: tuple[str, ...] = ()

    @classmethod
    def of(cls, example: object) -> Gold:
        """From a ``dspy.Example`` (or anything with those fields); missing fields are empty."""
        get = getattr(example, "get", None)

        def field_of(name: str) -> object:
            return get(name) if callable(get) else getattr(example, name, None)

        return cls(
            question=str(field_of("question") or ""),
            answer=str(field_of("answer") or ""),
            aliases=tuple(str(alias) for alias in field_of("aliases") or ()),
            references=tuple(str(reference) for reference in field_of("references") or ()),
        )

    @property
    def alternatives(self) -> tuple[str, ...]:
        return tuple(text for text in (self.answer, *self.aliases) if Wording.of(text).content_keys())

    @property
    def is_short(self) -> bool:
        reading = Wording.of(self.answer)
        return len(_content(reading)) <= SHORT_GOLD_CONTENT_WORDS and len(reading.words) <= SHORT_GOLD_WORDS

    @functools.cached_property
    def question_keys(self) -> frozenset[str]:
        return frozenset(Wording.of(self.question).content_keys())

    @functools.cached_property
    def verses_text(self) -> str:
        verses = [verse for reference in self.references for verse in verse_ids(reference, strict=False)]
        return " ".join(verse_text(verse) for verse in dict.fromkeys(verses))


@dataclass(frozen=True)
class Judgement:
    """The verdict on one answer, and why."""

    right: bool
    hedged: bool = False
    negated: bool = False
    swapped: bool = False
    echo: bool = False
    off_topic: bool = False
    reason: str = ""
    mentions: frozenset[int] = field(default=frozenset(), repr=False)

    @property
    def disqualified(self) -> bool:
        """Hedged, negated or contradicting (swapped agents included), empty, only the question's words, or
        sharing no word with the gold: ``key_term_accuracy`` and ``theological_match_score`` are 0."""
        return self.hedged or self.negated or self.swapped or self.echo or self.off_topic


def judge(gold: Gold, answer: str) -> Judgement:
    """The verdict on ``answer`` against ``gold`` (cached: every metric of a question asks)."""
    return _judge(gold, answer or "")


@functools.lru_cache(maxsize=8192)
def _judge(gold: Gold, answer: str) -> Judgement:
    reading = Wording.of(answer)
    if not reading.content_keys():
        return Judgement(False, echo=True, reason="empty answer")
    if gold.is_short:
        return _judge_short(gold, reading)
    if not reading.content_keys() - gold.question_keys:
        return Judgement(False, echo=True, reason="only the question's words")
    return _judge_phrase(gold, reading)


# ---- short golds ------------------------------------------------------------------------------------------


def _kind(gold: Gold) -> str:
    reading = Wording.of(gold.answer)
    if reading.numbers():
        return "number"
    if any(word.name for word in reading.words):
        return "name"
    return "thing"


def _parts(text: str) -> list[Wording]:
    """ "Hur and Aaron" -> [Hur, Aaron]; a gold that is not a list of short items is one part."""
    pieces = [piece for piece in _LIST_IN_GOLD.split(text) if Wording.of(piece).content_keys()]
    if len(pieces) > 1 and all(len(_content(Wording.of(piece))) <= 2 for piece in pieces):
        return [Wording.of(piece) for piece in pieces]
    return [Wording.of(text)]


def _mentions(part: Wording, reading: Wording) -> list[tuple[int, bool]]:
    """(start index, with the gold's polarity) of each place ``reading`` states ``part``: a mention agrees
    when it is negated exactly where the gold part is ("not Noah" disagrees with "Noah")."""
    negated = any(word.negated for word in _content(part))
    values = part.numbers()
    if values:
        return [
            (index, word.negated == negated)
            for index, word in enumerate(reading.words)
            if word.number is not None and word.number in values
        ]
    keys = [word.key for word in _content(part)]
    return [(start, reading.words[start].negated == negated) for start in reading.find_content_run(keys)]


def _judge_short(gold: Gold, reading: Wording) -> Judgement:
    kind = _kind(gold)
    gold_keys = {key for text in gold.alternatives for key in Wording.of(text).content_keys()}
    gold_numbers = {number for text in gold.alternatives for number in Wording.of(text).numbers()}
    mentioned: set[int] = set()
    stated = negated_only = False
    for text in gold.alternatives:
        found = [_mentions(part, reading) for part in _parts(text)]
        for places in found:
            mentioned |= {start for start, affirmed in places if affirmed}
        if all(any(affirmed for _, affirmed in places) for places in found):
            stated = True
        elif all(places for places in found):
            negated_only = True
    if not stated:
        return Judgement(False, negated=negated_only, reason="gold negated" if negated_only else "gold not stated")
    rival = _rival(reading, mentioned, kind, gold_keys, gold_numbers, gold.question_keys)
    if rival is not None:
        return Judgement(False, hedged=True, reason=f"rival {rival.text!r}", mentions=frozenset(mentioned))
    return Judgement(True, reason="gold stated", mentions=frozenset(mentioned))


def _segments(reading: Wording) -> list[list[tuple[int, Word]]]:
    """The answer's list items, in order, each as (index, word) pairs; items without content are dropped."""
    items: dict[int, list[tuple[int, Word]]] = {}
    for index, word in enumerate(reading.words):
        items.setdefault(word.segment, []).append((index, word))
    return [item for item in items.values() if any(word.content for _, word in item)]


def _head(item: list[tuple[int, Word]]) -> tuple[int, Word] | None:
    """The item's first content word, unless the item opens with an elaboration word (then None)."""
    for index, word in item:
        if word.text in ELABORATION_WORDS:
            return None
        if word.content and word.text not in FILLER_WORDS:
            return index, word
    return None


def _is_candidate(
    index: int, word: Word, reading: Wording, kind: str, gold_keys: set, gold_numbers: set, question: frozenset
) -> bool:
    if word.negated or word.key in question:
        return False
    if kind == "number":
        follows = reading.words[index + 1].text if index + 1 < len(reading.words) else ""
        return (
            word.number is not None
            and not word.ordinal
            and word.number not in gold_numbers
            and follows not in ELABORATION_WORDS
        )
    if kind == "name":
        return word.name and word.key not in gold_keys and word.key not in DIVINE_NAMES
    return word.key not in gold_keys and word.number is None


def _rival(
    reading: Wording, mentioned: set[int], kind: str, gold_keys: set, gold_numbers: set, question: frozenset
) -> Word | None:
    """The first rival the answer names beside a gold mention (see the module docstring), or None.

    Two neighbouring list items are siblings when the later one opens with a list joiner; a rival is a
    candidate heading the later item while a gold mention ends the earlier one (its last two content words),
    or a candidate ending the earlier item while a gold mention heads the later one."""
    items = _segments(reading)
    allowed = OR_JOINERS if kind == "thing" else LIST_JOINERS
    for previous, item in itertools.pairwise(items):
        if item[0][1].joiner not in allowed:
            continue
        previous_end = [index for index, word in previous if word.content][-2:]
        head = _head(item)
        if head is None:
            continue
        if any(index in mentioned for index in previous_end) and _is_candidate(
            *head, reading, kind, gold_keys, gold_numbers, question
        ):
            return head[1]
        if head[0] in mentioned:
            for index in reversed(previous_end):
                word = reading.words[index]
                if _is_candidate(index, word, reading, kind, gold_keys, gold_numbers, question):
                    return word
    return None


# ---- phrases and sentences --------------------------------------------------------------------------------


def _content(reading: Wording) -> list[Word]:
    return [word for word in reading.words if word.content]


def _judge_phrase(gold: Gold, reading: Wording) -> Judgement:
    question = gold.question_keys
    answer_keys = reading.content_keys() - question
    if _hedges(reading):
        return Judgement(False, hedged=True, reason="offers alternatives")
    if contradicts(gold, reading):
        return Judgement(False, negated=True, reason="contradicts the gold")
    alternatives = [Wording.of(text) for text in gold.alternatives]
    verses = Wording.of(gold.verses_text)
    gold_size = max(1, len(Wording.of(gold.answer).content_keys() - question))
    references = [(text, len(text.content_keys() - question)) for text in alternatives]
    references.append((verses, min(len(verses.content_keys() - question), gold_size)))
    known = set().union(*(text.content_keys() for text, _ in references)) - question
    on_topic = len(answer_keys & known) / len(answer_keys)
    if on_topic < OFF_TOPIC:
        return Judgement(False, off_topic=True, reason=f"off topic ({on_topic:.2f} of its words from the gold)")
    covered = [
        (text, index < len(alternatives))  # (wording, one of the gold's own wordings?)
        for index, (text, size) in enumerate(references)
        if size and len(answer_keys & (text.content_keys() - question)) / size >= COVERAGE
    ]
    if not covered:
        return Judgement(False, reason="covers too little of the gold")
    if on_topic < ON_TOPIC:
        return Judgement(False, reason=f"off topic ({on_topic:.2f} of its words from the gold)")
    # An answer that reuses the gold's words closely but turns who-did-what round is a swap; a paraphrase in
    # its own words reorders freely, so only close rewordings are checked, against the gold wordings (answer
    # or aliases) closest to the answer (by shared words): the aliases may order the parties otherwise.  The
    # verses' text is the reference only when no gold wording is covered.
    if on_topic >= CLOSE_REWORDING and not any(_same_wording(text, reading) for text, _ in covered):
        similarity = {id(text): _jaccard(answer_keys, text.content_keys() - question) for text, _ in covered}
        best = max((is_gold, similarity[id(text)]) for text, is_gold in covered)
        closest = [text for text, is_gold in covered if (is_gold, similarity[id(text)]) == best]
        swapped = next((word for text in closest if (word := _swapped_agents(text, reading))), None)
        if swapped:
            return Judgement(False, swapped=True, reason=f"swapped agents around {swapped!r}")
    return Judgement(True, reason="states the gold's content")


def _same_wording(reference: Wording, reading: Wording) -> bool:
    """The answer says what ``reference`` says, in its order: its content words and the reference's share a
    common subsequence of at least 90 % of the longer (the gold quoted, an alias, a KJV verse)."""
    ours = [word.key for word in reading.words if word.content]
    theirs = [word.key for word in reference.words if word.content]
    longest = [0] * (len(theirs) + 1)
    for key in ours:
        previous = 0
        for column, other in enumerate(theirs, start=1):
            current = longest[column]
            longest[column] = previous + 1 if key == other else max(longest[column], longest[column - 1])
            previous = current
    return longest[-1] >= 0.9 * max(len(ours), len(theirs), 1)


def _jaccard(first: set[str], second: set[str]) -> float:
    return len(first & second) / len(first | second) if first | second else 0.0


def _hedges(reading: Wording) -> bool:
    """The answer offers alternatives: a hedge marker, or "either ... or" within one sentence."""
    texts = [word.text for word in reading.words]
    for marker in HEDGE_MARKERS:
        if any(tuple(texts[index : index + len(marker)]) == marker for index in range(len(texts))):
            return True
    for index, word in enumerate(reading.words):
        if word.text == "either":
            rest = reading.words[index + 1 :]
            sentence = [other for other in rest if other.joiner != "."] if rest else []
            if any(other.text == "or" for other in sentence):
                return True
    return False


def contradicts(gold: Gold, reading: Wording) -> bool:
    """The answer negates a content word the gold (or an alias) affirms, or affirms one the gold negates."""
    affirmed: set[str] = set()
    negated: set[str] = set()
    for text in gold.alternatives:
        words = Wording.of(text)
        affirmed |= words.content_keys(affirmed_only=True)
        negated |= words.negated_keys()
    both = affirmed & negated
    answer_affirmed = reading.content_keys(affirmed_only=True)
    answer_negated = reading.negated_keys()
    against = ((answer_negated - answer_affirmed) & affirmed) | ((answer_affirmed - answer_negated) & negated)
    return bool(against - both)


PRONOUN_PARTIES = {
    "we": "we", "us": "we", "our": "we", "ours": "we", "ourselves": "we",
    "he": "he", "him": "he", "his": "he", "himself": "he",
    "they": "they", "them": "they", "their": "they", "theirs": "they", "themselves": "they",
    "i": "i", "me": "i", "my": "i", "mine": "i", "myself": "i",
    "you": "you", "your": "you", "yours": "you", "ye": "you", "thee": "you", "thou": "you", "thy": "you",
    "thine": "you", "yourselves": "you", "she": "she", "her": "she", "herself": "she",
}  # fmt: skip
"""Pronouns by the party they name: "God made him ... for us" is not "God made us ... for him"."""
THIRD_PERSON = frozenset({"he", "she", "they"})
PERSON_WORDS = frozenset(
    "man men woman women people husband husbands wife wives brother brothers brethren sister sisters father "
    "mother son sons daughter child children church servant servants master masters king neighbor neighbour "
    "friend friends enemy enemies disciple disciples rich poor pharisee publican".split()
)
"""Common nouns that name a party of a sentence, as names and pronouns do ("man looks on the outward
appearance, but the Lord looks on the heart")."""
COMPARATIVES = (("rather", "than"), ("more", "than"), ("better", "than"), ("instead", "of"))


def _party(word: Word) -> str | None:
    """The party a word names: a name, a pronoun's person, or a person word; else None."""
    if word.name:
        return word.key
    return PRONOUN_PARTIES.get(word.text) or (word.key if word.text in PERSON_WORDS else None)


def _party_pairs(reading: Wording) -> set[tuple[str, str, str]]:
    """(party, "after", the nearest content word after it in the same clause) for every party: what it does;
    for a pronoun also (party, "before", the nearest content word before it): what is done to or for it
    ("made him", "for us")."""
    pairs = set()
    words = reading.words
    pronouns = set(PRONOUN_PARTIES)
    for index, word in enumerate(words):
        party = _party(word)
        if party is None:
            continue
        directions = (("after", 1), ("before", -1)) if word.text in pronouns else (("after", 1),)
        for direction, step in directions:
            other = index + step
            while 0 <= other < len(words) and words[other].clause == word.clause:
                if words[other].content and _party(words[other]) is None:
                    pairs.add((party, direction, words[other].key))
                    break
                other += step
    return pairs


def _comparisons(reading: Wording) -> set[tuple[str, str]]:
    """(preferred, dispreferred) content words around "rather than", "more than", "instead of", ..."""
    words = reading.words
    found = set()
    for index in range(len(words) - 1):
        if (words[index].text, words[index + 1].text) not in COMPARATIVES:
            continue
        before = [word.key for word in words[:index] if word.content and word.text not in ("rather", "more")]
        after = [word.key for word in words[index + 2 :] if word.content]
        if before and after:
            found.add((before[-1], after[0]))
    return found


def _party_order(reading: Wording) -> list[str]:
    order: list[str] = []
    for word in reading.words:
        party = _party(word)
        if party is not None and party not in order:
            order.append(party)
    return order


def _swapped_agents(reference: Wording, reading: Wording) -> str | None:
    """Who-did-what turned round against ``reference``: a word the answer ties to one party while the
    reference ties it to another ("God died for us" against "Christ died for us"; "their lives" against "his
    life"), clauses opened by the reference's openers with each other's words ("death entered ... sin
    came" against "sin entered ... death"), or a comparison turned round ("sacrifice rather than mercy").
    A pronoun may stand for a name ("his love" is God's), so pronouns are weighed only against pronouns.
    Returns the word at the swap, or None."""
    pronouns = set(PRONOUN_PARTIES.values())
    parties = set(_party_order(reference))
    ours = set(_party_order(reading))
    theirs = _party_pairs(reference)
    for party, direction, word in _party_pairs(reading):
        is_pronoun = party in pronouns
        if (party not in parties and not is_pronoun) or (party, direction, word) in theirs:
            continue
        for other in parties - {party}:
            if (other in pronouns) != is_pronoun or (other, direction, word) not in theirs:
                continue
            # "my redeemer" against "his redeemer", "ye are saved" against "we are saved": a quotation told
            # as a report, not a swap.  Two pronouns clash when both are third persons ("their lives"
            # against "his life") or both stand in both texts ("made us ... for him" against "made him ...
            # for us").
            third_persons = party in THIRD_PERSON and other in THIRD_PERSON
            if not is_pronoun or third_persons or {party, other} <= parties & ours:
                return word
    for preferred, dispreferred in _comparisons(reading):
        if preferred != dispreferred and (dispreferred, preferred) in _comparisons(reference):
            return preferred
    return _clause_head_swap(reference, reading)


def _clause_roles(reading: Wording) -> set[tuple[str, str]]:
    """(first content word, another content word) of every clause: roughly, who does or gets what ("sin
    entered", "man looks ... outward")."""
    clauses: dict[int, list[str]] = {}
    for word in reading.words:
        if word.content:
            clauses.setdefault(word.clause, []).append(word.key)
    return {(keys[0], key) for keys in clauses.values() for key in keys[1:] if key != keys[0]}


def _clause_head_swap(reference: Wording, reading: Wording) -> str | None:
    """The answer opens its clauses with the reference's clause openers, but each with the other's words
    ("death entered the world ... sin came through death" against "sin entered the world ... death through
    sin"; "the Lord looks on the outward appearance, but man ..." against "man looks on the outward
    appearance, but the Lord ...")."""
    theirs = _clause_roles(reference)
    ours = _clause_roles(reading)
    heads = {first for first, _ in theirs}
    if len(heads & {first for first, _ in ours}) < 2:
        return None
    for first, other in ours:
        moved = first in heads and (first, other) not in theirs and (other, first) not in theirs
        if moved and any(head != first and (head, other) in theirs for head in heads):
            return other
    return None


def content_keys_of(texts: Iterable[str]) -> set[str]:
    return {key for text in texts for key in Wording.of(text).content_keys()}
