"""Delivery-status webhooks of SMS providers: ``confirmation:twilio_status``.

Twilio POSTs each status change of a message to the ``StatusCallback`` the SMS channel gave it, signed
with the account's auth token in ``X-Twilio-Signature``.  The signature covers the full URL, which we
rebuild from ``SITE_URL`` and the request path, never from the Host header (a forged Host must not make
a forged signature match).  Answers: 403 for a missing or wrong signature, 200 for everything signed
(unknown messages too: Twilio would otherwise retry a report we can never use).
"""

from __future__ import annotations

import logging
import re

from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from deferred_confirmation.pipeline.conf import app_settings
from deferred_confirmation.pipeline.lifecycle import report_status
from deferred_confirmation.pipeline.paths import import_path
from deferred_confirmation.pipeline.siteurl import absolute_url, site_url

logger = logging.getLogger("deferred_confirmation.webhooks")

#: Twilio's message statuses -> ours; the others (queued, sending, sent, accepted, scheduled...) say nothing new.
TWILIO_STATUSES = {
    "delivered": "delivered",
    "read": "delivered",
    "failed": "failed",
    "undelivered": "failed",
    "canceled": "failed",
}
#: Short texts for the error codes Twilio sends with failed/undelivered messages (stored with the code).
TWILIO_ERRORS = {
    "30001": "queue overflow",
    "30002": "account suspended",
    "30003": "unreachable destination handset",
    "30004": "message blocked",
    "30005": "unknown destination handset",
    "30006": "landline or unreachable carrier",
    "30007": "filtered by the carrier",
    "30008": "unknown error",
    "30034": "message from an unregistered number",
    "21610": "the recipient unsubscribed (STOP)",
}
_SID_RE = re.compile(r"\A[A-Za-z]{2}[0-9a-fA-F]{32}\Z")
_CODE_RE = re.compile(r"\A[0-9]{1,8}\Z")


def _twilio_channels() -> list:
    """Every configured channel whose backend is the Twilio SMS channel (or a subclass)."""
    from deferred_confirmation.pipeline.channels import get_channel
    from deferred_confirmation.pipeline.channels.sms import TwilioSMSChannel

    found = []
    for name, conf in app_settings.CHANNELS.items():
        try:
            backend = import_path(conf["BACKEND"])
        except ImportError:
            continue
        if isinstance(backend, type) and issubclass(backend, TwilioSMSChannel):
            found.append(get_channel(name))
    return found


def _signed_by(request: HttpRequest, signature: str):
    """The channel whose auth token signed this request, or None."""
    from twilio.request_validator import RequestValidator

    if not site_url():
        logger.error("Twilio status webhook refused: SITE_URL is not set, so its signature cannot be checked")
        return None
    url = absolute_url(request.get_full_path())
    for channel in _twilio_channels():
        token = channel.options.get("AUTH_TOKEN")
        if token and RequestValidator(token).validate(url, request.POST, signature):
            return channel
    return None


@csrf_exempt
@never_cache
@require_POST
def twilio_status(request: HttpRequest) -> HttpResponse:
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or len(signature) > 200:
        return HttpResponseForbidden("missing signature", content_type="text/plain")
    channel = _signed_by(request, signature)
    if channel is None:
        logger.warning("Twilio status webhook with a wrong signature refused")
        return HttpResponseForbidden("invalid signature", content_type="text/plain")
    sid = request.POST.get("MessageSid") or request.POST.get("SmsSid") or ""
    twilio_status_word = (request.POST.get("MessageStatus") or request.POST.get("SmsStatus") or "").lower()
    status = TWILIO_STATUSES.get(twilio_status_word)
    if status is None or not _SID_RE.match(sid):
        return HttpResponse(status=200, content_type="text/plain")
    error_code = request.POST.get("ErrorCode", "")
    if not _CODE_RE.match(error_code):
        error_code = ""
    detail = twilio_status_word
    if error_code:
        detail = f"{error_code}: {twilio_status_word} ({TWILIO_ERRORS.get(error_code, 'Twilio error')})"
    report_status(channel.name, sid, status, detail)
    return HttpResponse(status=200, content_type="text/plain")
