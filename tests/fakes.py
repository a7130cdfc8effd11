"""FAKES for unit and fault tests, named as fakes: a scripted OpenAI-compatible LM server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ScriptedLMServer:
    """A FAKE OpenAI-compatible server for fault tests: it answers from a script and records requests.

    ``script`` is a list of ``(status, body)`` pairs consumed one per POST; when it runs out, the last
    pair repeats.  ``GET /v1/models`` lists ``models``.
    """

    def __init__(self, script: list[tuple[int, dict[str, Any]]], models: list[str]):
        self.script = list(script)
        self.models = models
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._send(200, {"object": "list", "data": [{"id": model, "object": "model"} for model in fake.models]})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                fake.requests.append({"path": self.path, "body": json.loads(self.rfile.read(length) or b"{}")})
                status, body = fake.script.pop(0) if len(fake.script) > 1 else fake.script[0]
                self._send(status, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def completion_body(text: str, prompt_tokens: int = 10, completion_tokens: int = 3) -> dict[str, Any]:
    """A ``/v1/completions`` answer as the fake sends it."""
    return {
        "id": "cmpl-fake",
        "object": "text_completion",
        "model": "fake-model",
        "choices": [{"text": text, "index": 0, "finish_reason": "stop", "logprobs": None}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def chat_body(text: str, prompt_tokens: int = 20, completion_tokens: int = 8) -> dict[str, Any]:
    """A ``/v1/chat/completions`` answer as the fake sends it."""
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": "fake-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


EVERY_FIELD_ANSWER = "\n\n".join(
    f"[[ ## {name} ## ]]\n{value}"
    for name, value in (
        ("reasoning", "The passage names him."),
        ("observations", "Short questions about people and places in the Bible."),
        ("summary", "Bible questions with short answers."),
        ("program_description", "Retrieves verses, then answers a Bible question."),
        ("module_description", "Answers a Bible question from passages."),
        ("proposed_instruction", "Answer the Bible question in a few words and cite the verse."),
        ("answer", "Noah"),
        ("references", "Genesis 6:14"),
        ("completed", ""),
    )
)
"""A FAKE chat answer that fills every output field DSPy's program and MIPROv2's proposers ask for."""
