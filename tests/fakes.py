"""FAKES for unit and fault tests, named as fakes: a scripted OpenAI-compatible LM server, a FAULT server that
dies, errs, hangs or talks garbage and then recovers, and a server that accepts connections and never
answers.  Also ``CountingProxy``, which is no fake: it passes every request on to a real server and counts
the requests in flight, as the server sees them."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

Answer = tuple[int, dict[str, Any]]


def _lower(headers: Any) -> dict[str, str]:
    """Headers by lower-case name (HTTP names are case-insensitive; clients differ)."""
    return {key.lower(): value for key, value in headers.items()}


class _InFlight:
    """Counts requests in flight and remembers the most at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.most = 0

    def __enter__(self) -> None:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.now -= 1


class _ServedInAThread:
    """An HTTP server on a free port of 127.0.0.1, served from a daemon thread, that counts its requests in
    flight (the handler enters ``_in_flight``); ``max_in_flight`` is the most at once."""

    def _serve(self, handler: type[BaseHTTPRequestHandler], path: str, port: int = 0) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def max_in_flight(self) -> int:
        return self._in_flight.most

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ScriptedLMServer(_ServedInAThread):
    """A FAKE OpenAI-compatible server for fault tests: it answers from a script and records requests.

    ``script`` is a list of ``(status, body)`` pairs consumed one per POST; when it runs out, the last
    pair repeats.  ``answer``, if given, is called with each POST's recorded request and returns the pair
    instead.  ``GET /v1/models`` lists ``models``.  Each POST waits ``latency`` seconds before it answers;
    ``max_in_flight`` is the most POSTs the server held at once.  ``requests`` keeps, per POST, its
    ``path``, JSON ``body`` and ``headers`` (lower-case names), in the order they arrived; ``model_requests`` keeps
    the headers of each ``GET /v1/models``.
    """

    def __init__(
        self,
        script: list[Answer],
        models: list[str],
        *,
        answer: Callable[[dict[str, Any]], Answer] | None = None,
        latency: float = 0.0,
    ):
        self.script = list(script)
        self.models = models
        self.answer = answer
        self.latency = latency
        self.requests: list[dict[str, Any]] = []
        self.model_requests: list[dict[str, str]] = []
        self._in_flight = _InFlight()
        self._lock = threading.Lock()
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
                fake.model_requests.append(_lower(self.headers))
                self._send(200, {"object": "list", "data": [{"id": model, "object": "model"} for model in fake.models]})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                request = {
                    "path": self.path,
                    "body": json.loads(self.rfile.read(length) or b"{}"),
                    "headers": _lower(self.headers),
                }
                with fake._in_flight:
                    with fake._lock:
                        fake.requests.append(request)
                        status, body = fake.answer(request) if fake.answer else fake._next_in_script()
                    time.sleep(fake.latency)
                self._send(status, body)

        self._serve(Handler, "/v1")

    def _next_in_script(self) -> Answer:
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]


FAULTS = ("ok", "error", "hang", "garbage")
"""What ``FaultyLMServer`` does with a POST: answer, answer HTTP 500, hold it past the client's timeout, or
answer something that is no completion."""
GARBAGE: tuple[tuple[str, bytes], ...] = (
    ("text/html", b"<html><body>502 Bad Gateway (FAKE garbage)</body></html>"),
    ("application/json", b'{"choices": []}'),
    ("application/json", b'{"choices": ["FAKE garbage"]}'),
    ("application/json", b'["FAKE", "garbage"]'),
    ("application/json", b'{"choices": [{"text": nul'),
)
"""The malformed answers ``FaultyLMServer`` cycles through in mode ``garbage``: not JSON, no choices,
choices that are no objects, JSON that is no object, JSON cut short."""


