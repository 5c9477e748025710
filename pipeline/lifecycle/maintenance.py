"""expire, purge, redrive: the periodic sweeps (beat), each in small batches of short transactions.

Batches use ``SELECT ... FOR UPDATE SKIP LOCKED`` where the database has it, so a sweep never waits on,
or blocks, a user confirming an action at the same moment, and no lock is held longer than one batch.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from django_integration.models import DeferredAction, Delivery, Payout
from django_integration.signals import action_expired
from pipeline import dispatch
from pipeline.channels import configured_channel
from pipeline.conf import app_settings
from pipeline.lifecycle.confirming import expire_one
from pipeline.lifecycle.delivery import restart
from pipeline.lifecycle.transitions import lock, logger, signal_on_commit
from pipeline.states import OPEN, TERMINAL, DeliveryStatus, State


def _batch(queryset, size: int) -> list:
    return list(queryset.select_for_update(skip_locked=True).values_list("pk", flat=True)[:size])


def expire(now: datetime | None = None, batch_size: int | None = None) -> int:
    """Mark open actions past their ``valid_until`` expired; returns how many."""
    now = now or timezone.now()
    size = batch_size or app_settings.BATCH_SIZE
    stale = DeferredAction.objects.filter(state__in=OPEN, valid_until__lte=now)
    total = 0
    while True:
        with transaction.atomic():
            ids = _batch(stale.order_by(), size)
            if not ids:
                break
            done = stale.filter(pk__in=ids).update(state=State.EXPIRED, updated_at=now)
            Delivery.objects.filter(action_id__in=ids).exclude(
                status__in=[DeliveryStatus.CONFIRMED, DeliveryStatus.FAILED]).update(
                status=DeliveryStatus.SUPERSEDED, updated_at=now)
            if action_expired.has_listeners():
                for action in DeferredAction.objects.filter(pk__in=ids, state=State.EXPIRED):
                    signal_on_commit(action_expired, action)
        total += done
    if total:
        logger.info("expired %d actions", total, extra={"count": total})
    return total


def _redrive_deliveries(action: DeferredAction, cutoff: datetime) -> None:
    """A queued delivery's generate_token was lost: publish it again (it is idempotent).  A generated one
    whose send has shown no sign of life since the cutoff (a retrying send touches the row on every retry)
    lost its sealed secret: start a new generation."""
    for delivery in action.deliveries.select_for_update().filter(
            status__in=[DeliveryStatus.QUEUED, DeliveryStatus.GENERATED]):
        if delivery.status == DeliveryStatus.QUEUED:
            dispatch.enqueue(dispatch.GENERATE_TOKEN, delivery.pk, delivery.generation,
                             queue=app_settings.channel(delivery.channel)["QUEUE"])
        elif delivery.updated_at < cutoff:
            restart(delivery, action)


def expire_now(action: DeferredAction) -> bool:
    """Expire one open action at once (operator's choice); True if it was open."""
    with transaction.atomic():
        locked = lock(action.pk)
        if locked is None or not locked.is_open:
            return False
        expire_one(locked)
    return True


def purge(now: datetime | None = None, batch_size: int | None = None) -> int:
    """Delete terminal actions (and their deliveries, with the recipients) older than RETENTION."""
    now = now or timezone.now()
    size = batch_size or app_settings.BATCH_SIZE
    old = DeferredAction.objects.filter(state__in=TERMINAL, updated_at__lt=now - app_settings.RETENTION)
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
    # Payouts whose delivery is already gone (SET_NULL) are kept no longer than RETENTION either.
    Payout.objects.filter(delivery__isnull=True, created_at__lt=now - app_settings.RETENTION).delete()
    if total:
        logger.info("purged %d actions", total, extra={"count": total})
    return total


def _discard_stored_secrets(deliveries) -> None:
    for delivery in deliveries:
        channel = configured_channel(delivery.channel)
        try:
            if channel is not None:
                channel.discard(delivery)
        except Exception:  # storage down: keep purging the database, say so loudly
            logger.exception("purge: could not discard what %s stored for delivery %s", delivery.channel, delivery.pk)


def redrive(now: datetime | None = None, batch_size: int | None = None) -> int:
    """Re-enqueue actions stuck in ``pending`` or ``confirmed`` longer than REDRIVE_AFTER (the outbox sweep).

    A pending delivery gets a new generation (its secret, if one was made, was never sent or is lost);
    a confirmed action gets its apply enqueued again (apply is idempotent).
    """
    now = now or timezone.now()
    size = batch_size or app_settings.BATCH_SIZE
    cutoff = now - app_settings.REDRIVE_AFTER
    stuck = DeferredAction.objects.filter(updated_at__lt=cutoff).filter(
        state__in=[State.PENDING, State.CONFIRMED]).exclude(state=State.PENDING, valid_until__lte=now)
    total = 0
    while True:
        with transaction.atomic():
            ids = _batch(stuck.order_by(), size)
            if not ids:
                break
            for action in DeferredAction.objects.filter(pk__in=ids):
                if action.state == State.CONFIRMED:
                    dispatch.enqueue(dispatch.APPLY_ACTION, str(action.pk), queue=app_settings.APPLY_QUEUE)
                else:
                    _redrive_deliveries(action, cutoff)
            # Touching updated_at keeps the next sweep off these rows until REDRIVE_AFTER passes again.
            DeferredAction.objects.filter(pk__in=ids).update(updated_at=now)
        total += len(ids)
    if total:
        logger.info("redrove %d actions", total, extra={"count": total})
    return total
