"""SMS: a short numeric code, sent through Twilio's Messages API with the official ``twilio`` SDK.

OPTIONS
    ``ACCOUNT_SID``, ``AUTH_TOKEN``: the account's credentials (the token also checks the signature of
    delivery-status webhooks, see ``deferred_confirmation.django_integration.views.webhooks``).
    ``FROM``: the sending number (E.164), or ``MESSAGING_SERVICE_SID`` to let a Messaging Service pick one.
    ``CODE_LENGTH``: digits in a code, 4-10 (default 6).
    ``TIMEOUT``: seconds to wait for Twilio on each request (default 10).
    ``BASE_URL``: send the SDK's requests to another host instead of https://api.twilio.com (a local fake in
    tests and the demo, or a proxy).

The message body comes from the overridable template ``confirmation/sms/body.txt``; the link in it is
built from ``SITE_URL`` and never from a request.  Twilio drops the message if it is still queued when
the code expires (``ValidityPeriod``) and reports delivery to ``confirmation:twilio_status``.

No duplicate SMS on retries.  Twilio's Messages API takes no idempotency key, so a task retried after
Twilio accepted a message whose response never arrived (timeout, dropped connection, worker killed)
would text the code twice.  ``delivery.send_attempts`` counts the calls already made for this
generation; when it is above zero we first list the recent messages to the recipient
(``client.messages.list(to=..., date_sent_after=...)``, then the newest page regardless of date, which
also holds messages Twilio has not sent yet) and look for one with this exact body, or, since the
"within N min" in it may have changed between attempts, one with the same code and code-page link.
The code is new for each generation (and the link names the action), so a match is this very message:
its SID is returned and nothing is sent again.  If Twilio cannot be asked, the attempt is retried
later rather than risking a second text.

Errors: Twilio's permanent codes (invalid or unsubscribed number, unreachable region, ...) and other
4xx answers raise :class:`PermanentChannelError` with Twilio's code; 429, 5xx, timeouts and connection
errors raise :class:`TransientChannelError`.  Phone numbers are masked in every reason we store.
"""

from __future__ import annotations

import json
import math
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from deferred_confirmation.pipeline import tokens
from deferred_confirmation.pipeline.channels.base import (
    BaseChannel,
    ChannelConfigurationError,
    PermanentChannelError,
    TransientChannelError,
)
from deferred_confirmation.pipeline.redaction import redact_contacts
from deferred_confirmation.pipeline.siteurl import absolute_url, site_url

if TYPE_CHECKING:
    from deferred_confirmation.django_integration.models import DeferredAction, Delivery

TEMPLATE = "confirmation/sms/body.txt"
DEFAULT_CODE_LENGTH = 6
CODE_LENGTHS = range(4, 11)
DEFAULT_TIMEOUT = 10.0
MAX_VALIDITY = 36000  # seconds: Twilio's largest ValidityPeriod
MAX_INPUT = 64  # characters of typed input considered at all

#: Twilio error codes that no retry can fix.
PERMANENT_CODES = frozenset({
    21211,  # invalid 'To' phone number
    21217,  # phone number does not appear to be valid
    21401,  # invalid phone number
    21407,  # this phone number type does not support SMS
    21408,  # permission to send an SMS has not been enabled for the region
    21421,  # phone number is invalid
    21601,  # phone number is not a valid SMS-capable inbound phone number
    21602,  # message body is required
    21603,  # 'From' phone number is required
    21604,  # 'To' phone number is required
    21606,  # the 'From' phone number is not a valid, SMS-capable number for this account
    21608,  # unverified number on a trial account
    21610,  # the recipient replied STOP (unsubscribed)
    21612,  # cannot route to this number ('To'/'From' combination)
    21614,  # 'To' number is not a valid mobile number
    21617,  # body too long
    21635,  # 'To' number cannot be reached with the given 'From' (e.g. landline)
    21660,  # mismatch between 'From' number and account
    30004,  # message blocked
    30005,  # unknown destination handset
    30006,  # landline or unreachable carrier
    30007,  # filtered by the carrier (spam)
})
#: Twilio error codes worth another try, whatever their HTTP status.
TRANSIENT_CODES = frozenset({20429, 20500, 20503, 30001, 30002, 30008})

