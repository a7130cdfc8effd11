"""The HTTP requests our DSPy LM sends: DSPy 3.4 custom engines for an OpenAI-compatible server.

DSPy calls an engine's ``complete(request)`` only when its response cache has no answer, once per attempt.
So an engine is the one place that sees every request that reaches the server, and nothing else: it runs
its ``hooks`` around each HTTP request (a sweep holds an LM slot there, so a cache hit holds none; the
``bibleqa.usage.LMMeter`` notes there which calls went out).

* ``CompletionEngine``: ``POST {base}/completions`` with the prompt exactly as the ``completion`` format
  wrote it (``bibleqa.completion``), ``max_tokens`` and stop sequences;
* ``ChatEngine``: ``POST {base}/chat/completions`` with the messages DSPy's ``ChatAdapter`` wrote, and
  ``max_tokens`` (not ``max_completion_tokens``, which llama.cpp ignores: 4,082 tokens were generated for a
  cap of 20).  No LiteLLM: its import alone takes about 3 s, and it logged INFO lines on the console.

Both read the API key from ``LM_STUDIO_API_KEY`` at request time and never store it, so ``dump_state`` and a
pickle hold no secret.  A hook is any object with ``around_request(call_id)`` returning a context manager;
``call_id`` is the DSPy callback id of the LM call the request belongs to (the same for its retries).  A hook
whose context manager yields a base URL sends the request there (a pool of LM servers); ``None`` leaves the
engine's own.

Failures and retries: each request waits at most ``timeout`` seconds.  An engine makes one attempt per
``complete`` and turns what went wrong into DSPy's error types: ``TimeoutError`` (no answer in time),
``TransportError`` (refused, reset), ``ServerError`` (HTTP 5xx), ``RateLimitError`` (429),
``InvalidRequestError`` (other 4xx), ``ProviderError`` (an answer that is not JSON).  DSPy 3.4 owns the
retries (``dspy.clients.execution.execute``): ``num_retries`` more attempts (``LMSettings.retries``) on the
first four, after 1 s, 2 s, 4 s, ... (``_delay``), so nothing here retries again.  ``unreachable(error)``
says whether the server could not be reached at all (the first two), which pauses a sweep
(``sweeps.slots``) instead of failing its trials.  A malformed answer (not JSON, no choices, choices that
are not objects) is a ``ProviderError``, which DSPy does not retry: an error of that question
(``n_errors``), not of the trial.

Example (against a running server)::

    >>> import dspy
    >>> from bibleqa.engines import ChatEngine
    >>> engine = ChatEngine("http://127.0.0.1:1234/v1", "gemma-3-270m")
    >>> lm = dspy.LM("lm_studio/gemma-3-270m", engine=engine, max_tokens=32)  # doctest: +SKIP
    >>> lm("Who built the ark?")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import httpx
from dspy.lm15 import (
    InvalidRequestError,
    Message,
    ProviderError,
    RateLimitError,
    Request,
    Response,
    ServerError,
    TextPart,
    TransportError,
    Usage,
    response_to_events,
)
from dspy.lm15 import TimeoutError as LMTimeoutError
from dspy.utils.callback_context import ACTIVE_CALL_ID

from bibleqa.lm import api_key

logger = logging.getLogger(__name__)


class RequestHook(Protocol):
    """Runs around every HTTP request an engine sends (not around cache hits)."""

    def around_request(self, call_id: str | None) -> AbstractContextManager[Any]: ...


class _OpenAIEngine:
    """What both engines share: the HTTP client, the hooks, the errors DSPy retries, and pickling."""

    path = ""

    def __init__(self, base_url: str, model: str, timeout: float = 60.0, hooks: Sequence[RequestHook] = ()):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout = timeout
        self.hooks = tuple(hooks)
        self._client = httpx.Client(timeout=timeout)

    def body(self, request: Request) -> dict[str, Any]:
        raise NotImplementedError

    def response(self, payload: dict[str, Any]) -> Response:
        raise NotImplementedError

    def complete(self, request: Request) -> Response:
        body = self.body(request)
        config = request.config
        for name in ("max_tokens", "temperature", "seed"):
            if getattr(config, name) is not None:
                body[name] = getattr(config, name)
        if config.stop:
            body["stop"] = list(config.stop)
        # The callback id DSPy set for the LM call under way (this engine runs in its thread).
        call_id = ACTIVE_CALL_ID.get()
        with contextlib.ExitStack() as around:
            bases = [around.enter_context(hook.around_request(call_id)) for hook in self.hooks]
            base_url = next((base for base in bases if isinstance(base, str)), self.base_url)
            payload = self._post(body, base_url.rstrip("/"))
        return self.response(payload)

    def _post(self, body: dict[str, Any], base_url: str) -> dict[str, Any]:
        url = f"{base_url}{self.path}"
        try:
            response = self._client.post(url, json=body, headers={"Authorization": f"Bearer {api_key()}"})
        except httpx.TimeoutException as error:
            raise LMTimeoutError(f"{url}: no answer within {self.timeout} s") from error
        except httpx.HTTPError as error:
            raise TransportError(f"{url}: {error}") from error
        if response.status_code == 429:
            raise RateLimitError(f"{url}: HTTP 429 {response.text[:200]}")
        if response.status_code >= 500:
            raise ServerError(f"{url}: HTTP {response.status_code} {response.text[:200]}")
        if response.status_code >= 400:
            raise InvalidRequestError(f"{url}: HTTP {response.status_code} {response.text[:200]}")
        try:
            payload = response.json()
        except ValueError as error:
            raise ProviderError(f"{url}: the answer is not JSON: {response.text[:200]!r}") from error
        if not isinstance(payload, dict):
            raise ProviderError(f"{url}: the answer is not a JSON object: {response.text[:200]!r}")
        return payload

    def _response(self, payload: dict[str, Any], text: str | None, finish: str | None) -> Response:
        usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else {}
        return Response(
            id=payload.get("id"),
            model=payload.get("model") or self.model,
            message=Message.assistant([TextPart(text if isinstance(text, str) else "")]),  # null content: ""
            finish_reason=finish if finish in ("stop", "length") else "stop",
            usage=Usage(
                input_tokens=usage.get("prompt_tokens"),
                output_tokens=usage.get("completion_tokens"),
                total_tokens=usage.get("total_tokens"),
            ),
        )

    def stream(self, request: Request):
        return response_to_events(self.complete(request))

    def close(self) -> None:
        self._client.close()

    def dump_state(self) -> dict[str, Any]:
        """What rebuilds this engine: no key, and no hooks (they belong to the process that runs it)."""
        return {"base_url": self.base_url, "model": self.model, "timeout": self.timeout}

    @classmethod
    def load_state(cls, state: dict[str, Any]) -> _OpenAIEngine:
        return cls(**state)

    def __getstate__(self) -> dict[str, Any]:
        return self.dump_state()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)


class CompletionEngine(_OpenAIEngine):
    """``POST {base_url}/completions``: the prompt is the text of the request's messages, sent as written."""

    path = "/completions"

    def body(self, request: Request) -> dict[str, Any]:
        prompt = "".join(part.text for message in request.messages for part in message.parts if hasattr(part, "text"))
        return {"model": self.model, "prompt": prompt}

    def response(self, payload: dict[str, Any]) -> Response:
        choice = _first_choice(payload)
        return self._response(payload, choice.get("text"), choice.get("finish_reason"))


