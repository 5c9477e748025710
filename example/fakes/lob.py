"""A fake of Lob's print-and-mail API (``POST /v1/letters``) on a loopback port, for tests and the demo.

It answers the way Lob does (JSON letters and ``{"error": {...}}`` bodies), records every request (with its
``Idempotency-Key`` header and basic-auth user), honours idempotency keys (the same key gives back the same
letter and creates no second one) and fails on demand::

    with FakeLob() as lob:                       # or lob = FakeLob().start(); ...; lob.stop()
        settings.DEFERRED_CONFIRMATION["CHANNELS"]["letter"]["OPTIONS"] = {
            "API_KEY": lob.api_key, "BASE_URL": lob.url, "FROM": {...}}
        lob.fail_next("address")                 # 422 with Lob's address error
        lob.fail_next("rate_limit", times=2)     # then two 429s
        lob.fail_next("slow", delay=3)           # creates the letter, answers after 3 s (a client timeout)
        lob.fail_next("drop")                    # creates the letter, closes the connection unanswered
        ...
        assert len(lob.letters) == 1 and lob.requests[-1].idempotency_key == "dc-1-0"

Failure kinds: ``address`` and ``invalid`` (422), ``unauthorized`` (401), ``rate_limit`` (429), ``server``
(500), ``unavailable`` (503), ``slow`` and ``drop`` (the letter is made, the answer is late or lost).
Without a script every valid request makes a letter; invalid ones (no address line, a US address without
state or ZIP, HTML over 10,000 characters, ...) get Lob's 422.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import secrets
import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl

from example.fakes.server import LoopbackServer, send_json

COUNTRY_NAMES = {"US": "UNITED STATES", "GB": "UNITED KINGDOM", "DE": "GERMANY", "FR": "FRANCE",
                 "CA": "CANADA", "NL": "NETHERLANDS", "IE": "IRELAND", "AU": "AUSTRALIA"}
HTML_LIMIT = 10_000

FAILURES: dict[str, tuple[int, str, str]] = {
    "address": (422, "failed_deliverability_strictness",
                "The to address does not meet the deliverability strictness level of this account."),
    "invalid": (422, "invalid", "to.address_line1 is required"),
    "unauthorized": (401, "unauthorized", "Your API key is not valid. Please sign up on lob.com to get a valid "
                                          "api key."),
    "rate_limit": (429, "rate_limit_exceeded", "Rate limit exceeded. Please wait 5 seconds and try again."),
    "server": (500, "internal_server_error", "An internal server error occurred. Please try again later."),
    "unavailable": (503, "service_unavailable", "Service Unavailable. Please try again later."),
}
DELAYED = ("slow", "drop")


@dataclass
class LobRequest:
    """One request the fake received."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    username: str | None  # the API key, from basic auth
    password: str | None
    status: int = 0  # what the fake answered (0: nothing, the connection was dropped)
    replayed: bool = False  # answered from the idempotency store: no new letter

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")


@dataclass
class Failure:
    kind: str
    message: str | None = None
    delay: float = 0.0
    status: int | None = None