class FaultyLMServer(_ServedInAThread):
    """A FAKE OpenAI-compatible LM server for fault tests, that a test drives from outside while a sweep
    runs against it: ``die()`` closes its socket (new connections are refused, and requests in flight are
    dropped without an answer), ``recover()`` listens again on the same port and answers; ``fault`` says
    what it does with each POST meanwhile (``FAULTS``), ``fault_for(request)``, if given, per request
    (e.g. by the question in the prompt).

    A normal answer is ``completion_body(text)`` (``chat_body`` on ``/chat/completions``) after
    ``latency`` s; ``error`` is HTTP 500; ``hang`` holds the request ``hang_s`` s before it answers;
    ``garbage`` answers the next of ``GARBAGE``.  ``GET /v1/models`` lists ``fake-model`` while it lives.
    ``requests`` records each POST that arrived: ``path``, ``prompt`` (``prompt_of``), ``fault``, ``at``
    (``time.monotonic()``); ``garbled`` the prompts that got garbage."""

    def __init__(
        self,
        text: str = " Noah\nReferences: Genesis 6:14",
        *,
        latency: float = 0.0,
        hang_s: float = 30.0,
        fault_for: Callable[[dict[str, Any]], str | None] | None = None,
    ):
        self.text, self.latency, self.hang_s, self.fault_for = text, latency, hang_s, fault_for
        self.fault = "ok"
        self.dead = False
        self.requests: list[dict[str, Any]] = []
        self.garbled: list[str] = []
        self._in_flight = _InFlight()
        self._lock = threading.Lock()
        self._garbage = 0
        self._start(0)

    def _start(self, port: int) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, content_type: str, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                body = {"object": "list", "data": [{"id": "fake-model", "object": "model"}]}
                self._send(200, "application/json", json.dumps(body).encode())

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                request = {"path": self.path, "body": json.loads(self.rfile.read(length) or b"{}")}
                request["prompt"] = prompt_of(request)
                with fake._lock:
                    fault = (fake.fault_for(request) if fake.fault_for else None) or fake.fault
                    request.update(fault=fault, at=time.monotonic())
                    fake.requests.append(request)
                with fake._in_flight:
                    time.sleep(fake.hang_s if fault == "hang" else fake.latency)
                if fake.dead:  # it died while this request was in flight: no answer, the connection drops
                    self.close_connection = True
                    return
                if fault == "error":
                    self._send(500, "application/json", b'{"error": "FAKE fault: internal server error"}')
                elif fault == "garbage":
                    with fake._lock:
                        content_type, data = GARBAGE[fake._garbage % len(GARBAGE)]
                        fake._garbage += 1
                        fake.garbled.append(request["prompt"])
                    self._send(200, content_type, data)
                else:
                    body = (
                        chat_body(fake.text) if self.path.endswith("/chat/completions") else completion_body(fake.text)
                    )
                    self._send(200, "application/json", json.dumps(body).encode())

        self._serve(Handler, "/v1", port)

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1].split("/")[0])

    def die(self) -> None:
        """The LM server goes away: its socket closes (connection refused), requests in flight get no answer."""
        self.dead = True
        self.close()

    def recover(self) -> None:
        """The LM server is back, on the same port, answering (``fault`` back to ``ok``)."""
        self.fault = "ok"
        self.dead = False
        self._start(self.port)

    def posts_since(self, moment: float) -> list[dict[str, Any]]:
        """The POSTs that arrived after ``moment`` (``time.monotonic()``)."""
        return [request for request in list(self.requests) if request["at"] > moment]


class SilentServer:
    """A FAKE server that accepts every TCP connection and never answers a byte (a hung host).

    ``first_contact`` is the ``time.monotonic()`` at which the first connection was accepted, so that a
    test can time from the request to the error, not from process start."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self.first_contact: float | None = None
        self._held: list[socket.socket] = []
        self._closed = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self.first_contact = self.first_contact or time.monotonic()
            self._held.append(connection)  # held open, never read, never answered

    def close(self) -> None:
        self._closed = True
        self._socket.close()
        for connection in self._held:
            connection.close()


class CountingProxy(_ServedInAThread):
    """A pass-through proxy in front of a REAL server: every request goes on to ``upstream`` unchanged; it
    counts the POSTs (LM calls) and the most in flight at once, as the server sees them, and keeps each POST's
    body.  ``base_url`` replaces the upstream's base URL."""

    def __init__(self, upstream_base: str):
        upstream = upstream_base.rstrip("/")
        prefix = "/" + upstream.split("/", 3)[3] if upstream.count("/") >= 3 else ""
        origin = upstream[: len(upstream) - len(prefix)]
        self.posts = 0
        self.bodies: list[bytes] = []
        self._in_flight = _InFlight()
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _relay(self, response: requests.Response) -> None:
                self.send_response(response.status_code)
                self.send_header("Content-Type", response.headers.get("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(response.content)))
                self.end_headers()
                self.wfile.write(response.content)

            def _headers(self) -> dict[str, str]:
                return {key: value for key, value in self.headers.items() if key.lower() not in ("host", "connection")}

            def do_GET(self) -> None:
                self._relay(requests.get(origin + self.path, headers=self._headers(), timeout=60))

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with proxy._lock:
                    proxy.posts += 1
                    proxy.bodies.append(body)
                with proxy._in_flight:
                    response = requests.post(origin + self.path, data=body, headers=self._headers(), timeout=300)
                self._relay(response)

        self._serve(Handler, prefix)


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


def prompt_of(request: dict[str, Any]) -> str:
    """The text a recorded request sent: the completion prompt, or the chat messages joined."""
    body = request["body"]
    if "prompt" in body:
        return str(body["prompt"])
    return "\n".join(str(message.get("content", "")) for message in body.get("messages", []))


def every_field_answer(answer: str = "Noah", references: str = "Genesis 6:14") -> str:
    """A FAKE chat answer that fills every output field DSPy's program and MIPROv2's proposers ask for."""
    return "\n\n".join(
        f"[[ ## {name} ## ]]\n{value}"
        for name, value in (
            ("reasoning", "The passage names him."),
            ("observations", "Short questions about people and places in the Bible."),
            ("summary", "Bible questions with short answers."),
            ("program_description", "Retrieves verses, then answers a Bible question."),
            ("module_description", "Answers a Bible question from passages."),
            ("proposed_instruction", PROPOSED_INSTRUCTION),
            ("answer", answer),
            ("references", references),
            ("completed", ""),
        )
    )


PROPOSED_INSTRUCTION = "Name the person, place or number the Bible question asks for, and cite the verse."
"""The instruction the FAKE proposes when MIPROv2 asks it for one."""
EVERY_FIELD_ANSWER = every_field_answer()