class ChatEngine(_OpenAIEngine):
    """``POST {base_url}/chat/completions``: the request's system text and messages, as OpenAI chat messages."""

    path = "/chat/completions"

    def body(self, request: Request) -> dict[str, Any]:
        messages = []
        if request.system:
            messages.append({"role": "system", "content": _text(request.system)})
        messages += [{"role": message.role, "content": _text(message.parts)} for message in request.messages]
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        if request.config.response_format is not None:
            body["response_format"] = dict(request.config.response_format)
        return body

    def response(self, payload: dict[str, Any]) -> Response:
        choice = _first_choice(payload)
        message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
        return self._response(payload, message.get("content"), choice.get("finish_reason"))


def _first_choice(payload: dict[str, Any]) -> dict[str, Any]:
    """The first choice of an answer; raises ``ProviderError`` when it has none, or not as an object (a
    malformed answer fails its question, not the engine)."""
    choices = payload.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else None
    if not isinstance(first, dict):
        raise ProviderError(f"the LM's answer has no choice to read: {str(payload)[:200]!r}")
    return first


def unreachable(error: BaseException) -> bool:
    """Whether a request failed because the server could not be reached (refused, reset, no answer within
    the timeout), rather than answering with an error.

    >>> unreachable(TransportError("connection refused")), unreachable(ServerError("HTTP 500"))
    (True, False)
    """
    return isinstance(error, (TransportError, LMTimeoutError))


def _text(parts: str | Sequence[Any]) -> str:
    """The text of a system prompt or a message's parts (our adapters send text only)."""
    if isinstance(parts, str):
        return parts
    return "".join(part.text for part in parts if hasattr(part, "text"))
