"""expire, purge, redrive: the periodic sweeps (beat), each in small batches of short transactions.

Batches use ``SELECT ... FOR UPDATE SKIP LOCKED`` where the database has it, so a sweep never waits on,
or blocks, a user confirming an action at the same moment, and no lock is held longer than one batch.

What each sweep would touch is one queryset (:func:`stale_actions`, :func:`purgeable_actions`,
:func:`stuck_actions`), shared by the sweep itself and by the operator's ``--dry-run``.  Each sweep takes an
optional ``progress`` callback, called after every batch with the running total, and logs one structured line
(logger ``deferred_confirmation.lifecycle``, ``extra={"event": ..., "count": ..., "duration_ms": ...}``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from deferred_confirmation.django_integration.models import DeferredAction, Delivery, Payout, SendRecord
from deferred_confirmation.django_integration.signals import action_expired
from deferred_confirmation.pipeline import dispatch, limits
from deferred_confirmation.pipeline.channels import configured_channel
from deferred_confirmation.pipeline.conf import app_settings
from deferred_confirmation.pipeline.lifecycle.confirming import expire_one
from deferred_confirmation.pipeline.lifecycle.delivery import fail_locked_delivery, start_new_generation
from deferred_confirmation.pipeline.lifecycle.transitions import fail, lock, logger, signal_on_commit
from deferred_confirmation.pipeline.redaction import recipient_values, redact_contacts
from deferred_confirmation.pipeline.states import OPEN, TERMINAL, DeliveryStatus, State

Progress = Callable[[int], None]
#: Delivery states that may still lead to a confirmation.
LIVE = [DeliveryStatus.QUEUED, DeliveryStatus.GENERATED, DeliveryStatus.SENT, DeliveryStatus.DELIVERED]


def stale_actions(now: datetime | None = None) -> QuerySet[DeferredAction]:
    """Open actions past their ``valid_until``: what :func:`expire` marks expired."""
    return DeferredAction.objects.filter(state__in=OPEN, valid_until__lte=now or timezone.now())


def purgeable_actions(now: datetime | None = None) -> QuerySet[DeferredAction]:
    """Finished actions untouched for longer than RETENTION: what :func:`purge` deletes."""
    return DeferredAction.objects.filter(state__in=TERMINAL,
                                         updated_at__lt=(now or timezone.now()) - app_settings.RETENTION)


def orphaned_payouts(now: datetime | None = None) -> QuerySet[Payout]:
    """Payouts whose delivery is already gone, older than RETENTION: :func:`purge` deletes them too."""
    return Payout.objects.filter(delivery__isnull=True,
                                 created_at__lt=(now or timezone.now()) - app_settings.RETENTION)


def stuck_actions(now: datetime | None = None) -> QuerySet[DeferredAction]:
    """What :func:`redrive` queues again (or ends): actions ``confirmed`` untouched for longer than
    REDRIVE_AFTER, and open, not past due actions either still ``pending`` that long, or with a delivery whose
    new secret has waited that long (a resend whose publish was lost leaves a ``notified`` action with a
    queued delivery), or with a delivery still waiting on a channel no longer in settings."""
    now = now or timezone.now()
    cutoff = now - app_settings.REDRIVE_AFTER
    waiting = Delivery.objects.filter(action=OuterRef("pk"), updated_at__lt=cutoff,
                                      status__in=[DeliveryStatus.QUEUED, DeliveryStatus.GENERATED])
    orphaned = Delivery.objects.filter(action=OuterRef("pk"), status__in=LIVE).exclude(
        channel__in=list(app_settings.CHANNELS))
    return DeferredAction.objects.filter(
        Q(state=State.CONFIRMED, updated_at__lt=cutoff)
        | (Q(state__in=OPEN, valid_until__gt=now)
           & (Q(state=State.PENDING, updated_at__lt=cutoff) | Exists(waiting) | Exists(orphaned))))


def _redelivery_window() -> timedelta:
    """How long the broker may hold an unacknowledged task before delivering it again (Redis' visibility
    timeout), plus a minute: a send that reached its provider is redelivered within it, not redriven."""
    try:
        options = dispatch.celery_app().conf.broker_transport_options or {}
    except Exception:
        options = {}
    return timedelta(seconds=options.get("visibility_timeout", 3600)) + timedelta(minutes=1)


def _batch(queryset, size: int) -> list:
    return list(queryset.select_for_update(skip_locked=True).values_list("pk", flat=True)[:size])


def _log_sweep(event: str, count: int, started: float, **extra: int) -> None:
    duration_ms = round((time.monotonic() - started) * 1000)
    logger.info("%s: %d actions in %d ms", event, count, duration_ms,
                extra={"event": event, "outcome": "done", "count": count, "duration_ms": duration_ms, **extra})


def expire(now: datetime | None = None, batch_size: int | None = None, progress: Progress | None = None) -> int:
    """Mark open actions past their ``valid_until`` expired; returns how many.

    One open state at a time, in ``valid_until`` order, each batch starting where the last one ended: every
    batch is a short range scan of the ``(state, valid_until)`` index.  Without that cursor each batch (and
    the last, empty one) would read again past every row already expired in this sweep (their old versions
    stay in the table and the index until vacuum): with a large backlog, a sequential scan of the whole table
    per batch.  A row skipped because it was locked (a user confirming it at that moment: confirm expires a
    past-due action itself) is left to the next sweep.
    """
    started = time.monotonic()
    now = now or timezone.now()
    size = batch_size or app_settings.BATCH_SIZE
    stale = stale_actions(now)
    total = 0
    for state in sorted(OPEN):
        since = None
        while True:
            with transaction.atomic():
                batch = stale.filter(state=state) if since is None else stale.filter(state=state,
                                                                                     valid_until__gte=since)
                rows = list(batch.order_by("valid_until").select_for_update(skip_locked=True)
                            .values_list("pk", "valid_until")[:size])
                if not rows:
                    break
                ids = [pk for pk, _valid_until in rows]
                since = rows[-1][1]
                done = stale.filter(pk__in=ids).update(state=State.EXPIRED, updated_at=now)
                Delivery.objects.filter(action_id__in=ids).exclude(
                    status__in=[DeliveryStatus.CONFIRMED, DeliveryStatus.FAILED]).update(
                    status=DeliveryStatus.SUPERSEDED, updated_at=now)
                # Any receiver at all (has_listeners() without a sender misses those connected for one model):
                # signal_on_commit sends to the action's model.  None: no row is read for the signal.
                if action_expired.receivers:
                    for action in DeferredAction.objects.filter(pk__in=ids, state=State.EXPIRED):
                        signal_on_commit(action_expired, action)
            total += done
            if progress is not None:
                progress(total)
    _log_sweep("expire", total, started)
    return total


@dataclass
class _Sweep:
    """What one redrive batch does: the re-sends it wants (counted against the send limits before any is
    made), the actions it re-queued (each counts one redrive), and how many it ended."""

    now: datetime
    cutoff: datetime
    late_send: datetime
    resends: list[tuple[DeferredAction, Delivery, str]] = field(default_factory=list)
    requeued: set = field(default_factory=set)
    failed: int = 0


def _redrive_one(action: DeferredAction, sweep: _Sweep) -> None:
    """Re-queue one stuck action (row-locked by the batch), or end it: past MAX_REDRIVES, or with no channel
    left that could confirm it."""
    if action.state == State.CONFIRMED:
        if _given_up(action, sweep, "the change was never applied"):
            return
        dispatch.enqueue(dispatch.APPLY_ACTION, str(action.pk), queue=app_settings.APPLY_QUEUE)
        sweep.requeued.add(action.pk)
        return
    deliveries = list(action.deliveries.select_for_update().filter(status__in=LIVE).order_by("pk"))
    configured = app_settings.CHANNELS
    orphaned = [d for d in deliveries if d.channel not in configured]
    if orphaned and _end_orphans(action, orphaned, sweep):
        return
    queued, stale = [], []
    for delivery in deliveries:
        if delivery.channel not in configured:
            continue
        if delivery.status == DeliveryStatus.QUEUED:
            queued.append(delivery)
        elif delivery.status == DeliveryStatus.GENERATED and delivery.updated_at < (
                sweep.late_send if delivery.send_attempts else sweep.cutoff):
            stale.append(delivery)
    if not (queued or stale):
        return  # a send that reached its provider, waiting for the broker's redelivery: no redrive
    if _given_up(action, sweep, _last_detail(queued + stale)):
        return
    # A queued delivery's generate_token was lost: publish it again (it is idempotent; its send was counted
    # when it was queued).
    for delivery in queued:
        dispatch.enqueue(dispatch.GENERATE_TOKEN, delivery.pk, delivery.generation,
                         queue=configured[delivery.channel]["QUEUE"], action_id=action.pk)
        Delivery.objects.filter(pk=delivery.pk).update(updated_at=sweep.now)
        sweep.requeued.add(action.pk)
    # A generated one whose send has shown no sign of life since the cutoff (a retrying send touches the row
    # on every retry) lost its sealed secret, or its send failed with an error that is neither transient nor
    # permanent: a new generation, a new send, counted against the send limits (after the whole batch is
    # known, in lock order).  If the send already called the provider, the broker redelivers that task after
    # its visibility timeout (an SMS or payout made once, then recognised); only past that window is a new
    # generation the way out.
    for delivery in stale:
        try:
            recipient = delivery.recipient_value
        except Exception:  # a sealed recipient that no key opens any more (a SECRET_KEY rotated away)
            _fail_delivery(action, delivery, "the recipient can no longer be read", sweep)
            if not action.is_open:
                return
            continue
        sweep.resends.append((action, delivery, recipient))


def _resend_counted(sweep: _Sweep) -> None:
    """Make the re-sends the send limits allow, each counted like any send; a refused one is left as it is
    (no redrive counted: it ends when the action expires, or is re-sent by a later sweep)."""
    ordered = sorted(sweep.resends, key=lambda item: limits.recipient_key(item[1].channel, item[2]))
    for action, delivery, recipient in ordered:
        if not action.is_open:
            continue
        # Counted in the allowance of whoever saved the action, as its first send was.
        if limits.reserve_send(delivery.channel, recipient, requester=[action.requester_key]) is not None:
            continue
        start_new_generation(delivery, action)
        sweep.requeued.add(action.pk)


def _given_up(action: DeferredAction, sweep: _Sweep, detail: str) -> bool:
    """Past MAX_REDRIVES: the action ends failed, with what went wrong last."""
    limit = app_settings.MAX_REDRIVES
    if action.redrives < limit:
        return False
    fail(action, f"gave up after {action.redrives} redrives: {detail}")
    _ended(action, sweep)
    return True


def _ended(action: DeferredAction, sweep: _Sweep, **extra: str) -> None:
    """Count and log an action this sweep ended ``failed``."""
    sweep.failed += 1
    logger.warning("redrive: action %s failed: %s", action.pk, action.failure_reason,
                   extra={"event": "redrive", "outcome": "failed", "action_id": str(action.pk),
                          "reason": action.failure_reason, **extra})


def _last_detail(deliveries: list[Delivery]) -> str:
    """The last reason one of the stuck ``deliveries`` recorded (contacts masked), or a plain statement."""
    told = sorted((d for d in deliveries if d.status_detail), key=lambda d: (d.updated_at, d.pk))
    if not told:
        return "the confirmation was never sent"
    delivery = told[-1]
    try:
        known = recipient_values(delivery.recipient_value)
    except Exception:
        known = recipient_values(delivery.recipient)
    return redact_contacts(delivery.status_detail, known)


def _end_orphans(action: DeferredAction, orphaned: list[Delivery], sweep: _Sweep) -> bool:
    """Deliveries of channels removed from settings can never be confirmed: failed; the action too when no
    other delivery can still confirm it (as a permanent send failure would).  True if the action ended."""
    for delivery in orphaned:
        _fail_delivery(action, delivery, f"the {delivery.channel} channel is no longer configured", sweep)
        if not action.is_open:
            return True
    return False


def _fail_delivery(action: DeferredAction, delivery: Delivery, reason: str, sweep: _Sweep) -> None:
    if fail_locked_delivery(action, delivery, reason, reason):
        _ended(action, sweep, channel=delivery.channel)


def expire_now(action: DeferredAction) -> bool:
    """Expire one open action at once (operator's choice); True if it was open."""
    with transaction.atomic():
        locked = lock(action.pk)
        if locked is None or not locked.is_open:
            return False
        expire_one(locked)
    return True


def purge(now: datetime | None = None, batch_size: int | None = None, progress: Progress | None = None) -> int:
    """Delete terminal actions (and their deliveries, with the recipients) older than RETENTION, and the
    send records no send limit counts any more (:func:`deferred_confirmation.pipeline.limits.forgotten_sends`)."""
    started = time.monotonic()
    now = now or timezone.now()
    size = batch_size or app_settings.BATCH_SIZE
    old = purgeable_actions(now)
    total = 0
    while True:
        with transaction.atomic():
            ids = _batch(old.order_by(), size)
            if not ids:
                break
            _discard_stored_secrets(Delivery.objects.filter(action_id__in=ids))
            # Payout instructions hold bank details: they go with their action.
            Payout.objects.filter(delivery__action_id__in=ids).delete()
            Delivery.objects.filter(action_id__in=ids).delete()
            total += DeferredAction.objects.filter(pk__in=ids).delete()[1].get(DeferredAction._meta.label, 0)
        if progress is not None:
            progress(total)
    # Payouts whose delivery is already gone (SET_NULL) are kept no longer than RETENTION either.
    payouts = orphaned_payouts(now).delete()[1].get(Payout._meta.label, 0)
    sends = 0
    while ids := list(limits.forgotten_sends(now).order_by().values_list("pk", flat=True)[:size]):
        sends += SendRecord.objects.filter(pk__in=ids).delete()[0]
    _log_sweep("purge", total, started, orphaned_payouts=payouts, forgotten_sends=sends)
    return total


def _discard_stored_secrets(deliveries) -> None:
    for delivery in deliveries:
        channel = configured_channel(delivery.channel)
        try:
            if channel is not None:
                channel.discard(delivery)
        except Exception:  # storage down: keep purging the database, say so loudly
            logger.exception("purge: could not discard what %s stored for delivery %s", delivery.channel, delivery.pk)


def redrive(now: datetime | None = None, batch_size: int | None = None, progress: Progress | None = None) -> int:
    """Re-enqueue actions stuck in ``pending`` or ``confirmed`` longer than REDRIVE_AFTER (the outbox sweep).

    A pending delivery gets a new generation (its secret, if one was made, was never sent or is lost), sent
    only within the channel's send limits; a confirmed action gets its apply enqueued again (apply is
    idempotent).  Every failure ends: an action re-queued MAX_REDRIVES times ends ``failed`` with the last
    reason known instead of being re-queued once more, and one waiting on a channel no longer in settings
    ends ``failed`` at once (if no other channel can still confirm it).
    """
    started = time.monotonic()
    now = now or timezone.now()
    size = batch_size or app_settings.BATCH_SIZE
    cutoff = now - app_settings.REDRIVE_AFTER
    late_send = now - max(app_settings.REDRIVE_AFTER, _redelivery_window())
    stuck = stuck_actions(now)
    total = failed = 0
    last = None
    while True:
        with transaction.atomic():
            # In key order from where the last batch ended: an action left as it was (a send waiting for the
            # broker's redelivery) still matches, and must not be picked up again in the same sweep.
            ids = _batch(stuck.filter(pk__gt=last).order_by("pk") if last else stuck.order_by("pk"), size)
            if not ids:
                break
            last = ids[-1]
            sweep = _Sweep(now=now, cutoff=cutoff, late_send=late_send)
            for action in DeferredAction.objects.filter(pk__in=ids).order_by("pk"):
                _redrive_one(action, sweep)
            _resend_counted(sweep)
            if sweep.requeued:
                DeferredAction.objects.filter(pk__in=sweep.requeued).update(redrives=F("redrives") + 1)
            # Touching updated_at keeps the next sweep off these rows until REDRIVE_AFTER passes again.
            DeferredAction.objects.filter(pk__in=ids).update(updated_at=now)
        total += len(ids)
        failed += sweep.failed
        if progress is not None:
            progress(total)
    _log_sweep("redrive", total, started, failed=failed)
    return total
