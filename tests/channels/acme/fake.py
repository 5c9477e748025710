"""A fake Acme Messaging API on loopback: what the tests send to instead of the real service."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeAcme:
    """``with FakeAcme() as fake``: ``fake.url`` serves ``POST /v1/messages``; ``fake.messages`` are the texts
    accepted; ``fake.fail_next.append(status)`` makes the next request answer that HTTP status."""

    api_key = "test-key"

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.fail_next: list[int] = []
        self._by_key: dict[str, str] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> FakeAcme:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    return self._answer(401, {"error": "bad API key"})
                if fake.fail_next:
                    status = fake.fail_next.pop(0)
                    return self._answer(status, {"error": f"cannot deliver to {body['to']}"})
                key = self.headers.get("Idempotency-Key", "")
                if key not in fake._by_key:  # a retried request gets the first answer, nothing is sent twice
                    fake.messages.append({**body, "id": f"msg_{len(fake.messages) + 1}"})
                    fake._by_key[key] = fake.messages[-1]["id"]
                return self._answer(201, {"id": fake._by_key[key]})

            def _answer(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        return Handler
