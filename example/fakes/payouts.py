"""A fake payouts API (Stripe/Dwolla style) on a loopback port, for tests and the demo.

The API :class:`deferred_confirmation.pipeline.payouts.http.HTTPPayoutBackend` talks to: ``POST /payouts`` with JSON
``{"account": {...}, "amounts": [32, 45], "currency": "USD"}``, a bearer token and an ``Idempotency-Key``
header, answered ``201 {"id": "po_000001", "status": "pending", ...}``; ``GET /payouts/<id>``.  It records every
request (headers, auth, body), honours idempotency keys (the same key gives back the same payout, answered
200 with ``Idempotent-Replayed: true``, and never creates a second one; the same key with other parameters is
a 400, as at Stripe) and fails on demand::

    with FakePayoutAPI() as api:                    # or api = FakePayoutAPI().start(); ...; api.stop()
        options = {"PAYOUT_BACKEND": "deferred_confirmation.pipeline.payouts.http.HTTPPayoutBackend",
                   "URL": api.url, "API_KEY": api.api_key, "TIMEOUT": 1}
        api.fail_next(400, message="Account is closed")   # or fail_next("invalid", message=...)
        api.fail_next("rate_limit", times=2)               # then two 429s
        api.fail_next("server")                            # then a 500
        api.fail_next("slow", delay=3)                     # makes the payout, answers after 3 s (a client timeout)
        ...
        assert len(api.payouts) == 1 and api.requests[-1].idempotency_key == "dc-1-0"
        api.set_status(api.payouts[0]["id"], "paid")       # what a later GET /payouts/<id> says

Failure kinds: ``invalid`` (400), ``unauthorized`` (401), ``rate_limit`` (429), ``server`` (500), ``unavailable``
(503), or any HTTP status as an int; ``slow`` (the payout is made, the answer comes ``delay`` seconds late).
Scripted failures apply to the next POSTs; without a script every valid request makes a payout and invalid
ones (amounts not two different whole numbers of 1-99 cents, no account, a bad currency) get a 400.
"""

from __future__ import annotations

import contextlib
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

from example.fakes.server import LoopbackServer, send_json

FAILURES: dict[str, tuple[int, str, str]] = {
    "invalid": (400, "invalid_request_error", "The request was invalid."),
    "unauthorized": (401, "authentication_error", "Invalid API key provided."),
    "rate_limit": (429, "rate_limit_error", "Too many requests hit the API too quickly."),
    "server": (500, "api_error", "Something went wrong on our end."),
    "unavailable": (503, "api_error", "The service is temporarily unavailable."),
}
MAX_BODY = 1_000_000


