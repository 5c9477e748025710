"""The one place an action changes state: checked against the transition table, logged (through
:mod:`deferred_confirmation.pipeline.lifecycle.steplog`), signalled; and the row lookups the lifecycle locks with.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import connection, transaction
from django.db.models import QuerySet
from django.dispatch import Signal
from django.utils import timezone

from deferred_confirmation.django_integration.models import DeferredAction, Delivery
from deferred_confirmation.pipeline.lifecycle.steplog import log_transition, logger
from deferred_confirmation.pipeline.states import DeliveryStatus, State, check_transition

# ``logger`` too: the lifecycle's one logger, for the modules that log outside a step.
__all__ = ["action_key", "close_deliveries", "fail", "lock", "locked_row_or_none", "logger", "move", "move_if",
           "row_or_none", "signal_on_commit"]


def move(action: DeferredAction, target: State, **fields: Any) -> None:
    """Move a locked ``action`` to ``target`` and save; raises InvalidTransition if not allowed."""
    source = action.state
    check_transition(source, target)
    action.state = target
    for name, value in fields.items():
        setattr(action, name, value)
    action.save(update_fields=["state", "updated_at", *fields])
    log_transition(action, source, target)


def move_if(action_id: Any, source: State, target: State) -> bool:
    """Move the action from ``source`` to ``target`` with one conditional UPDATE, if it is still in
    ``source``; True if it was.  Takes the action's row lock only when it matches (the caller's transaction
    keeps it), instead of a SELECT ... FOR UPDATE and a save: one round trip fewer.  The caller reports a
    move it keeps with :func:`~deferred_confirmation.pipeline.lifecycle.steplog.log_transition`."""
    check_transition(source, target)
    return bool(DeferredAction.objects.filter(pk=action_id, state=source).update(
        state=target, updated_at=timezone.now()))


def close_deliveries(action: DeferredAction) -> None:
    """An action that ended otherwise than by a delivery's secret: its other deliveries are moot."""
    Delivery.objects.filter(action=action).exclude(
        status__in=[DeliveryStatus.CONFIRMED, DeliveryStatus.FAILED]).update(
        status=DeliveryStatus.SUPERSEDED, updated_at=timezone.now())


def fail(action: DeferredAction, reason: str) -> None:
    from deferred_confirmation.django_integration.signals import confirmation_failed

    move(action, State.FAILED, failure_reason=reason[:2000])
    close_deliveries(action)
    signal_on_commit(confirmation_failed, action, reason=action.failure_reason)


def signal_on_commit(signal: Signal, action: DeferredAction, **kwargs: Any) -> None:
    """Send ``signal`` once the surrounding transaction commits (never for a rolled-back change)."""
    if not signal.receivers:  # nobody listens: not even the sender (a content type query) is needed
        return
    sender = action.model_class or DeferredAction
    if not signal.has_listeners(sender):  # has_listeners() alone counts only receivers of every sender
        return
    transaction.on_commit(lambda: signal.send_robust(sender=sender, instance=action, **kwargs), robust=True)


def lock(action_id: Any) -> DeferredAction | None:
    """The action, row-locked until the surrounding transaction ends, or None."""
    return row_or_none(DeferredAction.objects.select_for_update().filter(pk=action_id))


def locked_row_or_none(queryset: QuerySet) -> Any:
    """The one row of a key lookup, row-locked until the surrounding transaction ends, or None.  Only this
    table's row (``FOR UPDATE OF`` it, where the database can say so): a lookup that joins (``select_related``,
    a default manager's nullable relation) neither locks the joined rows nor fails on an outer join's side."""
    of = {"of": ("self",)} if connection.features.has_select_for_update_of else {}
    return row_or_none(queryset.select_for_update(**of))


def action_key(value: Any) -> uuid.UUID | None:
    """An action's primary key from what a caller or a message holds (the action, a UUID, its text), or None
    for anything that cannot be one: never an exception, never a query."""
    if isinstance(value, DeferredAction):
        return value.pk
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(value) if isinstance(value, str) and len(value) <= 64 else None
    except ValueError:
        return None


def row_or_none(queryset: QuerySet) -> Any:
    """The one row of a lookup by key, or None: ``.first()`` without the ORDER BY it adds (the model's
    ordering, or the pk), which a key lookup does not need and the ORM compiles on every task."""
    return next(iter(queryset.order_by()[:1]), None)
