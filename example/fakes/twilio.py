"""A fake of Twilio's Messages API on loopback, for the tests and the demo (standard library only).

Point the SMS channel at it with ``OPTIONS["BASE_URL"] = fake.url``: the real ``twilio`` SDK then talks
to this server instead of https://api.twilio.com.  It answers what the SDK asks for with Twilio-shaped
JSON:

- ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` creates a message (201), checking Basic auth
  (401, code 20003) and the parameters the way Twilio does (21604 no To, 21211 invalid To, 21603 no
  From, 21602 no Body, 21617 body too long, 21609 bad StatusCallback);
- ``GET`` of the same lists messages, newest first, filtered by ``To``, ``From``, ``DateSent``,
  ``DateSent<`` and ``DateSent>`` (messages not sent yet have no date_sent and fall outside date
  filters, as at Twilio), paged with ``PageSize``/``Page``;
- ``GET .../Messages/{Sid}.json`` fetches one.

Scripting the next answers (each fault applies to the next request of ``method``; ``None``: any)::

    fake = FakeTwilio().start()          # or: with FakeTwilio() as fake:
    fake.fail_next(429, code=20429)      # the next POST gets a 429
    fake.fail_next(400, code=21211, times=2)
    fake.hang_next(3.0)                  # the next POST gets no answer for 3 s (then a 504), no message
    fake.hang_next(3.0, accept=True)     # the message IS created, but the answer comes too late
    fake.drop_next(accept=True)          # created, then the connection is closed without an answer
    fake.forget(sid)                     # as if that message had never been accepted
    fake.messages                        # every created message (Twilio JSON + "params": the form sent)
    fake.requests                        # every request (method, path, query, form, headers, answer)
    fake.wait_for_messages(1)            # block (bounded) until that many messages exist
    url, params, signature = fake.status_callback(sid, "delivered")   # what Twilio would POST back
    fake.send_status_callback(sid, "undelivered", error_code=30003)    # ... and POST it
    fake.stop()

Run alone: ``python -m example.fakes.twilio [port]`` prints its URL and serves until interrupted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

from example.fakes.server import LoopbackServer, send_json

DEFAULT_ACCOUNT_SID = "AC" + "0" * 30 + "01"
DEFAULT_AUTH_TOKEN = "fake-twilio-auth-token-0123456789"
API_VERSION = "2010-04-01"
_LIST_RE = re.compile(r"\A/2010-04-01/Accounts/([^/]+)/Messages\.json\Z")
_ONE_RE = re.compile(r"\A/2010-04-01/Accounts/([^/]+)/Messages/([^/]+)\.json\Z")
_E164_RE = re.compile(r"\A\+[1-9][0-9]{1,14}\Z")
MAX_BODY = 1600


@dataclass
class Fault:
    kind: str  # "error", "hang" or "drop"
    method: str | None = "POST"
    status: int = 500
    code: int | None = None
    message: str | None = None
    seconds: float = 0.0
    accept: bool = False  # hang/drop: create the message first (the answer is what gets lost)


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    headers: dict[str, str]
    answered: int | None = None  # HTTP status sent back; None: no answer (dropped, or still hanging)
    fault: str | None = None


@dataclass
class _State:
    messages: list[dict[str, Any]] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _rfc2822(value: datetime | None) -> str | None:
    return format_datetime(value) if value is not None else None


def _parse_when(text: str) -> datetime | None:
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d"):
        try:
            parsed = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """Twilio's X-Twilio-Signature: base64(HMAC-SHA1(auth token, url + each key and value, keys sorted))."""
    payload = url + "".join(f"{key}{params[key]}" for key in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class FakeTwilio(LoopbackServer):
    """A threaded HTTP server on 127.0.0.1 answering like Twilio's Messages API; see the module docstring."""

    owner_attr = "owner"  # the request handler's name for this fake

    @property
    def handler_base(self) -> type:
        return _Handler

    def __init__(self, account_sid: str = DEFAULT_ACCOUNT_SID, auth_token: str = DEFAULT_AUTH_TOKEN, *,
                 host: str = "127.0.0.1", port: int = 0, auto_send: bool = True):
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.host, self.port = host, port
        #: True: a created message is "sent" (with a date_sent) from the next read on, as at Twilio a moment
        #: later.  False: it stays "queued" until set_status().
        self.auto_send = auto_send
        self._state = _State()
        self._lock = threading.Condition()
        self._init_server()

    # --- running ---------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # --- what happened ---------------------------------------------------------------------------------
    @property
    def messages(self) -> list[dict[str, Any]]:
        """Created messages, oldest first: Twilio's JSON of each now, plus "params" (the form as sent)."""
        with self._lock:
            return [self._view(m) for m in self._state.messages]

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._state.requests)

    def requests_of(self, method: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method]

    def message(self, sid: str) -> dict[str, Any]:
        with self._lock:
            return self._view(self._find(sid))

    def wait_for_messages(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Block until ``count`` messages exist (AssertionError after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._state.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"fake Twilio: {len(self._state.messages)} messages after {timeout} s, "
                                         f"expected {count}")
                self._lock.wait(left)
            return [self._view(m) for m in self._state.messages]

    def forget(self, sid: str) -> None:
        """Remove a message from the records, as if Twilio had never accepted it."""
        with self._lock:
            self._state.messages.remove(self._find(sid))

    def reset(self) -> None:
        with self._lock:
            self._state = _State()

    # --- scripting -------------------------------------------------------------------------------------
    def fail_next(self, status: int = 500, *, code: int | None = None, message: str | None = None,
                  times: int = 1, method: str | None = "POST") -> None:
        """The next ``times`` requests of ``method`` get an error answer (nothing is created)."""
        self._add(Fault("error", method, status=status, code=code, message=message), times)

    def hang_next(self, seconds: float, *, times: int = 1, method: str | None = "POST",
                  accept: bool = False) -> None:
        """The next ``times`` requests get no answer for ``seconds`` (past the client's timeout)."""
        self._add(Fault("hang", method, seconds=seconds, accept=accept), times)

    def drop_next(self, *, times: int = 1, method: str | None = "POST", accept: bool = False) -> None:
        """The next ``times`` requests have their connection closed without an answer."""
        self._add(Fault("drop", method, accept=accept), times)

    def _add(self, fault: Fault, times: int) -> None:
        with self._lock:
            self._state.faults.extend(Fault(**vars(fault)) for _ in range(times))

    def set_status(self, sid: str, status: str, error_code: int | None = None,
                   error_message: str | None = None) -> dict[str, Any]:
        with self._lock:
            message = self._find(sid)
            message["status"] = status
            message["error_code"] = error_code
            message["error_message"] = error_message
            if status in ("sent", "delivered", "undelivered", "read") and message["_date_sent"] is None:
                message["_date_sent"] = _now()
            message["_date_updated"] = _now()
            return self._view(message)

    # --- status callbacks (what Twilio POSTs back) -------------------------------------------------------
    def status_callback(self, sid: str, status: str | None = None, error_code: int | None = None,
                        url: str | None = None) -> tuple[str, dict[str, str], str]:
        """(url, params, X-Twilio-Signature) of the status report Twilio would POST for message ``sid``;
        with ``status`` the message is first moved to it."""
        if status is not None:
            self.set_status(sid, status, error_code)
        with self._lock:
            message = self._find(sid)
            target = url or message["params"].get("StatusCallback") or ""
            params = {
                "AccountSid": self.account_sid,
                "ApiVersion": API_VERSION,
                "From": message["from"] or "",
                "MessageSid": sid,
                "MessageStatus": message["status"],
                "SmsSid": sid,
                "SmsStatus": message["status"],
                "To": message["to"],
            }
            if message.get("messaging_service_sid"):
                params["MessagingServiceSid"] = message["messaging_service_sid"]
            if message.get("error_code") is not None:
                params["ErrorCode"] = str(message["error_code"])
        return target, params, signature(self.auth_token, target, params)

    def send_status_callback(self, sid: str, status: str | None = None, error_code: int | None = None,
                             url: str | None = None, timeout: float = 10.0) -> int:
        """POST the status report to the message's StatusCallback (or ``url``); returns the HTTP status."""
        target, params, signed = self.status_callback(sid, status, error_code, url)
        if not target.startswith(("http://", "https://")):
            raise ValueError(f"no usable status callback URL for {sid}: {target!r}")
        request = urllib.request.Request(
            target, data=urllib.parse.urlencode(params).encode(), method="POST",
            headers={"X-Twilio-Signature": signed, "Content-Type": "application/x-www-form-urlencoded",
                     "User-Agent": "TwilioProxy/1.1"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    # --- internals (called with the lock held) -----------------------------------------------------------
    def _find(self, sid: str) -> dict[str, Any]:
        for message in self._state.messages:
            if message["sid"] == sid:
                return message
        raise KeyError(sid)

    def _view(self, message: dict[str, Any]) -> dict[str, Any]:
        shown = {k: v for k, v in message.items() if not k.startswith("_")}
        shown["date_created"] = _rfc2822(message["_date_created"])
        shown["date_updated"] = _rfc2822(message["_date_updated"])
        shown["date_sent"] = _rfc2822(message["_date_sent"])
        shown["params"] = dict(message["params"])
        return shown

    def _public(self, message: dict[str, Any]) -> dict[str, Any]:
        shown = self._view(message)
        del shown["params"]
        return shown

    def _next_fault(self, method: str) -> Fault | None:
        for index, fault in enumerate(self._state.faults):
            if fault.method is None or fault.method == method:
                return self._state.faults.pop(index)
        return None

    def _create(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        to, sender, service = form.get("To", ""), form.get("From"), form.get("MessagingServiceSid")
        body = form.get("Body", "")
        if not to:
            return _error(400, 21604, "A 'To' phone number is required.")
        if not _E164_RE.match(to):
            return _error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if not sender and not service:
            return _error(400, 21603, "A 'From' phone number is required.")
        if sender and not _E164_RE.match(sender):
            return _error(400, 21212, f"Invalid From Number (caller ID): {sender}")
        if not body:
            return _error(400, 21602, "Message body is required.")
        if len(body) > MAX_BODY:
            return _error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        callback = form.get("StatusCallback")
        if callback is not None and not callback.startswith(("http://", "https://")):
            return _error(400, 21609, "Invalid StatusCallback")
        validity = form.get("ValidityPeriod")
        if validity is not None and not (validity.isdigit() and 1 <= int(validity) <= 36000):
            return _error(400, 21624, "Invalid validity period value")
        now = _now()
        sid = "SM" + uuid.uuid4().hex
        message = {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender,
            "messaging_service_sid": service,
            "num_media": "0",
            "num_segments": str(max(1, math.ceil(len(body) / 153))),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued" if sender else "accepted",
            "subresource_uris": {"media": f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}/Media.json"},
            "to": to,
            "uri": f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json",
            "params": dict(form),
            "_date_created": now,
            "_date_updated": now,
            "_date_sent": None,
        }
        answer = self._public(message)  # as created: queued, not sent yet
        if self.auto_send:
            message["status"], message["_date_sent"] = "sent", now
        self._state.messages.append(message)
        self._lock.notify_all()
        return 201, answer

    def _list(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        found = list(reversed(self._state.messages))
        if "To" in query:
            found = [m for m in found if m["to"] == query["To"]]
        if "From" in query:
            found = [m for m in found if m["from"] == query["From"]]
        for key, keep in (("DateSent", "eq"), ("DateSent<", "le"), ("DateSent>", "ge")):
            if key not in query:
                continue
            when = _parse_when(query[key])
            if when is None:
                return _error(400, 20001, f"Invalid {key}: {query[key]}")
            by_day = len(query[key]) == 10
            found = [m for m in found if m["_date_sent"] is not None
                     and _compare(m["_date_sent"], when, keep, by_day)]
        try:
            size = min(max(int(query.get("PageSize", "50")), 1), 1000)
            page = max(int(query.get("Page", "0")), 0)
        except ValueError:
            return _error(400, 20001, "Invalid paging parameters")
        chunk = found[page * size:(page + 1) * size]
        base = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"
        filters = {k: v for k, v in query.items() if k not in ("Page", "PageSize", "PageToken")}

        def page_uri(number: int) -> str:
            return base + "?" + urllib.parse.urlencode({**filters, "PageSize": size, "Page": number,
                                                        **({"PageToken": f"PA{number}"} if number else {})})

        more = (page + 1) * size < len(found)
        return 200, {
            "messages": [self._public(m) for m in chunk],
            "end": page * size + max(len(chunk) - 1, 0),
            "first_page_uri": page_uri(0),
            "next_page_uri": page_uri(page + 1) if more else None,
            "page": page,
            "page_size": size,
            "previous_page_uri": page_uri(page - 1) if page else None,
            "start": page * size,
            "uri": page_uri(page),
        }

    def _authorized(self, headers: dict[str, str], account: str) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        given = headers.get("authorization", "")
        return account == self.account_sid and hmac.compare_digest(given.encode(), f"Basic {expected}".encode())


def _compare(sent: datetime, when: datetime, keep: str, by_day: bool) -> bool:
    a, b = (sent.date(), when.date()) if by_day else (sent, when)
    return a == b if keep == "eq" else (a <= b if keep == "le" else a >= b)


def _error(status: int, code: int | None, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
                    "status": status}


class _Handler(BaseHTTPRequestHandler):
    owner: FakeTwilio
    server_version = "FakeTwilio/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        fake = self.owner
        parts = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        form = {k: v[-1] for k, v in urllib.parse.parse_qs(raw, keep_blank_values=True).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        record = Recorded(method, parts.path, query, form, headers)
        with fake._lock:
            fake._state.requests.append(record)
            fault = fake._next_fault(method)
            record.fault = fault.kind if fault else None
            accepted = None
            if fault is not None and fault.kind in ("hang", "drop") and fault.accept:
                accepted = self._route(method, parts.path, query, form, headers)
        if fault is not None and fault.kind == "drop":
            self.close_connection = True
            return
        if fault is not None and fault.kind == "hang":
            fake._stopping.wait(fault.seconds)
            status, payload = accepted or _error(504, None, "Gateway Timeout")
        elif fault is not None:  # an error answer
            status, payload = _error(fault.status, fault.code if fault.code is not None else fault.status,
                                     fault.message or _reason(fault.status))
        else:
            with fake._lock:
                status, payload = self._route(method, parts.path, query, form, headers)
        record.answered = status
        try:
            self._send(status, payload)
        except OSError:  # the client gave up (timed out) meanwhile
            record.answered = None

    def _route(self, method: str, path: str, query: dict[str, str], form: dict[str, str],
               headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        fake = self.owner
        many, one = _LIST_RE.match(path), _ONE_RE.match(path)
        if not many and not one:
            return _error(404, 20404, f"The requested resource {path} was not found")
        account = (many or one).group(1)
        if not fake._authorized(headers, account):
            return _error(401, 20003, "Authenticate")
        if many and method == "POST":
            return fake._create(form)
        if many and method == "GET":
            return fake._list(query)
        if one and method == "GET":
            try:
                return 200, fake._public(fake._find(one.group(2)))
            except KeyError:
                return _error(404, 20404, f"The requested resource {path} was not found")
        return _error(405, 20004, "Method not allowed")

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        send_json(self, status, payload)


def _reason(status: int) -> str:
    return {400: "Bad Request", 401: "Authenticate", 404: "Not Found", 429: "Too Many Requests",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}.get(status, "Error")


def main(argv: list[str] | None = None) -> None:
    import sys

    args = sys.argv[1:] if argv is None else argv
    fake = FakeTwilio(port=int(args[0]) if args else 0).start()
    print(f"fake Twilio at {fake.url} (AccountSid {fake.account_sid}, AuthToken {fake.auth_token})", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