_SEPARATORS_RE = re.compile(r"[\s\-]+")
_CODE_RE = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() and \d accept other scripts' digits


def code_page_url(action: DeferredAction) -> str:
    return absolute_url(reverse("confirmation:code", args=[action.pk]), needed_for="SMS links")


def status_callback_url() -> str | None:
    return absolute_url(reverse("confirmation:twilio_status")) if site_url() else None


def _twilio():
    try:
        from twilio.base.exceptions import TwilioException, TwilioRestException
        from twilio.http.http_client import TwilioHttpClient
        from twilio.rest import Client
    except ImportError as exc:  # pragma: no cover - the check names the extra
        raise ChannelConfigurationError(
            "The SMS channel needs the twilio package: pip install deferred-confirmation[sms]") from exc
    return Client, TwilioHttpClient, TwilioException, TwilioRestException


def make_http_client(base_url: str | None = None, timeout: float | None = None) -> Any:
    """The SDK's own HTTP client, sending to ``base_url`` instead of Twilio's hosts when given, and logging
    nothing of the request (the SDK logs query strings at INFO: the recipient's number)."""
    _client, TwilioHttpClient, _exc, _rest_exc = _twilio()

    class RedirectingHttpClient(TwilioHttpClient):
        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            if base_url:
                url = rebase(url, base_url)
            return super().request(method, url, *args, **kwargs)

        def log_request(self, kwargs: dict[str, Any]) -> None:
            self.logger.debug("Twilio %s %s", kwargs["method"], urlsplit(kwargs["url"]).path)

        def log_response(self, status_code: int, response: Any) -> None:
            self.logger.debug("Twilio answered %s", status_code)

    return RedirectingHttpClient(timeout=timeout)


