"""Action states and the one table of allowed transitions.

Every state change goes through :func:`check_transition`, so a terminal action can never change again
and a late or duplicated task cannot move an action backwards.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import pgettext_lazy

from deferred_confirmation.pipeline.exceptions import InvalidTransition

__all__ = ["OPEN", "TERMINAL", "TRANSITIONS", "DeliveryStatus", "InvalidTransition", "State", "can_transition",
           "check_transition"]


class State(models.TextChoices):
    PENDING = "pending", pgettext_lazy("state of a change", "pending")  # stored, delivery queued
    # the secret went out over at least one channel
    NOTIFIED = "notified", pgettext_lazy("state of a change", "notified")
    CONFIRMED = "confirmed", pgettext_lazy("state of a change", "confirmed")  # secret accepted, apply queued
    APPLIED = "applied", pgettext_lazy("state of a change", "applied")
    EXPIRED = "expired", pgettext_lazy("state of a change", "expired")
    CANCELLED = "cancelled", pgettext_lazy("state of a change", "cancelled")
    # re-validation or every delivery failed; reason stored; nothing applied
    FAILED = "failed", pgettext_lazy("state of a change", "failed")
    LOCKED = "locked", pgettext_lazy("state of a change", "locked")  # attempts exhausted


TRANSITIONS: dict[str, frozenset[str]] = {
    # pending -> confirmed: the user may be quicker than the worker that records the send.
    State.PENDING: frozenset({State.NOTIFIED, State.CONFIRMED, State.EXPIRED, State.CANCELLED,
                              State.FAILED, State.LOCKED}),
    State.NOTIFIED: frozenset({State.CONFIRMED, State.EXPIRED, State.CANCELLED, State.FAILED, State.LOCKED}),
    State.CONFIRMED: frozenset({State.APPLIED, State.FAILED}),
}
TERMINAL = frozenset(State) - frozenset(TRANSITIONS)
OPEN = frozenset({State.PENDING, State.NOTIFIED})  # waiting for the secret to come back


def can_transition(source: str, target: str) -> bool:
    return target in TRANSITIONS.get(source, frozenset())


def check_transition(source: str, target: str) -> None:
    if not can_transition(source, target):
        raise InvalidTransition(f"{source} -> {target} is not allowed")


class DeliveryStatus(models.TextChoices):
    QUEUED = "queued", pgettext_lazy("state of a delivery", "queued")  # waiting for a secret
    GENERATED = "generated", pgettext_lazy("state of a delivery", "generated")  # digest stored, send queued
    SENT = "sent", pgettext_lazy("state of a delivery", "sent")  # handed to the provider
    DELIVERED = "delivered", pgettext_lazy("state of a delivery", "delivered")  # provider reported delivery
    # permanent provider error; reason in status_detail
    FAILED = "failed", pgettext_lazy("state of a delivery", "failed")
    CONFIRMED = "confirmed", pgettext_lazy("state of a delivery", "confirmed")  # its secret came back
    SUPERSEDED = "superseded", pgettext_lazy("state of a delivery", "superseded")  # the action ended another way
