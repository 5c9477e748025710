"""Send limits: how many secrets one recipient may be sent, and how soon after the last one; and how many one
client or signed-in user may have sent, across all recipients.

Threats answered:
- SMS pumping (an attacker making us text premium numbers over and over), mail bombing of a victim's inbox,
  and paid letters or payouts triggered in a loop: counted per channel and recipient across all actions,
  like Twilio Verify's per-recipient limits.
- A stranger using up someone else's allowance (entering a victim's address or bank account again and again
  so that the victim's own change is refused for days): each requester (the client address; the user for a
  save outside a request) has their own SEND_LIMIT for a recipient, and all requesters together
  ALL_REQUESTERS_FACTOR times that.
- The same from one client to many recipients (a list of premium numbers, a list of inboxes): counted per
  client address (:mod:`deferred_confirmation.django_integration.clients`) and per signed-in user, SEND_LIMIT_PER_CLIENT
  per SEND_WINDOW_PER_CLIENT, one per recipient sent to, at save() and at resend.
- A recipient (a bank account, an address) in clear in an error report: the functions that hold one are
  ``sensitive_variables``, so Django's reports (and reporters that use its filter) show stars for their locals.
- A rotated SECRET_KEY resetting every limit: recipients, clients and users are stored only as keyed hashes
  (no personal data in these rows), and a send recorded under a key in SECRET_KEY_FALLBACKS still counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext
from django.views.decorators.debug import sensitive_variables

from deferred_confirmation.django_integration.models import SendRecord
from deferred_confirmation.pipeline.conf import CHANNEL_DEFAULTS, app_settings
from deferred_confirmation.pipeline.exceptions import SendLimitExceeded as SendLimitExceeded  # re-exported

#: SendRecord.channel of the rows counted per sender rather than per recipient (no channel name starts with "@").
CLIENT_SCOPE, USER_SCOPE = "@client", "@user"


@dataclass(frozen=True)
class SendRefusal:
    reason: str  # "cooldown" or "limit"
    retry_after: int  # seconds
    scope: str = "recipient"  # whose limit: the recipient's, or the sender's (CLIENT_SCOPE, USER_SCOPE)

    @property
    def message(self) -> str:
        # In the language active when it is shown (a form error, the resend page), not when it was made.
        minutes = max(1, round(self.retry_after / 60))
        if self.scope != "recipient":
            return gettext("Too many confirmation messages were requested from here. Try again in %(minutes)d "
                           "minutes.") % {"minutes": minutes}
        if self.reason == "cooldown" and self.retry_after < 120:
            return gettext("A new secret was sent moments ago. You can ask for another in %(seconds)d "
                           "seconds.") % {"seconds": self.retry_after}
        return gettext("Too many confirmation messages were sent to this recipient. Try again in %(minutes)d "
                       "minutes.") % {"minutes": minutes}



def _keys(salt: str, value: str, *, current_only: bool = False) -> list[str]:
    """Keyed hashes of ``value``: under SECRET_KEY first, then under each of SECRET_KEY_FALLBACKS."""
    secrets = [settings.SECRET_KEY]
    if not current_only:
        secrets += list(getattr(settings, "SECRET_KEY_FALLBACKS", None) or [])
    return [salted_hmac(salt, value, secret=secret, algorithm="sha256").hexdigest() for secret in secrets]


@sensitive_variables()
def _identity(channel: str, recipient: str) -> str:
    from deferred_confirmation.pipeline.channels import configured_channel

    backend = configured_channel(channel)
    return f"{channel}:{backend.limit_identity(recipient) if backend is not None else recipient}"


#: A recipient's SEND_LIMIT is counted per requester (the client address, see :func:`requester_keys`), so a
#: stranger who keeps entering someone else's address or account uses up only their own allowance, never the
#: owner's.
#: Whoever asks, a recipient is sent at most this many times SEND_LIMIT per SEND_WINDOW: many strangers
#: together still cannot bomb one inbox or phone.
ALL_REQUESTERS_FACTOR = 3


@sensitive_variables()
def recipient_key(channel: str, recipient: str) -> str:
    """Keyed hash of what identifies the recipient for ``channel`` (an address without the addressee's name, an
    account without the holder's), so spelling a name differently does not start a fresh allowance."""
    return _keys("deferred_confirmation.recipient", _identity(channel, recipient), current_only=True)[0]


@sensitive_variables()
def recipient_keys(channel: str, recipient: str) -> list[str]:
    """:func:`recipient_key` under the current SECRET_KEY and under each fallback: sends recorded before a
    key rotation still count."""
    return _keys("deferred_confirmation.recipient", _identity(channel, recipient))


def senders(client: str | None, user: Any = None) -> list[tuple[str, str]]:
    """(scope, identity) of whoever asks for a send: the client address, the signed-in user."""
    found = []
    if client:
        found.append((CLIENT_SCOPE, client))
    if getattr(user, "pk", None) is not None and getattr(user, "is_authenticated", True):
        found.append((USER_SCOPE, str(user.pk)))
    return found


def sender_keys(scope: str, identity: str) -> list[str]:
    """Keyed hashes of a sender (current SECRET_KEY first, then the fallbacks): an address or a user id is
    never stored in clear."""
    return _keys("deferred_confirmation.sender", f"{scope}:{identity}")


def requester_keys(client: str | None, user: Any = None) -> list[str]:
    """Keyed hashes of whose allowance of a recipient's SEND_LIMIT a send is counted in (current SECRET_KEY
    first): the client address when there is one, so signing in with more accounts from the same place adds no
    allowance; else the user (a save outside a request on someone's behalf); ``[""]`` when neither is known
    (saves outside a request share one allowance per recipient)."""
    found = dict(senders(client, user))
    for scope in (CLIENT_SCOPE, USER_SCOPE):
        if scope in found:
            return sender_keys(scope, found[scope])
    return [""]


@sensitive_variables()
def reserve_send(channel: str, recipient: str, *, resend: bool = False, now: datetime | None = None,
                 requester: Sequence[str] = ("",)) -> SendRefusal | None:
    """Check the limits and, if one more send is allowed, count it, as one step per recipient.

    Call inside a transaction: concurrent requests for the same recipient are serialised (a PostgreSQL
    advisory lock; SQLite serialises writers by itself), so a burst of parallel saves cannot all pass the
    check before any of them is counted.  A rolled-back transaction un-counts its send."""
    now = now or timezone.now()
    refusal = check_send_locked(channel, recipient, resend=resend, now=now, requester=requester)
    if refusal is None:
        record_send(channel, recipient, now=now, requester=requester)
    return refusal


@sensitive_variables()
def check_sends(recipients: Iterable[tuple[str, str]], *, client: str | None = None, user: Any = None,
                requester: Sequence[str] | None = None, resend: bool = False, now: datetime | None = None,
                lock: bool = False) -> tuple[str, SendRefusal] | None:
    """The first limit that refuses sending to ``recipients`` ((channel, recipient) pairs) at the request of
    ``client`` and ``user``, as (channel or scope, why not); None if every one allows it.  Counts nothing.

    Each recipient's own limit is read in the allowance of ``requester`` (keys from :func:`requester_keys`; by
    default the client's or user's: a resend passes the action's, so it counts where its save did).  With
    ``lock`` (inside a transaction, as :func:`reserve_sends` calls it) every recipient, then every sender, is
    serialised by key until the transaction ends."""
    now = now or timezone.now()
    pairs = list(recipients)
    requester = requester if requester is not None else requester_keys(client, user)
    check = check_send_locked if lock else check_send
    for name, recipient in lock_order(pairs):
        refusal = check(name, recipient, resend=resend, now=now, requester=requester)
        if refusal is not None:
            return name, refusal
    for scope, identity in sorted(senders(client, user), key=lambda sender: sender_keys(*sender)[0]):
        if lock:
            _lock(sender_keys(scope, identity)[0])
        refusal = check_sender(scope, identity, len(pairs), now=now)
        if refusal is not None:
            return scope, refusal
    return None


@sensitive_variables()
def reserve_sends(recipients: Iterable[tuple[str, str]], *, client: str | None = None, user: Any = None,
                  requester: Sequence[str] | None = None, resend: bool = False, now: datetime | None = None
                  ) -> tuple[str, SendRefusal] | None:
    """Check every limit on sending to ``recipients`` (:func:`check_sends`) and count the sends only if none
    refuses; else (channel or scope, why not), nothing counted.

    Call inside a transaction (it holds the locks until the end): recipients are serialised in
    :func:`lock_order`, then the senders, by key, so parallel saves cannot overshoot a limit and two
    transactions never wait for each other's locks in opposite orders."""
    now = now or timezone.now()
    pairs = list(recipients)
    requester = requester if requester is not None else requester_keys(client, user)
    refused = check_sends(pairs, client=client, user=user, requester=requester, resend=resend, now=now, lock=True)
    if refused is not None:
        return refused
    for name, recipient in pairs:
        record_send(name, recipient, now=now, requester=requester)
    SendRecord.objects.bulk_create([SendRecord(channel=scope, recipient_key=sender_keys(scope, identity)[0],
                                               created_at=now)
                                    for scope, identity in senders(client, user) for _ in pairs])
    return None


def check_sender(scope: str, identity: str, sends: int = 1, *, now: datetime | None = None) -> SendRefusal | None:
    """Why ``sends`` more secrets may not go out at the request of this client or user now (None: they may).

    A save with more recipients than the limit goes through only when nothing else was sent in the window."""
    limit, window = app_settings.SEND_LIMIT_PER_CLIENT, app_settings.SEND_WINDOW_PER_CLIENT
    if not limit or not window or sends < 1:
        return None
    now = now or timezone.now()
    recent = list(SendRecord.objects.filter(
        channel=scope, recipient_key__in=sender_keys(scope, identity), created_at__gt=now - window,
    ).order_by("-created_at").values_list("created_at", flat=True)[:limit])
    if not recent or len(recent) + sends <= limit:
        return None
    # They fit once all but the newest (limit - sends) sends have left the window.
    return SendRefusal("limit", _seconds(recent[max(0, limit - sends)] + window - now), scope=scope)


@sensitive_variables()
def lock_order(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(channel, recipient) pairs in the order their locks are taken: the same in every transaction (by key),
    so two saves or resends for the same two recipients, routed in different orders, cannot deadlock."""
    return sorted(pairs, key=lambda pair: recipient_key(*pair))


@sensitive_variables()
def check_send_locked(channel: str, recipient: str, *, resend: bool = False, now: datetime | None = None,
                      requester: Sequence[str] = ("",)) -> SendRefusal | None:
    """:func:`check_send`, with the recipient serialised until the transaction ends: the first half of
    :func:`reserve_send`, for a caller that checks every recipient before counting any (:func:`record_send`)."""
    _lock(recipient_key(channel, recipient))
    return check_send(channel, recipient, resend=resend, now=now, requester=requester)


def _lock(key: str) -> None:
    """Serialise transactions on ``key`` (a keyed hash, under the current SECRET_KEY) until this one ends."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [int(key[:15], 16)])


@sensitive_variables()
def record_send(channel: str, recipient: str, *, now: datetime | None = None, requester: Sequence[str] = ("",)
                ) -> None:
    """Count one send to ``recipient`` in ``requester``'s allowance (its keys, current first; after
    :func:`check_send_locked` allowed it, in the same transaction)."""
    SendRecord.objects.create(channel=channel, recipient_key=recipient_key(channel, recipient),
                              sender_key=requester[0], created_at=now or timezone.now())


@sensitive_variables()
def check_send(channel: str, recipient: str, *, resend: bool = False, now: datetime | None = None,
               requester: Sequence[str] = ("",)) -> SendRefusal | None:
    """Why one more secret may not be sent to ``recipient`` in ``requester``'s allowance now (None: it may):
    their RESEND_COOLDOWN (resends only) and SEND_LIMIT for this recipient, and the recipient's limit from
    everyone together (:data:`ALL_REQUESTERS_FACTOR` times SEND_LIMIT).  ``requester``: keys from
    :func:`requester_keys`; the default is the allowance shared by sends whose requester is unknown."""
    now = now or timezone.now()
    conf = app_settings.channel(channel)
    sends = SendRecord.objects.filter(channel=channel, recipient_key__in=recipient_keys(channel, recipient))
    asked = sends.filter(sender_key__in=list(requester))
    cooldown = conf.get("RESEND_COOLDOWN")
    if resend and cooldown:
        last = asked.filter(created_at__gt=now - cooldown).order_by("-created_at").values_list(
            "created_at", flat=True).first()
        if last is not None:
            return SendRefusal("cooldown", _seconds(last + cooldown - now))
    limit, window = conf.get("SEND_LIMIT"), conf.get("SEND_WINDOW")
    if limit and window:
        for counted, most in ((asked, limit), (sends, limit * ALL_REQUESTERS_FACTOR)):
            recent = list(counted.filter(created_at__gt=now - window).order_by("-created_at").values_list(
                "created_at", flat=True)[:most])
            if len(recent) >= most:
                return SendRefusal("limit", _seconds(recent[-1] + window - now))
    return None


def longest_window() -> timedelta:
    """How far back any limit or cooldown looks: every channel's SEND_WINDOW and RESEND_COOLDOWN (the built-in
    channels' defaults too, so taking a channel out of settings for a while does not reset its limits) and the
    clients' SEND_WINDOW_PER_CLIENT."""
    spans = [app_settings.SEND_WINDOW_PER_CLIENT or timedelta(0)]
    for conf in [*app_settings.CHANNELS.values(), *CHANNEL_DEFAULTS.values()]:
        spans += [conf.get("SEND_WINDOW") or timedelta(0), conf.get("RESEND_COOLDOWN") or timedelta(0)]
    return max(spans)


def forgotten_sends(now: datetime | None = None) -> QuerySet[SendRecord]:
    """Sends older than :func:`longest_window`: no limit counts them any more, so the purge deletes them
    (kept, they would only grow the table and its index, one row per secret ever sent)."""
    return SendRecord.objects.filter(created_at__lt=(now or timezone.now()) - longest_window())


def _seconds(delta) -> int:
    return max(1, int(delta.total_seconds() + 0.999))
