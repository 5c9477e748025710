"""The one place an action changes state: checked against the transition table, logged, signalled."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone

from django_integration.models import DeferredAction, Delivery
from pipeline.states import DeliveryStatus, State, check_transition

logger = logging.getLogger("deferred_confirmation.lifecycle")


def move(action: DeferredAction, target: State, **fields: Any) -> None:
    """Move a locked ``action`` to ``target`` and save; raises InvalidTransition if not allowed."""
    source = action.state
    check_transition(source, target)
    action.state = target
    for name, value in fields.items():
        setattr(action, name, value)
    action.save(update_fields=["state", "updated_at", *fields])
    logger.info("action %s: %s -> %s", action.pk, source, target,
                extra={"action_id": str(action.pk), "from_state": source, "to_state": str(target)})


def close_deliveries(action: DeferredAction) -> None:
    """An action that ended otherwise than by a delivery's secret: its other deliveries are moot."""
    Delivery.objects.filter(action=action).exclude(
        status__in=[DeliveryStatus.CONFIRMED, DeliveryStatus.FAILED]).update(
        status=DeliveryStatus.SUPERSEDED, updated_at=timezone.now())


def fail(action: DeferredAction, reason: str) -> None:
    from django_integration.signals import confirmation_failed

    move(action, State.FAILED, failure_reason=reason[:2000])
    close_deliveries(action)
    signal_on_commit(confirmation_failed, action, reason=action.failure_reason)


def signal_on_commit(signal: Signal, action: DeferredAction, **kwargs: Any) -> None:
    """Send ``signal`` once the surrounding transaction commits (never for a rolled-back change)."""
    if not signal.has_listeners():
        return
    sender = action.model_class or DeferredAction
    transaction.on_commit(lambda: signal.send_robust(sender=sender, instance=action, **kwargs), robust=True)


def lock(action_id: Any) -> DeferredAction | None:
    """The action, row-locked until the surrounding transaction ends, or None."""
    return DeferredAction.objects.select_for_update().filter(pk=action_id).first()