@dataclass
class FakeLob(LoopbackServer):
    api_key: str | None = "test_fake_lob_key"  # None: any key is accepted
    host: str = "127.0.0.1"
    port: int = 0
    letters: list[dict[str, Any]] = field(default_factory=list)  # Lob's letter objects, as answered
    requests: list[LobRequest] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # letter id -> the "file" sent (HTML, URL ...)

    owner_attr = "lob"  # the request handler's name for this fake

    @property
    def handler_base(self) -> type:
        return _Handler

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._script: list[Failure] = []
        self._by_key: dict[str, dict[str, Any]] = {}
        self._init_server()

    # --- lifecycle ----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The API base, as Lob's ``https://api.lob.com/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    # --- scripting ----------------------------------------------------------------------------------
    def fail_next(self, kind: str, times: int = 1, *, message: str | None = None, delay: float = 2.0,
                  status: int | None = None) -> None:
        """The next ``times`` letter requests fail as ``kind`` (queued after earlier scripted failures)."""
        if kind not in FAILURES and kind not in DELAYED:
            raise ValueError(f"unknown failure {kind!r}; one of {sorted([*FAILURES, *DELAYED])}")
        with self._lock:
            self._script.extend(Failure(kind, message, delay, status) for _ in range(times))

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self._by_key.clear()
            self.letters.clear()
            self.requests.clear()
            self.files.clear()

    def letter(self, letter_id: str) -> dict[str, Any] | None:
        with self._lock:
            return next((letter for letter in self.letters if letter["id"] == letter_id), None)

    @property
    def pending_failures(self) -> int:
        with self._lock:
            return len(self._script)

    # --- the API ------------------------------------------------------------------------------------
    def _next_failure(self) -> Failure | None:
        with self._lock:
            return self._script.pop(0) if self._script else None

    def _create(self, request: LobRequest) -> tuple[int, dict[str, Any]]:
        body = request.body or {}
        problem = _invalid(body)
        if problem:
            return 422, _error(422, "invalid", problem)
        with self._lock:
            key = request.idempotency_key
            if key and key in self._by_key:
                request.replayed = True
                return 200, self._by_key[key]
            letter = _letter(body)
            self.letters.append(letter)
            self.files[letter["id"]] = body.get("file", "")
            if key:
                self._by_key[key] = letter
            return 200, letter


class _Handler(BaseHTTPRequestHandler):
    lob: FakeLob
    server_version = "FakeLob/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _record(self, body: dict[str, Any] | None) -> LobRequest:
        user = password = None
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            with contextlib.suppress(binascii.Error, UnicodeDecodeError):
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        request = LobRequest(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                             user, password)
        with self.lob._lock:
            self.lob.requests.append(request)
        return request

    def _read_body(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        kind = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        try:
            if kind == "application/json":
                value = json.loads(raw or b"{}")
                return value if isinstance(value, dict) else None
            if kind == "application/x-www-form-urlencoded":
                return _nest(parse_qsl(raw.decode(), keep_blank_values=True))
        except (ValueError, UnicodeDecodeError):
            return None
        return None

    def _answer(self, request: LobRequest, status: int, payload: dict[str, Any]) -> None:
        request.status = status
        send_json(self, status, payload)

    def _authorized(self, request: LobRequest) -> bool:
        if self.lob.api_key is None:
            return bool(request.username)
        return request.username == self.lob.api_key

    def do_POST(self) -> None:
        body = self._read_body()
        request = self._record(body)
        if self.path.rstrip("/") != "/v1/letters":
            return self._answer(request, 404, _error(404, "not_found", "resource not found"))
        if not self._authorized(request):
            return self._answer(request, 401, _error(401, *FAILURES["unauthorized"][1:]))
        if body is None:
            return self._answer(request, 422, _error(422, "invalid", "request body is not valid JSON"))
        failure = self.lob._next_failure()
        if failure is not None and failure.kind in FAILURES:
            status, code, message = FAILURES[failure.kind]
            status = failure.status or status
            return self._answer(request, status, _error(status, code, failure.message or message))
        status, payload = self.lob._create(request)
        if failure is not None and failure.kind == "drop":
            self.close_connection = True
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # the letter exists, the client never hears of it
            return None
        if failure is not None and failure.kind == "slow" and self.lob._stopping.wait(failure.delay):
            return None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client may have given up
            self._answer(request, status, payload)
        return None

    def do_GET(self) -> None:
        request = self._record(None)
        if not self._authorized(request):
            return self._answer(request, 401, _error(401, *FAILURES["unauthorized"][1:]))
        prefix = "/v1/letters/"
        letter = self.lob.letter(self.path[len(prefix):]) if self.path.startswith(prefix) else None
        if letter is None:
            return self._answer(request, 404, _error(404, "not_found", "letter not found"))
        return self._answer(request, 200, letter)


def _error(status: int, code: str, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "status_code": status, "code": code}}


