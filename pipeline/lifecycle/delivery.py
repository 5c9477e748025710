"""generate, deliver, resend: getting a fresh secret to the recipient.

generate (task ``confirmation.generate_token``) makes the secret, stores only its digest and passes the
secret, sealed, to deliver (task ``confirmation.send_notification``), which sends it.  Each delivery has a
``generation``; resend and redrive bump it, which kills the old secret and makes any older task in flight
a no-op.  Running either step twice has the effect of once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone, translation
from django.utils.translation import gettext

from deferred_confirmation.django_integration.models import DeferredAction, Delivery
from deferred_confirmation.django_integration.signals import confirmation_required
from deferred_confirmation.pipeline import crypto, dispatch, formdata, limits
from deferred_confirmation.pipeline.channels import PermanentChannelError, TransientChannelError, get_channel
from deferred_confirmation.pipeline.conf import app_settings
from deferred_confirmation.pipeline.lifecycle.steplog import annotate_step, log_transition, logged_step, silence_step
from deferred_confirmation.pipeline.lifecycle.transitions import (
    action_key,
    close_deliveries,
    fail,
    lock,
    locked_row_or_none,
    move,
    move_if,
    row_or_none,
)
from deferred_confirmation.pipeline.paths import import_path
from deferred_confirmation.pipeline.redaction import recipient_values, redact_contacts
from deferred_confirmation.pipeline.states import DeliveryStatus, State

logger = logging.getLogger("deferred_confirmation.lifecycle")
SECRET_PURPOSE = "secret-in-flight"


def _lock_pair(delivery_id: int) -> tuple[DeferredAction | None, Delivery | None]:
    """The delivery and its action, both row-locked: the action first, as everywhere (no deadlocks)."""
    action_uuid = Delivery.objects.filter(pk=delivery_id).values_list("action_id", flat=True).first()
    if action_uuid is None:
        return None, None
    action = lock(action_uuid)
    if action is None:
        return None, None
    delivery = row_or_none(Delivery.objects.select_for_update().filter(pk=delivery_id, action_id=action.pk))
    return action, delivery


def _still_wanted(action: DeferredAction | None, delivery: Delivery | None, generation: int,
                  status: str) -> bool:
    return (action is not None and delivery is not None and delivery.generation == generation
            and delivery.status == status and action.is_open and not action.has_expired()
            and not delivery.has_expired() and delivery.channel in app_settings.CHANNELS)


def _lock_delivery(delivery_id: int, action_id: Any) -> Delivery | None:
    """The delivery, row-locked, with its action read in the same query but not locked (generate's lookup).

    Enough for deciding whether to make a secret: whatever ends an action or replaces the secret (confirm,
    cancel, expire, fail, lock, resend) also updates this delivery row under its action's lock, so it either
    waits for this transaction and then supersedes what it made, or went first and is seen here.  Holding
    one row lock, never waiting for a second, it cannot take part in a deadlock.  ``action_id`` (the task's
    keyword) must be the delivery's action; without it (an earlier version's message) any action will do."""
    rows = Delivery.objects.select_related("action").filter(pk=delivery_id)
    action_uuid = action_key(action_id)
    if action_uuid is not None:
        rows = rows.filter(action_id=action_uuid)
    return locked_row_or_none(rows)


@logged_step("generate", done="generated")
def generate(delivery_id: int, generation: int, action_id: Any = None) -> bool:
    """Make and store the digest of a new secret, queue its sending; False if there is nothing to do."""
    annotate_step(delivery_id=delivery_id, generation=generation)
    with transaction.atomic():
        delivery = _lock_delivery(delivery_id, action_id)
        action = delivery.action if delivery is not None else None
        if delivery is not None:
            annotate_step(action_id=delivery.action_id, channel=delivery.channel)
        if not _still_wanted(action, delivery, generation, DeliveryStatus.QUEUED):
            return False
        channel = get_channel(delivery.channel)
        secret = channel.make_secret()
        delivery.secret_digest = channel.digest(delivery, secret)
        delivery.status = DeliveryStatus.GENERATED
        delivery.save(update_fields=["secret_digest", "status", "updated_at"])
        sealed = crypto.seal(SECRET_PURPOSE, secret)
        dispatch.enqueue(dispatch.SEND_NOTIFICATION, delivery.pk, generation, sealed, queue=channel.queue,
                         action_id=action.pk)
    return True


@logged_step("deliver", done="sent")
def deliver(delivery_id: int, generation: int, sealed_secret: str) -> bool:
    """Send the secret; transient channel errors propagate (the task retries), permanent ones are stored."""
    annotate_step(delivery_id=delivery_id, generation=generation)
    try:
        secret = crypto.open_sealed(SECRET_PURPOSE, sealed_secret)
    except (crypto.InvalidToken, ValueError, TypeError):
        annotate_step(outcome="dropped", level=logging.WARNING, reason="the sealed secret cannot be opened")
        return False
    delivery = row_or_none(Delivery.objects.select_related("action", "action__user").filter(pk=delivery_id))
    if delivery is not None:
        annotate_step(action_id=delivery.action_id, channel=delivery.channel)
    if delivery is None or not _still_wanted(delivery.action, delivery, generation, DeliveryStatus.GENERATED):
        return False
    action = delivery.action
    channel = get_channel(delivery.channel)
    if not channel.matches(delivery, secret):  # superseded by a resend since it was generated
        return False
    # Claimed (a lease) and counted before the call: of two copies of this task running at once (a message
    # delivered twice), only one calls the provider.  If this worker dies after the provider accepted the
    # message, the lease runs out before the broker redelivers the task (visibility timeout), and that copy
    # sees send_attempts > 0: the channel looks for the message instead of sending it again.
    now = timezone.now()
    claimed = Delivery.objects.filter(
        Q(sending_until__isnull=True) | Q(sending_until__lt=now),
        pk=delivery_id, generation=generation, status=DeliveryStatus.GENERATED,
    ).update(send_attempts=F("send_attempts") + 1, sending_until=now + app_settings.SEND_LEASE)
    if not claimed:
        annotate_step(outcome="skipped", level=logging.DEBUG, reason="another copy of this send holds it")
        return False
    try:
        provider_ref = _send(channel, delivery, action, secret)
        sent_at = timezone.now()  # the provider's accept, not the bookkeeping after the signal below
    except PermanentChannelError as exc:
        delivery_failed(delivery_id, generation, str(exc))
        silence_step()  # the deliver_failed line tells it
        return False
    except BaseException as exc:  # transient or unexpected: the task's retry must be able to claim it again
        fields = {"sending_until": None}
        if isinstance(exc, Exception) and not isinstance(exc, TransientChannelError):
            # Neither transient nor permanent (a template missing, a setting unset): the task fails, redrive
            # sends again at most MAX_REDRIVES times, and this is the reason the action then fails with.
            # The type only: the text may quote what was being rendered; it is in the worker's log.
            fields["status_detail"] = f"the send failed ({type(exc).__name__}); the details are in the server log"
        Delivery.objects.filter(pk=delivery_id, generation=generation).update(**fields)
        raise
    if confirmation_required.receivers:  # the sender (model_class) costs a query: only for someone listening
        action.token = secret  # for receivers, in memory only (docs/api.md#deferredform)
        confirmation_required.send_robust(sender=action.model_class or DeferredAction, instance=action,
                                          user=action.user, channel=delivery.channel)
        del action.token
    return _record_sent(action, delivery_id, generation, (provider_ref or "")[:255], sent_at)


def _record_sent(action: DeferredAction, delivery_id: int, generation: int, provider_ref: str,
                 sent_at: datetime) -> bool:
    """Mark the delivery sent and a pending action notified, in one transaction of two conditional UPDATEs.

    The action's first, as everywhere (its row lock before the delivery's: no deadlocks); it locks the action
    only if it is still pending, and otherwise this transaction holds one row lock and cannot deadlock either.
    The delivery changes only if it is still this generation's and waiting for its send: the same outcome as
    locking and reading the action first, in one round trip fewer and without reading its row."""
    now = timezone.now()
    this_send = Delivery.objects.filter(pk=delivery_id, action_id=action.pk, generation=generation)
    with transaction.atomic():
        notified = move_if(action.pk, State.PENDING, State.NOTIFIED)
        marked = this_send.filter(status=DeliveryStatus.GENERATED).update(
            status=DeliveryStatus.SENT, sent_at=sent_at, provider_ref=provider_ref,
            status_detail="",  # no longer "retrying: ..."
            sending_until=None, updated_at=now)
        if notified and not marked:
            transaction.set_rollback(True)  # not this send's to move: resent, cancelled or confirmed meanwhile
    if marked:
        if notified:
            log_transition(action, State.PENDING, State.NOTIFIED)
        return True
    # Confirmed before this ran (the link clicked the moment it arrived): the message did go out, and the row
    # says when.  Anything else (resent, cancelled, purged meanwhile) is left as it is.
    return bool(this_send.filter(status=DeliveryStatus.CONFIRMED, sent_at__isnull=True).update(
        sent_at=sent_at, provider_ref=provider_ref, sending_until=None, updated_at=now))


def _send(channel: Any, delivery: Delivery, action: DeferredAction, secret: str) -> str:
    """The form's own ``send_notification`` hook if it has one (docs/api.md#deferredform), else the channel; rendered in
    the language the change was saved in (docs/concepts.md#languages), whatever the worker's own LANGUAGE_CODE."""
    with translation.override(action.language or settings.LANGUAGE_CODE):
        form_class = import_path(action.form_class)
        if not hasattr(form_class, "send_notification"):
            return channel.send(delivery=delivery, action=action, secret=secret)
        form = form_class.rebuild(action=action, data=formdata.load(action.form_data), instance=action.target)
        form.confirming = True
        if not form.is_valid():
            raise PermanentChannelError(f"stored form is no longer valid: {form.errors.as_text()}")
        action.token = secret
        try:
            form.send_notification(user=action.user, instance=action)
        finally:
            del action.token
        return ""


@logged_step("deliver_retry", done="retrying")
def delivery_retrying(delivery_id: int, generation: int, reason: str, retry: int | None = None) -> bool:
    """A transient error; the send task will try again.  Touching the row tells redrive it is alive."""
    found = Delivery.objects.filter(pk=delivery_id).values("action_id", "channel").first() or {}
    annotate_step(level=logging.WARNING, action_id=found.get("action_id"), channel=found.get("channel"),
                  delivery_id=delivery_id, generation=generation, retry=retry, reason=redact_contacts(reason))
    return bool(Delivery.objects.filter(pk=delivery_id, generation=generation, status=DeliveryStatus.GENERATED).update(
        status_detail=f"retrying: {reason}"[:2000], updated_at=timezone.now()))


@logged_step("deliver_failed", done="failed")
def delivery_failed(delivery_id: int, generation: int, reason: str) -> bool:
    """Record a permanent failure; the action fails when no delivery is left that could still confirm it."""
    annotate_step(delivery_id=delivery_id, generation=generation)
    with transaction.atomic():
        action, delivery = _lock_pair(delivery_id)
        if action is not None and delivery is not None:
            annotate_step(action_id=action.pk, channel=delivery.channel)
        if action is None or delivery is None or delivery.generation != generation or delivery.status in (
                DeliveryStatus.FAILED, DeliveryStatus.CONFIRMED, DeliveryStatus.SUPERSEDED):
            return False
        # Providers echo what they were sent (an account number, an address): never stored where users read it.
        reason = redact_contacts(reason, recipient_values(delivery.recipient_value))
        fail_locked_delivery(action, delivery, reason, f"{delivery.channel} delivery failed: {reason}")
    annotate_step(level=logging.WARNING, reason=redact_contacts(reason))
    return True


def fail_locked_delivery(action: DeferredAction, delivery: Delivery, reason: str, action_reason: str) -> bool:
    """Mark ``delivery`` failed (its secret dies) and, when no delivery is left that could still confirm the
    action (or the policy is "all"), the action too, with ``action_reason``.  The caller holds both row locks.
    True if the action failed now."""
    delivery.status = DeliveryStatus.FAILED
    delivery.status_detail = reason[:2000]
    delivery.secret_digest = ""
    delivery.save(update_fields=["status", "status_detail", "secret_digest", "updated_at"])
    hopeless = action.channel_policy == "all" or not action.deliveries.exclude(
        status__in=[DeliveryStatus.FAILED, DeliveryStatus.SUPERSEDED]).exists()
    if not (action.is_open and hopeless):
        return False
    fail(action, action_reason)
    return True


@dataclass(frozen=True)
class ResendResult:
    sent: bool
    refusal: limits.SendRefusal | None = None  # why not, when a send limit or cooldown stood in the way

    def __bool__(self) -> bool:
        return self.sent

    @property
    def message(self) -> str:
        if self.sent:
            return gettext("A new secret is on its way; the previous one no longer works.")
        return self.refusal.message if self.refusal else gettext("This change can no longer be confirmed.")


@logged_step("resend", done="resent", skipped="refused")
def resend(action: DeferredAction, channel: str | None = None, *, client: str | None = None,
           user: Any = None) -> ResendResult:
    """Send fresh secrets for an open action; the old ones stop working at once.

    Refused (nothing changes, the old secret still works) within a channel's RESEND_COOLDOWN or past its
    SEND_LIMIT for the recipient, or past SEND_LIMIT_PER_CLIENT for the ``client`` (address) or ``user`` asking:
    a view passes both."""
    annotate_step(action_id=action.pk, channel=channel)
    with transaction.atomic():
        locked = DeferredAction.objects.select_for_update().filter(pk=action.pk).first()
        if locked is None or not locked.is_open or locked.has_expired():
            annotate_step(outcome="refused", level=logging.INFO, reason="not open")
            return ResendResult(False)
        deliveries = locked.deliveries.select_for_update().exclude(
            status__in=[DeliveryStatus.CONFIRMED, DeliveryStatus.SUPERSEDED])
        if channel is not None:
            deliveries = deliveries.filter(channel=channel)
        deliveries = list(deliveries)
        # A channel removed from settings cannot send (redrive ends its deliveries): refused, not a KeyError,
        # when nothing else could confirm the action.
        configured = app_settings.CHANNELS
        orphaned = [d for d in deliveries if d.channel not in configured]
        deliveries = [d for d in deliveries if d.channel in configured]
        if orphaned and (not deliveries or locked.channel_policy == "all"):
            annotate_step(outcome="refused", level=logging.INFO, reason="channel no longer configured")
            return ResendResult(False)
        # Each recipient's limit and cooldown, and the asking client's and user's limit across recipients: all
        # sends counted, or (refused) none.
        # Each recipient's limit and cooldown in the allowance its save was counted in (whoever asks now is
        # the action's owner); the client's and user's limits are those of whoever asks.
        refused = limits.reserve_sends(((d.channel, d.recipient_value) for d in deliveries), client=client,
                                       user=user, requester=[locked.requester_key], resend=True)
        if refused is not None:
            _name, refusal = refused
            annotate_step(outcome="refused", level=logging.INFO, reason=refusal.reason)
            return ResendResult(False, refusal)
        for delivery in deliveries:
            start_new_generation(delivery, locked)
        annotate_step(channel=",".join(sorted({d.channel for d in deliveries})) or channel)
    return ResendResult(bool(deliveries))


def start_new_generation(delivery: Delivery, action: DeferredAction) -> None:
    """New generation: clears the digest and queues a new secret (caller holds both row locks; the delivery's
    channel is configured, and its send was counted against the send limits).

    The new secret gets the channel's full EXPIRES again, but never past the action's deadline (the
    ``valid_until`` given to save(), else three times the channels' longest EXPIRES from the save), and the
    action lives as long, up to that deadline: however often it is resent, a change given five minutes stays
    confirmable five minutes.  (Actions stored before deadlines were always set have none: their expiry follows
    the resends.)  Wrong attempts are kept: a new secret is not a new set of tries (``send_attempts``, the
    provider calls of one generation, start over)."""
    conf = app_settings.channel(delivery.channel)
    expires_at = timezone.now() + conf["EXPIRES"]
    if action.deadline is not None:
        expires_at = min(expires_at, action.deadline)
    delivery.generation += 1
    delivery.secret_digest = ""
    delivery.status = DeliveryStatus.QUEUED
    delivery.status_detail = ""
    delivery.send_attempts = 0
    delivery.expires_at = expires_at
    delivery.save(update_fields=["generation", "secret_digest", "status", "status_detail", "send_attempts",
                                 "expires_at", "updated_at"])
    if action.valid_until < expires_at:
        action.valid_until = expires_at
        action.save(update_fields=["valid_until", "updated_at"])
    dispatch.enqueue(dispatch.GENERATE_TOKEN, delivery.pk, delivery.generation, queue=conf["QUEUE"],
                     action_id=action.pk)


@logged_step("cancel", done="cancelled")
def cancel(action: DeferredAction) -> bool:
    """Withdraw an open action: its secrets stop working; True if it was open."""
    annotate_step(action_id=action.pk)
    with transaction.atomic():
        locked = DeferredAction.objects.select_for_update().filter(pk=action.pk).first()
        if locked is None or not locked.is_open:
            return False
        move(locked, State.CANCELLED)
        close_deliveries(locked)
    action.refresh_from_db()
    return True
