"""The theological concept lexicon: which concepts a piece of text expresses.

``bibleqa/data/lexicon.json`` maps each concept id (``atonement``, ``justification``, ...) to its surface
forms and synonyms.  A text *expresses* a concept when the stemmed tokens of one of the concept's forms
occur as a contiguous run in the stemmed tokens of the text (``bibleqa.text``).  The metric
``theological_match_score`` is built on this.

Example::

    >>> from bibleqa.lexicon import load_lexicon
    >>> lexicon = load_lexicon()
    >>> "atonement" in lexicon.concepts_in("Christ made atonement for sin")
    True
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from bibleqa.errors import DataError
from bibleqa.text import contains_run, stems

DEFAULT_LEXICON = "lexicon.json"


@dataclass(frozen=True)
class Concept:
    """One theological concept and the stemmed forms that signal it."""

    id: str
    label: str
    forms: tuple[str, ...]
    stemmed_forms: tuple[tuple[str, ...], ...]


class Lexicon:
    """Concepts by id, and the matcher from text to concepts."""

    def __init__(self, concepts: dict[str, Concept]):
        self.concepts = concepts

    def __contains__(self, concept_id: object) -> bool:
        return concept_id in self.concepts

    def __len__(self) -> int:
        return len(self.concepts)

    def concepts_in(self, text: str | None) -> set[str]:
        """Ids of the concepts that ``text`` expresses."""
        text_stems = stems(text)
        if not text_stems:
            return set()
        return {
            concept.id
            for concept in self.concepts.values()
            if any(contains_run(text_stems, form) for form in concept.stemmed_forms)
        }


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
        stemmed = tuple(tuple(stems(form)) for form in forms if stems(form))
        if not stemmed:
            raise DataError(f"{where}: concept {concept_id!r} has no forms; give it at least one")
        concepts[concept_id] = Concept(concept_id, entry.get("label", concept_id), forms, stemmed)
    return Lexicon(concepts)
