"""The ``completion`` model format: few-shot prompts sent exactly as written to ``POST /v1/completions``.

Base models such as the bundled Gemma 3 270M answer sensibly only when they continue a document like::

    Answer each Bible question in a few words and cite the verses that support the answer.

    ---

    Question: Who built the ark?
    Answer: Noah
    References: Genesis 6:14

    ---

    Question: In what town was Jesus born?
    Answer:

DSPy 3.4's own ``model_type="text"`` appends ``\\n\\nBEGIN RESPONSE:`` to the prompt, after which this
model answers with an empty line.  So this format has two parts of its own:

* ``CompletionAdapter`` (here) renders the signature, demos and inputs as such a document (one user
  message) and parses the continuation back into output fields;
* ``bibleqa.engines.CompletionEngine`` sends that message's text as the ``prompt``, unchanged, with
  ``max_tokens`` and stop sequences, and reports token usage.

Example::

    >>> from bibleqa.completion import CompletionAdapter
    >>> from bibleqa.program import AnswerBibleQuestion
    >>> [message] = CompletionAdapter().format(AnswerBibleQuestion, [], {"question": "Who built the ark?"})
    >>> message["content"].splitlines()[-2:]
    ['Question: Who built the ark?', 'Answer:']
"""

from __future__ import annotations

import logging
import re
from typing import Any

from dspy.adapters.base import Adapter
from dspy.utils.exceptions import AdapterParseError

logger = logging.getLogger(__name__)

DEMO_SEPARATOR = "\n\n---\n\n"
STOP_SEQUENCES = ("\n\n", "\n---", "\nQuestion:")
"""Where a continuation ends: after the last field of one answer, before the model writes another item."""


def field_header(name: str) -> str:
    """``"cross_references"`` -> ``"Cross References"``: the label a field gets in the document."""
    return name.replace("_", " ").title()


def _format_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "; ".join(str(entry) for entry in value)
    return " ".join(str(value).split("\n")) if value is not None else ""


class CompletionAdapter(Adapter):
    """Renders a DSPy call as a few-shot document for a base model, and parses its continuation.

    Input fields with empty values are left out, so a program without retrieval shows no passages.  A
    demo shows the fields it has; a demo without any output field is skipped.
    """

    def __init__(self, max_passage_chars: int = 2000):
        super().__init__()
        self.max_passage_chars = max_passage_chars

    def __call__(self, lm, lm_kwargs, signature, demos, inputs):
        lm_kwargs = {**lm_kwargs, "stop": list(lm_kwargs.get("stop") or STOP_SEQUENCES)}
        return super().__call__(lm, lm_kwargs, signature, demos, inputs)

    async def acall(self, lm, lm_kwargs, signature, demos, inputs):
        lm_kwargs = {**lm_kwargs, "stop": list(lm_kwargs.get("stop") or STOP_SEQUENCES)}
        return await super().acall(lm, lm_kwargs, signature, demos, inputs)

    def format(self, signature, demos, inputs) -> list[dict[str, Any]]:
        blocks = [signature.instructions.strip()]
        for demo in demos:
            if any(demo.get(name) not in (None, "") for name in signature.output_fields):
                blocks.append(self._render(signature, demo, complete=True))
        blocks.append(self._render(signature, inputs, complete=False))
        return [{"role": "user", "content": DEMO_SEPARATOR.join(blocks)}]

    def _render(self, signature, values: dict[str, Any], *, complete: bool) -> str:
        lines = []
        for name in signature.input_fields:
            text = _format_value(values.get(name))
            if text:
                lines.append(f"{field_header(name)}: {text[: self.max_passage_chars]}")
        for name in signature.output_fields:
            if not complete:
                lines.append(f"{field_header(name)}:")
                break
            text = _format_value(values.get(name))
            if text:
                lines.append(f"{field_header(name)}: {text}")
        return "\n".join(lines)

    def parse(self, signature, completion: str) -> dict[str, Any]:
        names = list(signature.output_fields)
        headers = {field_header(name).lower(): name for name in names}
        pattern = re.compile(r"^(" + "|".join(re.escape(field_header(n)) for n in names) + r")\s*:", re.I | re.M)
        # The prompt ends with the first output field's header, so the continuation starts with its value.
        text = f"{field_header(names[0])}:{completion}"
        values: dict[str, Any] = {}
        matches = list(pattern.finditer(text))
        for index, match in enumerate(matches):
            name = headers[match.group(1).lower()]
            end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
            values.setdefault(name, text[match.end() : end].strip())
        missing = [name for name in names if name not in values]
        required = [name for name in missing if name != "references"]
        if required:
            raise AdapterParseError(
                adapter_name="CompletionAdapter",
                signature=signature,
                lm_response=completion,
                message=f"the continuation has no {', '.join(required)}",
            )
        for name in missing:
            values[name] = ""
        return values
