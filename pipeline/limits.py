"""Send limits: how many secrets one recipient may be sent, and how soon after the last one.

Threats answered: SMS pumping (an attacker making us text premium numbers over and over), mail bombing of
a victim's inbox, and paid letters or payouts triggered in a loop.  Counted per channel and recipient
(stored only as a keyed hash) across all actions, like Twilio Verify's per-recipient limits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.utils import timezone
from django.utils.crypto import salted_hmac

from django_integration.models import SendRecord
from pipeline.conf import app_settings


@dataclass(frozen=True)
class SendRefusal:
    reason: str  # "cooldown" or "limit"
    retry_after: int  # seconds

    @property
    def message(self) -> str:
        minutes = max(1, round(self.retry_after / 60))
        if self.reason == "cooldown" and self.retry_after < 120:
            return f"A new secret was sent moments ago. You can ask for another in {self.retry_after} seconds."
        return f"Too many confirmation messages were sent to this recipient. Try again in {minutes} minutes."


class SendLimitExceeded(ValueError):
    def __init__(self, channel: str, refusal: SendRefusal):
        super().__init__(f"{channel}: {refusal.message}")
        self.channel = channel
        self.refusal = refusal


def recipient_key(channel: str, recipient: str) -> str:
    """Keyed hash of what identifies the recipient for ``channel`` (an address without the addressee's name, an
    account without the holder's), so spelling a name differently does not start a fresh allowance."""
    from pipeline.channels import configured_channel

    backend = configured_channel(channel)
    identity = backend.limit_identity(recipient) if backend is not None else recipient
    return salted_hmac("deferred_confirmation.recipient", f"{channel}:{identity}", algorithm="sha256").hexdigest()


def reserve_send(channel: str, recipient: str, *, resend: bool = False, now: datetime | None = None
                 ) -> SendRefusal | None:
    """Check the limits and, if one more send is allowed, count it, as one step per recipient.

    Call inside a transaction: concurrent requests for the same recipient are serialised (a PostgreSQL
    advisory lock; SQLite serialises writers by itself), so a burst of parallel saves cannot all pass the
    check before any of them is counted.  A rolled-back transaction un-counts its send."""
    now = now or timezone.now()
    refusal = check_send_locked(channel, recipient, resend=resend, now=now)
    if refusal is None:
        record_send(channel, recipient, now=now)
    return refusal


def lock_order(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(channel, recipient) pairs in the order their locks are taken: the same in every transaction (by key),
    so two saves or resends for the same two recipients, routed in different orders, cannot deadlock."""
    return sorted(pairs, key=lambda pair: recipient_key(*pair))


def check_send_locked(channel: str, recipient: str, *, resend: bool = False, now: datetime | None = None
                      ) -> SendRefusal | None:
    """:func:`check_send`, with the recipient serialised until the transaction ends: the first half of
    :func:`reserve_send`, for a caller that checks every recipient before counting any (:func:`record_send`)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [int(recipient_key(channel, recipient)[:15], 16)])
    return check_send(channel, recipient, resend=resend, now=now)


def record_send(channel: str, recipient: str, *, now: datetime | None = None) -> None:
    """Count one send to ``recipient`` (after :func:`check_send_locked` allowed it, in the same transaction)."""
    SendRecord.objects.create(channel=channel, recipient_key=recipient_key(channel, recipient),
                              created_at=now or timezone.now())


def check_send(channel: str, recipient: str, *, resend: bool = False, now: datetime | None = None
               ) -> SendRefusal | None:
    """Why one more secret may not be sent to ``recipient`` now (None: it may).  Cooldown only on resends."""
    now = now or timezone.now()
    conf = app_settings.channel(channel)
    sends = SendRecord.objects.filter(channel=channel, recipient_key=recipient_key(channel, recipient))
    cooldown = conf.get("RESEND_COOLDOWN")
    if resend and cooldown:
        last = sends.filter(created_at__gt=now - cooldown).order_by("-created_at").values_list(
            "created_at", flat=True).first()
        if last is not None:
            return SendRefusal("cooldown", _seconds(last + cooldown - now))
    limit, window = conf.get("SEND_LIMIT"), conf.get("SEND_WINDOW")
    if limit and window:
        recent = list(sends.filter(created_at__gt=now - window).order_by("-created_at").values_list(
            "created_at", flat=True)[:limit])
        if len(recent) >= limit:
            return SendRefusal("limit", _seconds(recent[-1] + window - now))
    return None


def _seconds(delta) -> int:
    return max(1, int(delta.total_seconds() + 0.999))
