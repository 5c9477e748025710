"""Action states and the one table of allowed transitions.

Every state change goes through :func:`check_transition`, so a terminal action can never change again
and a late or duplicated task cannot move an action backwards.
"""

from __future__ import annotations

from django.db import models

from deferred_confirmation.pipeline.exceptions import InvalidTransition

__all__ = ["OPEN", "TERMINAL", "TRANSITIONS", "DeliveryStatus", "InvalidTransition", "State", "can_transition",
           "check_transition"]


class State(models.TextChoices):
    PENDING = "pending", "pending"  # stored, delivery queued
    NOTIFIED = "notified", "notified"  # the secret went out over at least one channel
    CONFIRMED = "confirmed", "confirmed"  # secret accepted, apply queued
    APPLIED = "applied", "applied"
    EXPIRED = "expired", "expired"
    CANCELLED = "cancelled", "cancelled"
    FAILED = "failed", "failed"  # re-validation or every delivery failed; reason stored; nothing applied
    LOCKED = "locked", "locked"  # attempts exhausted


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
    QUEUED = "queued", "queued"  # waiting for a secret
    GENERATED = "generated", "generated"  # digest stored, send queued
    SENT = "sent", "sent"  # handed to the provider
    DELIVERED = "delivered", "delivered"  # provider reported delivery
    FAILED = "failed", "failed"  # permanent provider error; reason in status_detail
    CONFIRMED = "confirmed", "confirmed"  # its secret came back
    SUPERSEDED = "superseded", "superseded"  # the action ended another way