def _nest(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """``to[name]=x`` form fields as ``{"to": {"name": "x"}}``."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if "[" in key and key.endswith("]"):
            outer, inner = key[:-1].split("[", 1)
            result.setdefault(outer, {})[inner] = value
        else:
            result[key] = value
    return result


def _invalid(body: dict[str, Any]) -> str | None:
    """Lob's 422 message for a letter request it would refuse, or None."""
    for name in ("to", "from"):
        address = body.get(name)
        if address is None:
            return f"{name} is required"
        if isinstance(address, str):
            if not address.startswith("adr_"):
                return f"{name} must be an address id or an address object"
            continue
        if not isinstance(address, dict):
            return f"{name} must be an address id or an address object"
        if not (address.get("name") or address.get("company")):
            return f"{name} must have a name or a company"
        if len(address.get("name") or "") > 40:
            return f"{name}.name length must be less than or equal to 40 characters long"
        if not address.get("address_line1"):
            return f"{name}.address_line1 is required"
        country = (address.get("address_country") or "US").upper()
        if country in ("US", "UNITED STATES"):
            for part in ("address_city", "address_state", "address_zip"):
                if not address.get(part):
                    return f"{name}.{part} is required"
        elif not address.get("address_city"):
            return f"{name}.address_city is required"
    file = body.get("file")
    if not isinstance(file, str) or not file:
        return "file is required"
    if file.lstrip().startswith("<") and len(file) > HTML_LIMIT:
        return f"file: HTML must be less than {HTML_LIMIT:,} characters"
    if "color" not in body:
        return "color is required"
    if body.get("use_type") not in ("marketing", "operational"):
        return "use_type must be one of [marketing, operational]"
    return None


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _address(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    country = (value.get("address_country") or "US").upper()
    stamp = _now().isoformat().replace("+00:00", "Z")
    return {"id": "adr_" + secrets.token_hex(8), "object": "address", "description": None, "metadata": {},
            "name": (value.get("name") or "").upper() or None, "company": value.get("company"),
            "phone": value.get("phone"), "email": value.get("email"),
            "address_line1": (value.get("address_line1") or "").upper(),
            "address_line2": (value.get("address_line2") or "").upper() or None,
            "address_city": (value.get("address_city") or "").upper(),
            "address_state": (value.get("address_state") or "").upper() or None,
            "address_zip": value.get("address_zip"),
            "address_country": COUNTRY_NAMES.get(country, country),
            "date_created": stamp, "date_modified": stamp, "deleted": None, "recipient_moved": False}


def _letter(body: dict[str, Any]) -> dict[str, Any]:
    now = _now()
    letter_id = "ltr_" + secrets.token_hex(10)
    stamp = now.isoformat().replace("+00:00", "Z")
    return {
        "id": letter_id,
        "object": "letter",
        "description": body.get("description"),
        "metadata": body.get("metadata") or {},
        "to": _address(body.get("to")),
        "from": _address(body.get("from")),
        "color": body.get("color") in (True, "true"),
        "double_sided": body.get("double_sided", True) in (True, "true"),
        "address_placement": body.get("address_placement") or "top_first_page",
        "return_envelope": False,
        "perforated_page": None,
        "custom_envelope": None,
        "extra_service": body.get("extra_service"),
        "mail_type": body.get("mail_type") or "usps_first_class",
        "use_type": body.get("use_type"),
        "url": f"https://lob-assets.invalid/letters/{letter_id}.pdf",
        "carrier": "USPS",
        "tracking_number": None,
        "tracking_events": [],
        "thumbnails": [],
        "merge_variables": body.get("merge_variables"),
        "expected_delivery_date": (now + timedelta(days=5)).date().isoformat(),
        "send_date": stamp,
        "date_created": stamp,
        "date_modified": stamp,
    }
