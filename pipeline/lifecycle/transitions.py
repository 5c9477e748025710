"""The one place an action changes state: checked against the transition table, logged, signalled.

Logging (logger ``deferred_confirmation.lifecycle``): every lifecycle step logs exactly one line when it
ends, carrying ``extra`` fields for a structured formatter (:mod:`deferred_confirmation.pipeline.logformat`): ``event``
(the step: stage, generate, deliver, deliver_retry, deliver_failed, delivery_report, confirm, apply, resend, cancel),
``outcome``, ``action_id``, ``channel``, ``from_state``/``to_state`` when the step changed the action's
state, ``duration_ms`` and a few step-specific ids (``delivery_id``, ``generation``, ``status``, ``reason``).
Never a secret, and never a full recipient.  A state change made outside any step is logged on its own
(``event="transition"``).
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.db import connection, transaction
from django.db.models import QuerySet
from django.dispatch import Signal
from django.utils import timezone

from deferred_confirmation.django_integration.models import DeferredAction, Delivery
from deferred_confirmation.pipeline.states import DeliveryStatus, State, check_transition

logger = logging.getLogger("deferred_confirmation.lifecycle")


def move(action: DeferredAction, target: State, **fields: Any) -> None:
    """Move a locked ``action`` to ``target`` and save; raises InvalidTransition if not allowed."""
    source = action.state
    check_transition(source, target)
    action.state = target
    for name, value in fields.items():
        setattr(action, name, value)
    action.save(update_fields=["state", "updated_at", *fields])
    moved(action, source, target)


def move_if(action_id: Any, source: State, target: State) -> bool:
    """Move the action from ``source`` to ``target`` with one conditional UPDATE, if it is still in
    ``source``; True if it was.  Takes the action's row lock only when it matches (the caller's transaction
    keeps it), instead of a SELECT ... FOR UPDATE and a save: one round trip fewer.  The caller reports a
    move it keeps with :func:`moved`."""
    check_transition(source, target)
    return bool(DeferredAction.objects.filter(pk=action_id, state=source).update(
        state=target, updated_at=timezone.now()))


def moved(action: DeferredAction, source: Any, target: Any) -> None:
    """Report a state change: on the current step's line, or a line of its own outside any step."""
    current = _STEP.get()
    if current is not None:  # the step's own line reports it
        current.moved(source, target)
        current.fields.setdefault("action_id", action.pk)
        return
    logger.info("action %s: %s -> %s", action.pk, source, target,
                extra={"event": "transition", "action_id": str(action.pk), "from_state": str(source),
                       "to_state": str(target)})


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
    return first(DeferredAction.objects.select_for_update().filter(pk=action_id))


def first_locked(queryset: QuerySet) -> Any:
    """The one row of a key lookup, row-locked until the surrounding transaction ends, or None.  Only this
    table's row (``FOR UPDATE OF`` it, where the database can say so): a lookup that joins (``select_related``,
    a default manager's nullable relation) neither locks the joined rows nor fails on an outer join's side."""
    of = {"of": ("self",)} if connection.features.has_select_for_update_of else {}
    return first(queryset.select_for_update(**of))


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


def first(queryset: QuerySet) -> Any:
    """The one row of a lookup by key, or None: ``.first()`` without the ORDER BY it adds (the model's
    ordering, or the pk), which a key lookup does not need and the ORM compiles on every task."""
    return next(iter(queryset.order_by()[:1]), None)


# --- one log line per lifecycle step -------------------------------------------------------------------
class Step:
    """A lifecycle step in progress; logged as one line when it ends without an exception.

    ``fields`` become the record's ``extra`` (None values left out); :func:`move` adds the state changes
    made meanwhile (the first ``from_state``, the last ``to_state``).  Steps nest (an eager task runs
    inside the step that enqueued it); :func:`quiet` drops a step's line when a nested step's line said it
    all (a delivery failing while being sent is one ``deliver_failed`` line, not that and a ``deliver``)."""

    def __init__(self, event: str) -> None:
        self.event = event
        self.outcome: str | None = None
        self.level: int | None = None
        self.fields: dict[str, Any] = {}
        self.started = time.monotonic()
        self.from_state: str | None = None
        self.to_state: str | None = None
        self.moves = 0
        self.silent = False

    def moved(self, source: Any, target: Any) -> None:
        if self.moves == 0:
            self.from_state = None if source is None else str(source)
        self.to_state = str(target)
        self.moves += 1

    def emit(self, default_outcome: str) -> None:
        level = self.level if self.level is not None else logging.INFO
        if not logger.isEnabledFor(level):  # every task ends a step: build the line only if it is written
            return
        outcome = self.outcome or default_outcome
        extra = {"event": self.event, "outcome": outcome}
        extra.update((key, str(value) if key == "action_id" else value)
                     for key, value in self.fields.items() if value is not None)
        if self.from_state is not None:
            extra["from_state"] = self.from_state
        if self.to_state is not None:
            extra["to_state"] = self.to_state
        extra["duration_ms"] = round((time.monotonic() - self.started) * 1000)
        logger.log(level, "%s", _describe(extra), extra=extra)


def _describe(extra: dict[str, Any]) -> str:
    text = f"{extra['event']} {extra['outcome']}"
    if "status" in extra:
        text += f" ({extra['status']})"
    if "action_id" in extra:
        text += f" action={extra['action_id']}"
    if "channel" in extra:
        text += f" channel={extra['channel']}"
    if "to_state" in extra:
        text += f" {extra.get('from_state', '')}->{extra['to_state']}"
    if "count" in extra:
        text += f" count={extra['count']}"
    if "reason" in extra:
        text += f": {extra['reason']}"
    return text


_STEP: ContextVar[Step | None] = ContextVar("deferred_confirmation_step", default=None)


@contextmanager
def step(event: str, default_outcome: str = "done") -> Iterator[Step]:
    """``with step("generate") as current:`` logs one line for the block if it ends without an exception."""
    current = Step(event)
    token = _STEP.set(current)
    try:
        yield current
    finally:
        _STEP.reset(token)
    if not current.silent:
        current.emit(default_outcome)


def logged_step(event: str, done: str = "done", skipped: str = "skipped") -> Callable:
    """Decorate a lifecycle function as a step: outcome ``done`` if it returns something true, else
    ``skipped`` at DEBUG (a duplicated or outdated task), unless the function set its own with :func:`note`."""

    def decorator(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with step(event) as current:
                result = func(*args, **kwargs)
                if current.outcome is None:
                    current.outcome = done if result else skipped
                    if not result and current.level is None:
                        current.level = logging.DEBUG
            return result

        return wrapper

    return decorator


def note(outcome: str | None = None, level: int | None = None, **fields: Any) -> None:
    """Add to the current step's line (no-op outside a step): its outcome, level, or ``extra`` fields."""
    current = _STEP.get()
    if current is None:
        return
    if outcome is not None:
        current.outcome = outcome
    if level is not None:
        current.level = level
    if "to_state" in fields:  # a state set without a move: a new action's first
        current.moved(None, fields.pop("to_state"))
    current.fields.update(fields)


def quiet() -> None:
    """The current step logs no line of its own (a nested step's line already tells what happened)."""
    current = _STEP.get()
    if current is not None:
        current.silent = True
