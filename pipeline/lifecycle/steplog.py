"""One log line per lifecycle step.

Logging (logger ``deferred_confirmation.lifecycle``): every lifecycle step logs exactly one line when it
ends, carrying ``extra`` fields for a structured formatter (:mod:`deferred_confirmation.pipeline.logformat`): ``event``
(the step: stage, generate, deliver, deliver_retry, deliver_failed, delivery_report, confirm, apply, resend, cancel),
``outcome``, ``action_id``, ``channel``, ``from_state``/``to_state`` when the step changed the action's
state, ``duration_ms`` and a few step-specific ids (``delivery_id``, ``generation``, ``status``, ``reason``).
Never a secret, and never a full recipient.  A state change made outside any step is logged on its own
(``event="transition"``).

A step is a block (:func:`log_step`) or a function (:func:`logged_step`); code inside it adds to its line with
:func:`annotate_step`, drops the line with :func:`silence_step`, and reports state changes with
:func:`log_transition`.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deferred_confirmation.django_integration.models import DeferredAction

logger = logging.getLogger("deferred_confirmation.lifecycle")


class Step:
    """A lifecycle step in progress; logged as one line when it ends without an exception.

    ``fields`` become the record's ``extra`` (None values left out); :func:`log_transition` adds the state changes
    made meanwhile (the first ``from_state``, the last ``to_state``).  Steps nest (an eager task runs
    inside the step that enqueued it); :func:`silence_step` drops a step's line when a nested step's line said it
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

    def record_transition(self, source: Any, target: Any) -> None:
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
        logger.log(level, "%s", _summary(extra), extra=extra)


#: The fields a line's message shows, in order, each with how (the rest are in the record's ``extra`` only).
_SHOWN = (("status", " ({status})"), ("action_id", " action={action_id}"), ("channel", " channel={channel}"),
          ("to_state", " {from_state}->{to_state}"), ("count", " count={count}"), ("reason", ": {reason}"))


def _summary(extra: dict[str, Any]) -> str:
    """The message of a step's line: ``deliver sent action=<id> channel=sms pending->notified``."""
    fields = {"from_state": "", **extra}
    return f"{extra['event']} {extra['outcome']}" + "".join(
        shape.format(**fields) for key, shape in _SHOWN if key in extra)


_CURRENT_STEP: ContextVar[Step | None] = ContextVar("deferred_confirmation_step", default=None)


@contextmanager
def log_step(event: str, default_outcome: str = "done") -> Iterator[Step]:
    """``with log_step("generate") as current:`` logs one line for the block if it ends without an exception."""
    current = Step(event)
    token = _CURRENT_STEP.set(current)
    try:
        yield current
    finally:
        _CURRENT_STEP.reset(token)
    if not current.silent:
        current.emit(default_outcome)


def logged_step(event: str, done: str = "done", skipped: str = "skipped") -> Callable:
    """Decorate a lifecycle function as a step: outcome ``done`` if it returns something true, else
    ``skipped`` at DEBUG (a duplicated or outdated task), unless the function set its own with :func:`annotate_step`."""

    def decorator(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with log_step(event) as current:
                result = func(*args, **kwargs)
                if current.outcome is None:
                    current.outcome = done if result else skipped
                    if not result and current.level is None:
                        current.level = logging.DEBUG
            return result

        return wrapper

    return decorator


def annotate_step(outcome: str | None = None, level: int | None = None, **fields: Any) -> None:
    """Add to the current step's line (no-op outside a step): its outcome, level, or ``extra`` fields."""
    current = _CURRENT_STEP.get()
    if current is None:
        return
    if outcome is not None:
        current.outcome = outcome
    if level is not None:
        current.level = level
    if "to_state" in fields:  # a state set without a move: a new action's first
        current.record_transition(None, fields.pop("to_state"))
    current.fields.update(fields)


def silence_step() -> None:
    """The current step logs no line of its own (a nested step's line already tells what happened)."""
    current = _CURRENT_STEP.get()
    if current is not None:
        current.silent = True


def log_transition(action: DeferredAction, source: Any, target: Any) -> None:
    """Report a state change: on the current step's line, or a line of its own outside any step."""
    current = _CURRENT_STEP.get()
    if current is not None:  # the step's own line reports it
        current.record_transition(source, target)
        current.fields.setdefault("action_id", action.pk)
        return
    logger.info("action %s: %s -> %s", action.pk, source, target,
                extra={"event": "transition", "action_id": str(action.pk), "from_state": str(source),
                       "to_state": str(target)})