def rebase(url: str, base_url: str) -> str:
    """``https://api.twilio.com/2010-04-01/...`` -> ``<base_url>/2010-04-01/...`` (any *.twilio.com host)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host != "twilio.com" and not host.endswith(".twilio.com"):
        return url
    base = urlsplit(base_url)
    path = base.path.rstrip("/") + parts.path
    return urlunsplit((base.scheme, base.netloc, path, parts.query, parts.fragment))


class TwilioSMSChannel(BaseChannel):
    """A code of CODE_LENGTH digits by text message; see the module docstring for OPTIONS."""

    secret_kind = "code"

    # --- options -------------------------------------------------------------------------------------
    @classmethod
    def check_options(cls, options: dict[str, Any]) -> list[str]:
        """Problems with OPTIONS, for a system check (empty when fine)."""
        problems = []
        for key in ("ACCOUNT_SID", "AUTH_TOKEN"):
            if not options.get(key):
                problems.append(f"OPTIONS[{key!r}] is required.")
        if not options.get("FROM") and not options.get("MESSAGING_SERVICE_SID"):
            problems.append("OPTIONS needs FROM (a number) or MESSAGING_SERVICE_SID.")
        length = options.get("CODE_LENGTH")
        length = DEFAULT_CODE_LENGTH if length is None else length
        if not isinstance(length, int) or isinstance(length, bool) or length not in CODE_LENGTHS:
            problems.append("OPTIONS['CODE_LENGTH'] must be an integer from 4 to 10.")
        timeout = options.get("TIMEOUT")
        timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
            problems.append("OPTIONS['TIMEOUT'] must be a positive number of seconds.")
        base = options.get("BASE_URL")
        if base is not None and not (isinstance(base, str) and urlsplit(base).scheme in ("http", "https")
                                     and urlsplit(base).netloc):
            problems.append("OPTIONS['BASE_URL'] must be an http(s) URL.")
        return problems

    @property
    def code_length(self) -> int:
        length = self.options.get("CODE_LENGTH")
        length = DEFAULT_CODE_LENGTH if length is None else length
        if not isinstance(length, int) or isinstance(length, bool) or length not in CODE_LENGTHS:
            raise ChannelConfigurationError(f"CHANNELS[{self.name!r}] OPTIONS CODE_LENGTH must be 4 to 10.")
        return length

    def _required(self, key: str) -> str:
        value = self.options.get(key)
        if not value:
            raise ChannelConfigurationError(f"CHANNELS[{self.name!r}] OPTIONS[{key!r}] is not set.")
        return value

    @property
    def auth_token(self) -> str:
        return self._required("AUTH_TOKEN")

    def client(self) -> Any:
        Client, _http, _exc, _rest_exc = _twilio()
        sid = self._required("ACCOUNT_SID")
        timeout = float(self.options.get("TIMEOUT") or DEFAULT_TIMEOUT)
        http_client = make_http_client(self.options.get("BASE_URL"), timeout)
        return Client(sid, self.auth_token, account_sid=sid, http_client=http_client)

    # --- secrets -------------------------------------------------------------------------------------
    def limit_identity(self, recipient: str) -> str:
        """The number, whatever its spelling: digits only, an international ``00`` read as ``+`` (``+44 7700``,
        ``0044-7700`` and ``+447700`` are one phone, so they share its send limits)."""
        digits = re.sub(r"\D", "", recipient)
        return digits[2:] if digits.startswith("00") else digits

    def make_secret(self) -> str:
        return tokens.make_code(self.code_length)

    def normalize(self, raw: object) -> str | None:
        """ASCII digits of exactly CODE_LENGTH, spaces and dashes ignored; anything else None."""
        if not isinstance(raw, str) or len(raw) > MAX_INPUT:
            return None
        code = _SEPARATORS_RE.sub("", raw)
        if len(code) != self.code_length or not _CODE_RE.fullmatch(code):
            return None
        return code

    # --- sending -------------------------------------------------------------------------------------
    def body(self, *, delivery: Delivery, action: DeferredAction, secret: str) -> str:
        context = self.context(delivery=delivery, action=action, secret=secret)
        context.update({
            "code": secret,
            "code_url": code_page_url(action),
            "minutes": max(1, math.ceil(self.validity_period(delivery) / 60)),
            "domain": urlsplit(context["site_url"]).hostname or "",
        })
        lines = render_to_string(TEMPLATE, context).strip().splitlines()
        return "\n".join(line.rstrip() for line in lines)

    def validity_period(self, delivery: Delivery) -> int:
        """Seconds the code has left (Twilio drops the text if it cannot go out within them)."""
        if delivery.expires_at is None:
            expires = self.conf.get("EXPIRES") or timedelta(minutes=10)
            return min(MAX_VALIDITY, int(expires.total_seconds()))
        left = (delivery.expires_at - timezone.now()).total_seconds()
        return min(MAX_VALIDITY, math.ceil(left)) if left > 0 else 0

    def send(self, *, delivery: Delivery, action: DeferredAction, secret: str) -> str:
        validity = self.validity_period(delivery)
        if validity <= 0:
            raise PermanentChannelError("the code expired before it could be sent", code="expired")
        body = self.body(delivery=delivery, action=action, secret=secret)
        params: dict[str, Any] = {"to": delivery.recipient_value, "body": body, "validity_period": validity}
        callback = status_callback_url()
        if callback:
            params["status_callback"] = callback
        if self.options.get("MESSAGING_SERVICE_SID"):
            params["messaging_service_sid"] = self.options["MESSAGING_SERVICE_SID"]
        else:
            params["from_"] = self._required("FROM")
        client = self.client()
        try:
            if delivery.send_attempts > 0:  # an earlier call may have gone out: never text the code twice
                earlier = self.find_sent(client, delivery, action, secret, body)
                if earlier:
                    return earlier
            try:
                message = client.messages.create(**params)
            except Exception as exc:
                error = map_error(exc)
                if error is None:
                    raise
                raise error from exc
            return str(message.sid or "")
        finally:
            session = getattr(client.http_client, "session", None)
            if session is not None:
                session.close()

    def find_sent(self, client: Any, delivery: Delivery, action: DeferredAction, secret: str,
                  body: str) -> str | None:
        """The SID of a message of this generation already sent to the recipient (None if there is none)."""
        since = self._generation_started(delivery) - timedelta(minutes=15)  # clock skew, queueing
        marks = (secret, code_page_url(action))
        try:
            to = delivery.recipient_value
            found = _match(client.messages.list(to=to, date_sent_after=since, limit=50), body, marks)
            if found is None:  # still queued at Twilio: no date_sent yet, so not in a date filter
                found = _match(client.messages.list(to=to, limit=20), body, marks)
        except Exception as exc:
            error = map_error(exc) or TransientChannelError(exc.__class__.__name__)
            if isinstance(error, PermanentChannelError):
                raise error from exc
            raise TransientChannelError(f"could not check for an earlier attempt: {error.reason}",
                                        code=error.code) from exc
        if found is None:
            return None
        error_code = getattr(found, "error_code", None)
        if getattr(found, "status", None) in ("failed", "undelivered") and _int(error_code) in PERMANENT_CODES:
            raise PermanentChannelError(
                f"{found.status}: {redact_contacts(str(getattr(found, 'error_message', None) or 'rejected'))}",
                code=str(error_code))
        return str(found.sid)

    def _generation_started(self, delivery: Delivery) -> Any:
        # generate() saves the delivery just before the first send of a generation; a resend restarts
        # expires_at at now + EXPIRES.  Take the earlier of the two.
        started = [delivery.updated_at or timezone.now()]
        if delivery.expires_at is not None and self.conf.get("EXPIRES"):
            started.append(delivery.expires_at - self.conf["EXPIRES"])
        return min(started)


def _match(messages: Any, body: str, marks: tuple[str, ...]) -> Any:
    """The message with this body, or, as its "N min" may have changed since, one with the code (new for each
    generation) and the code page's link (the action's) in it."""
    candidates = [m for m in messages if getattr(m, "status", None) != "canceled"]
    for message in candidates:
        if (getattr(message, "body", None) or "").strip() == body.strip():
            return message
    present = [mark for mark in marks if mark in body]  # a custom template may leave the link out
    if marks[0] not in present:  # the code identifies the generation: no code in the text, no guessing
        return None
    for message in candidates:
        text = getattr(message, "body", None) or ""
        if all(mark in text for mark in present):
            return message
    return None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def map_error(exc: Exception) -> TransientChannelError | PermanentChannelError | None:
    """Our error for an exception of the SDK (or of requests beneath it); None if it is neither's."""
    import requests

    _client, _http, TwilioException, TwilioRestException = _twilio()
    if isinstance(exc, requests.Timeout):
        return TransientChannelError("Twilio did not answer in time", code="timeout")
    if isinstance(exc, requests.ConnectionError):
        return TransientChannelError("Twilio could not be reached", code="connection")
    if isinstance(exc, requests.RequestException):
        return TransientChannelError(f"request to Twilio failed: {exc.__class__.__name__}")
    if not isinstance(exc, TwilioException):
        return None
    status, code, text = _error_parts(exc, TwilioRestException)
    if status is None:
        return TransientChannelError(f"Twilio error: {redact_contacts(text)[:500]}")
    for prefix in ("Unable to create record: ", "Unable to fetch record: ", "Unable to fetch page: "):
        text = text.removeprefix(prefix)
    reason = f"HTTP {status} from Twilio: {redact_contacts(text)[:500]}".rstrip(": ")
    label = str(code if code is not None else status)
    if code in PERMANENT_CODES:
        return PermanentChannelError(reason, code=label)
    if code in TRANSIENT_CODES or status in (408, 409, 429) or status >= 500:
        return TransientChannelError(reason, code=label)
    if 400 <= status < 500:
        return PermanentChannelError(reason, code=label)
    return TransientChannelError(reason, code=label)


def _error_parts(exc: Exception, rest_exception: type) -> tuple[int | None, int | None, str]:
    """(HTTP status, Twilio code, message) of a TwilioRestException, an RFC 9457 TwilioServiceException,
    or the bare TwilioException a failed list page raises (with the response as its second argument)."""
    if isinstance(exc, rest_exception) or hasattr(exc, "status"):
        text = getattr(exc, "msg", None) or getattr(exc, "detail", None) or getattr(exc, "title", None) or ""
        return _int(getattr(exc, "status", None)), _int(getattr(exc, "code", None)), str(text)
    response = exc.args[1] if len(exc.args) > 1 else None
    status = _int(getattr(response, "status_code", None))
    text = str(exc.args[0]) if exc.args else ""
    code = status
    try:
        payload = json.loads(getattr(response, "text", "") or "{}")
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        code = _int(payload.get("code")) or status
        text = str(payload.get("message") or payload.get("detail") or text)
    return status, code, text
