"""A FAKE OpenAI-compatible LM server of fixed latency and slot count, for benchmarks.

Every ``/v1/completions`` or ``/v1/chat/completions`` call holds one of ``slots`` slots for ``latency``
seconds (calls beyond the slots queue), then answers a fixed text.  The server records when each call held
a slot, so that a benchmark can tell how busy the slots were, and counts the calls it received and the most
it had at once (``max_in_flight``, queued ones included: a client that respects the slots keeps it at most
``slots``).

    python bench/fixed_latency_lm.py --latency 0.2 --slots 4 --port 8765   # serve in the foreground
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANSWER = " Noah\nReferences: Genesis 6:14"


class FixedLatencyLM:
    """The server; ``start()`` runs it in a thread, ``busy_intervals`` lists (start, end) of each call."""

    def __init__(self, latency: float, slots: int, host: str = "127.0.0.1", port: int = 0):
        self.latency = latency
        self.slots = slots
        self._semaphore = threading.Semaphore(slots)
        self._lock = threading.Lock()
        self.busy_intervals: list[tuple[float, float]] = []
        self.posts = 0
        self.in_flight = 0
        self.max_in_flight = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._send({"object": "list", "data": [{"id": "fixed-latency", "object": "model"}]})

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with server._lock:
                    server.posts += 1
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                with server._semaphore:
                    started = time.monotonic()
                    time.sleep(server.latency)
                    ended = time.monotonic()
                with server._lock:
                    server.busy_intervals.append((started, ended))
                    server.in_flight -= 1
                usage = {"prompt_tokens": 100, "completion_tokens": 8, "total_tokens": 108}
                if self.path.endswith("/chat/completions"):
                    message = {"role": "assistant", "content": "[[ ## answer ## ]]\nNoah\n\n[[ ## references ## ]]\n"
                               "Genesis 6:14\n\n[[ ## completed ## ]]"}  # fmt: skip
                    choice = {"index": 0, "message": message, "finish_reason": "stop"}
                else:
                    choice = {"index": 0, "text": ANSWER, "finish_reason": "stop", "logprobs": None}
                self._send({"id": "x", "object": "completion", "model": "fixed-latency", "choices": [choice],
                            "usage": usage})  # fmt: skip

        self._http = ThreadingHTTPServer((host, port), Handler)
        self._http.daemon_threads = True
        self.base_url = f"http://{host}:{self._http.server_address[1]}/v1"

    def start(self) -> FixedLatencyLM:
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def reset(self) -> None:
        with self._lock:
            self.busy_intervals = []
            self.posts = self.max_in_flight = 0

    def busy_share(self) -> tuple[float, float, float]:
        """(first call start, last call end, busy slot-seconds / (slots x that span))."""
        with self._lock:
            intervals = list(self.busy_intervals)
        if not intervals:
            return 0.0, 0.0, 0.0
        first = min(start for start, _ in intervals)
        last = max(end for _, end in intervals)
        busy = sum(end - start for start, end in intervals)
        return first, last, busy / (self.slots * (last - first)) if last > first else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    server = FixedLatencyLM(args.latency, args.slots, port=args.port)
    print(f"FAKE fixed-latency LM at {server.base_url} ({args.latency} s a call, {args.slots} slots)")
    server._http.serve_forever()


if __name__ == "__main__":
    main()
