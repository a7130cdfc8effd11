"""The project's own Bible QA data set: reading, validating and splitting it.

Schema (one JSON object per line of ``bibleqa/data/qa.jsonl``; see ``bibleqa/data/README.md``)::

    {"id": "doc-0001", "split": "dev", "category": "doctrinal",
     "question": "What does Romans 5:8 say about God's love?",
     "answer": "God showed his love in that Christ died for us while we were still sinners.",
     "aliases": [], "references": ["Romans 5:8"], "key_terms": ["love", "sinners"],
     "concepts": ["love_of_god", "atonement", "sin"],
     "cross_references": ["John 3:16", "1 John 4:10"]}

Every command that reads data takes ``--data FILE``; a broken line raises one ``DataError`` that names
the file and the line.

Example::

    >>> from bibleqa.dataset import load_dataset
    >>> data = load_dataset()
    >>> len(data.dev) >= 60, data.dev[0].question.endswith("?")
    (True, True)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from bibleqa.errors import DataError

SPLITS = ("train", "dev", "test")
CATEGORIES = ("factual", "doctrinal")
_LIST_FIELDS = ("aliases", "references", "key_terms", "concepts", "cross_references")
_REQUIRED = ("id", "split", "category", "question", "answer", *_LIST_FIELDS)


@dataclass(frozen=True)
class QAItem:
    """One question with its gold answer and the facts the metrics score against."""

    id: str
    split: str
    category: str
    question: str
    answer: str
    aliases: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    key_terms: tuple[str, ...] = ()
    concepts: tuple[str, ...] = ()
    cross_references: tuple[str, ...] = ()

    def to_example(self) -> Any:
        """This item as a ``dspy.Example`` whose only input is ``question``."""
        import dspy

        return dspy.Example(
            id=self.id,
            category=self.category,
            question=self.question,
            answer=self.answer,
            aliases=list(self.aliases),
            references=list(self.references),
            key_terms=list(self.key_terms),
            concepts=list(self.concepts),
            cross_references=list(self.cross_references),
        ).with_inputs("question")


@dataclass(frozen=True)
class Dataset:
    """The items of one data file, by split, with the file's identity for provenance."""

    path: str
    sha256: str
    items: tuple[QAItem, ...]
    by_split: dict[str, tuple[QAItem, ...]] = field(repr=False)

    @property
    def train(self) -> tuple[QAItem, ...]:
        return self.by_split["train"]

    @property
    def dev(self) -> tuple[QAItem, ...]:
        return self.by_split["dev"]

    @property
    def test(self) -> tuple[QAItem, ...]:
        return self.by_split["test"]

    def examples(self, split: str, limit: int | None = None) -> list[Any]:
        """The first ``limit`` items of ``split`` as ``dspy.Example`` objects."""
        return [item.to_example() for item in self.by_split[split][:limit]]


def bundled_data_path() -> Path:
    """Path of the bundled ``qa.jsonl``."""
    return Path(str(resources.files("bibleqa.data").joinpath("qa.jsonl")))


def write_subset(target: str | Path, *, train: int, dev: int, test: int, source: str | Path | None = None) -> Path:
    """Write the first ``train``/``dev``/``test`` items of each split of ``source`` (the bundled data by
    default) to ``target``, keeping their lines as they are: a real, smaller data set for quick runs
    (``--data``) and tests.  Returns ``target``."""
    wanted = {"train": train, "dev": dev, "test": test}
    kept = []
    for line in Path(source or bundled_data_path()).read_text(encoding="utf-8").splitlines():
        if line.strip():
            split = json.loads(line)["split"]
            if wanted.get(split, 0) > 0:
                wanted[split] -= 1
                kept.append(line)
    path = Path(target)
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return path


def load_dataset(path: str | Path | None = None) -> Dataset:
    """Read and validate a QA JSONL file (the bundled one unless ``path`` is given).

    Raises ``DataError`` naming the file and line for a line that is not JSON or breaks the schema.
    """
    file = Path(path) if path is not None else bundled_data_path()
    try:
        raw = file.read_bytes()
    except OSError as error:
        raise DataError(f"{file}: cannot read the data file ({error.strerror}); pass --data FILE") from None
    items: list[QAItem] = []
    seen: set[str] = set()
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        item = _parse_line(line, f"{file}:{number}")
        if item.id in seen:
            raise DataError(f"{file}:{number}: duplicate id {item.id!r}; ids must be unique")
        seen.add(item.id)
        items.append(item)
    if not items:
        raise DataError(f"{file}: no QA items; expected one JSON object per line")
    by_split = {split: tuple(item for item in items if item.split == split) for split in SPLITS}
    return Dataset(str(file), hashlib.sha256(raw).hexdigest(), tuple(items), by_split)


def _parse_line(line: str, where: str) -> QAItem:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise DataError(f"{where}: not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [key for key in _REQUIRED if key not in record]
    if missing:
        raise DataError(f"{where}: missing {', '.join(missing)}; every item needs {', '.join(_REQUIRED)}")
    unknown = sorted(set(record) - set(_REQUIRED))
    if unknown:
        raise DataError(f"{where}: unknown key {', '.join(unknown)}; allowed: {', '.join(_REQUIRED)}")
    for key in ("id", "question", "answer"):
        if not isinstance(record[key], str) or not record[key].strip():
            raise DataError(f"{where}: {key} must be a non-empty string")
    if record["split"] not in SPLITS:
        raise DataError(f"{where}: split {record['split']!r} is not one of {', '.join(SPLITS)}")
    if record["category"] not in CATEGORIES:
        raise DataError(f"{where}: category {record['category']!r} is not one of {', '.join(CATEGORIES)}")
    for key in _LIST_FIELDS:
        value = record[key]
        if not isinstance(value, list) or not all(isinstance(entry, str) for entry in value):
            raise DataError(f"{where}: {key} must be a list of strings")
    return QAItem(**{key: tuple(record[key]) if key in _LIST_FIELDS else record[key] for key in _REQUIRED})
