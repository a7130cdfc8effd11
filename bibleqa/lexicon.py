"""The theological concept lexicon: which concepts a piece of text expresses, and which it denies.

``bibleqa/data/lexicon.json`` maps each concept id (``atonement``, ``justification``, ...) to its surface
forms and synonyms.  A text *mentions* a concept where the keys of one of the concept's forms occur as
consecutive words of the text (``bibleqa.wording``: KJV forms mapped to modern ones, stemmed, numbers by
value), so "believeth" mentions ``faith`` as "believe" does.  A mention inside a negation's scope ("God does
not forgive") *denies* the concept; a form that carries its own negation ("fear not") is not denied by it.
The metric ``theological_match_score`` is built on this.

Example::

    >>> from bibleqa.lexicon import load_lexicon
    >>> lexicon = load_lexicon()
    >>> "atonement" in lexicon.concepts_in("Christ made atonement for sin")
    True
    >>> lexicon.denied_in("There is no forgiveness for them")
    {'forgiveness'}
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from bibleqa.errors import DataError
from bibleqa.wording import Wording

DEFAULT_LEXICON = "lexicon.json"


@dataclass(frozen=True)
class Concept:
    """One theological concept and the word keys of the forms that signal it."""

    id: str
    label: str
    forms: tuple[str, ...]
    form_keys: tuple[tuple[str, ...], ...]


class Lexicon:
    """Concepts by id, and the matcher from text to concepts."""

    def __init__(self, concepts: dict[str, Concept]):
        self.concepts = concepts

    def __contains__(self, concept_id: object) -> bool:
        return concept_id in self.concepts

    def __len__(self) -> int:
        return len(self.concepts)

    def mentions(self, text: str | None) -> dict[str, bool]:
        """``{concept id: affirmed}`` for every concept ``text`` mentions; affirmed is False when every
        mention of it is denied (inside a negation's scope)."""
        return _mentions(self, text or "")

    def concepts_in(self, text: str | None) -> set[str]:
        """Ids of the concepts that ``text`` expresses (mentions without denying)."""
        return {concept for concept, affirmed in self.mentions(text).items() if affirmed}

    def denied_in(self, text: str | None) -> set[str]:
        """Ids of the concepts that ``text`` mentions only inside a negation's scope."""
        return {concept for concept, affirmed in self.mentions(text).items() if not affirmed}


@functools.lru_cache(maxsize=8192)
def _mentions(lexicon: Lexicon, text: str) -> dict[str, bool]:
    reading = Wording.of(text)
    found: dict[str, bool] = {}
    for concept in lexicon.concepts.values():
        for keys in concept.form_keys:
            for start in reading.find_stem_run(list(keys)):
                found[concept.id] = found.get(concept.id, False) or not reading.words[start].negated
    return found


def load_lexicon(path: str | Path | None = None) -> Lexicon:
    """Load the lexicon (the bundled one unless ``path`` is given); raises ``DataError`` if malformed."""
    if path is None:
        return _bundled_lexicon()
    return _parse_lexicon(Path(path).read_text(encoding="utf-8"), str(path))


@functools.lru_cache(maxsize=1)
def _bundled_lexicon() -> Lexicon:
    source = resources.files("bibleqa.data").joinpath(DEFAULT_LEXICON)
    return _parse_lexicon(source.read_text(encoding="utf-8"), str(source))


def _parse_lexicon(text: str, where: str) -> Lexicon:
    try:
        raw = json.loads(text)["concepts"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise DataError(f'{where}: not a lexicon ({error}); expected {{"concepts": {{id: {{...}}}}}}') from None
    concepts: dict[str, Concept] = {}
    for concept_id, entry in raw.items():
        forms = tuple(entry.get("forms") or ())
        keys = tuple(tuple(Wording.of(form).stems) for form in forms if Wording.of(form).stems)
        if not keys:
            raise DataError(f"{where}: concept {concept_id!r} has no forms; give it at least one")
        concepts[concept_id] = Concept(concept_id, entry.get("label", concept_id), forms, keys)
    return Lexicon(concepts)