@dataclass
class PayoutRequest:
    """One request the fake received."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any  # the JSON body (None for GET or unreadable JSON)
    status: int = 0  # what the fake answered (0: not yet, or the client was gone)
    replayed: bool = False  # answered from the idempotency store: no new payout

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")

    @property
    def bearer(self) -> str | None:
        auth = self.authorization or ""
        return auth[7:] if auth.startswith("Bearer ") else None


@dataclass
class Failure:
    status: int | None  # None: answer normally, but late
    code: str = ""
    message: str = ""
    delay: float = 0.0


@dataclass
class FakePayoutAPI(LoopbackServer):
    api_key: str | None = "sk_test_fake_payouts"  # None: any bearer token is accepted
    host: str = "127.0.0.1"
    port: int = 0
    payouts: list[dict[str, Any]] = field(default_factory=list)  # payout objects, as answered, oldest first
    requests: list[PayoutRequest] = field(default_factory=list)

    owner_attr = "api"  # the request handler's name for this fake

    @property
    def handler_base(self) -> type:
        return _Handler

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._script: list[Failure] = []
        self._by_key: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}  # key -> (request body, payout)
        self._init_server()

    # --- lifecycle ----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # --- scripting and inspection -------------------------------------------------------------------
    def fail_next(self, kind: str | int, times: int = 1, *, message: str | None = None,
                  delay: float = 2.0) -> None:
        """The next ``times`` POSTs fail as ``kind`` (a name of FAILURES, an HTTP status, or "slow"), after any
        failures scripted earlier.  ``message`` replaces the error's message; ``delay`` is for "slow"."""
        if kind == "slow":
            failure = Failure(None, delay=delay)
        elif isinstance(kind, int) and not isinstance(kind, bool) and 400 <= kind <= 599:
            code = "rate_limit_error" if kind == 429 else "api_error" if kind >= 500 else "invalid_request_error"
            failure = Failure(kind, code, message or f"HTTP {kind}")
        elif kind in FAILURES:
            status, code, default = FAILURES[kind]
            failure = Failure(status, code, message or default)
        else:
            raise ValueError(f"unknown failure {kind!r}: an HTTP status 400-599 or one of "
                             f"{sorted([*FAILURES, 'slow'])}")
        with self._lock:
            self._script.extend([failure] * times)

    def set_status(self, payout_id: str, status: str) -> None:
        with self._lock:
            payout = self.payout(payout_id)
            if payout is None:
                raise KeyError(payout_id)
            payout["status"] = status

    def payout(self, payout_id: str) -> dict[str, Any] | None:
        with self._lock:
            return next((p for p in self.payouts if p["id"] == payout_id), None)

    def posts(self) -> list[PayoutRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == "POST"]

    @property
    def pending_failures(self) -> int:
        with self._lock:
            return len(self._script)

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self._by_key.clear()
            self.payouts.clear()
            self.requests.clear()

    # --- the API ------------------------------------------------------------------------------------
    def _next_failure(self) -> Failure | None:
        with self._lock:
            return self._script.pop(0) if self._script else None

    def _create(self, request: PayoutRequest) -> tuple[int, dict[str, Any]]:
        body = request.body
        problem = _invalid(body)
        if problem:
            return 400, _error("invalid_request_error", problem)
        with self._lock:
            key = request.idempotency_key
            if key and key in self._by_key:
                first_body, payout = self._by_key[key]
                if first_body != body:
                    return 400, _error("idempotency_error", "Keys for idempotent requests can only be used with "
                                                            "the same parameters they were first used with.")
                request.replayed = True
                return 200, payout
            payout = {
                "id": f"po_{len(self.payouts) + 1:06d}",
                "object": "payout",
                "status": "pending",
                "account": body["account"],
                "amounts": list(body["amounts"]),
                "currency": body["currency"],
                "idempotency_key": key,
                "created": datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
            }
            self.payouts.append(payout)
            if key:
                self._by_key[key] = (body, payout)
            return 201, payout


class _Handler(BaseHTTPRequestHandler):
    api: FakePayoutAPI
    server_version = "FakePayouts/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _record(self, body: Any) -> PayoutRequest:
        request = PayoutRequest(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        with self.api._lock:
            self.api.requests.append(request)
        return request

    def _read_body(self) -> Any:
        try:
            length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
        except ValueError:
            length = 0
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError):
            return None

    def _answer(self, request: PayoutRequest, status: int, payload: dict[str, Any]) -> None:
        request.status = status
        send_json(self, status, payload, {"Idempotent-Replayed": "true"} if request.replayed else None)

    def _authorized(self, request: PayoutRequest) -> bool:
        if self.api.api_key is None:
            return bool(request.bearer)
        return request.bearer == self.api.api_key

    def do_POST(self) -> None:
        request = self._record(self._read_body())
        if self.path.rstrip("/") != "/payouts":
            return self._answer(request, 404, _error("invalid_request_error", f"Unrecognized URL {self.path}"))
        if not self._authorized(request):
            return self._answer(request, 401, _error(*FAILURES["unauthorized"][1:]))
        failure = self.api._next_failure()
        if failure is not None and failure.status is not None:
            return self._answer(request, failure.status, _error(failure.code, failure.message))
        status, payload = self.api._create(request)
        if failure is not None and self.api._stopping.wait(failure.delay):  # "slow"; stop() cuts it short
            return None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client may have given up
            self._answer(request, status, payload)
        return None

    def do_GET(self) -> None:
        request = self._record(None)
        if not self._authorized(request):
            return self._answer(request, 401, _error(*FAILURES["unauthorized"][1:]))
        prefix = "/payouts/"
        payout = self.api.payout(self.path[len(prefix):]) if self.path.startswith(prefix) else None
        if payout is None:
            return self._answer(request, 404, _error("invalid_request_error", "No such payout"))
        return self._answer(request, 200, payout)


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"type": code, "message": message}}


def _invalid(body: Any) -> str | None:
    """The 400 message for a payout request the API would refuse, or None."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    account = body.get("account")
    if not isinstance(account, dict) or not account:
        return "Missing required param: account."
    amounts = body.get("amounts")
    if (not isinstance(amounts, list) or len(amounts) != 2
            or not all(isinstance(a, int) and not isinstance(a, bool) and 1 <= a <= 99 for a in amounts)
            or amounts[0] == amounts[1]):
        return "Invalid amounts: two different whole numbers of cents between 1 and 99 are required."
    currency = body.get("currency")
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        return "Invalid currency: a three-letter ISO code is required."
    return None
