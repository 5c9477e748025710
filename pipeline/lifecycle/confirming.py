"""confirm: a secret came back.  Never raises for bad input; every outcome is a :class:`ConfirmResult`."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from typing import Any

from django.db import OperationalError, connection, transaction
from django.utils import timezone

from deferred_confirmation.django_integration.models import DeferredAction, Delivery
from deferred_confirmation.django_integration.signals import action_expired
from deferred_confirmation.pipeline import dispatch, tokens
from deferred_confirmation.pipeline.channels import configured_channel, get_channel
from deferred_confirmation.pipeline.conf import app_settings
from deferred_confirmation.pipeline.lifecycle.steplog import annotate_step, log_step
from deferred_confirmation.pipeline.lifecycle.transitions import (
    action_key,
    close_deliveries,
    lock,
    move,
    row_or_none,
    signal_on_commit,
)
from deferred_confirmation.pipeline.states import DeliveryStatus, State
from deferred_confirmation.pipeline.types import ActionRef, Secret, SecretInput


class ConfirmStatus(StrEnum):
    CONFIRMED = "confirmed"
    INVALID = "invalid"
    EXPIRED = "expired"
    ALREADY_USED = "already_used"
    LOCKED = "locked"


@dataclass(frozen=True)
class ConfirmResult:
    status: ConfirmStatus
    action: DeferredAction | None = None
    attempts_left: int | None = None
    #: The input could not be any secret (a token or code of the wrong shape): refused without a lookup, and
    #: it costs neither an attempt nor a count against the client's failure throttle (it cannot guess anything).
    malformed: bool = False

    @property
    def ok(self) -> bool:
        return self.status == ConfirmStatus.CONFIRMED


INVALID = ConfirmResult(ConfirmStatus.INVALID)
MALFORMED = ConfirmResult(ConfirmStatus.INVALID, malformed=True)


def confirm(secret: SecretInput, action: ActionRef | None = None, *, saved_here: Collection[str] | None = None
            ) -> ConfirmResult:
    """Accept ``secret`` (a link token, or a code/amounts for ``action``) and queue the apply.

    ``saved_here``: ids of the actions the confirming browser session saved (a view passes
    ``ownership.saved_ids(request)``).  A create confirmed from another session is marked
    ``confirmed_elsewhere``: whoever saved a sign-up with someone else's address does not get to choose its
    password.  None (a call outside a request) trusts the caller."""
    with log_step("confirm") as current:
        result = _confirm(secret, action, saved_here)
        annotate_step(outcome="accepted" if result.ok else "refused", status=result.status.value,
                      level=logging.WARNING if result.status == ConfirmStatus.LOCKED else logging.INFO,
                      action_id=result.action.pk if result.action is not None else current.fields.get("action_id"))
    return result


def _confirm(secret: Any, action: Any, saved_here: Collection[str] | None) -> ConfirmResult:
    attempt = partial(_confirm_link, saved_here=saved_here) if action is None else partial(
        _confirm_code, action_ref=action, saved_here=saved_here)
    for retry in range(LOCK_RETRIES):
        try:
            return attempt(secret)
        except OperationalError:
            # SQLite in its default (deferred) transaction mode refuses the second of two simultaneous
            # writers at once ("database is locked") instead of waiting: a double-clicked Confirm.  Run again;
            # the second run sees the first one's outcome (already_used).  Inside a caller's transaction the
            # error is the caller's to handle.
            if connection.in_atomic_block or retry == LOCK_RETRIES - 1:
                raise
            time.sleep(0.05 * (retry + 1))
    raise AssertionError("unreachable")


def peek_link(token: Secret) -> ConfirmResult:
    """What confirming ``token`` would do, changing nothing (for the GET page); CONFIRMED means "can"."""
    delivery = _find_link_delivery(token)
    if delivery is None:
        return INVALID
    refusal = _refusal(delivery.action, delivery)
    return ConfirmResult(refusal or ConfirmStatus.CONFIRMED, delivery.action)


def _find_link_delivery(token: Any) -> Delivery | None:
    if not tokens.is_well_formed_link_token(token):
        return None
    return (Delivery.objects.select_related("action")
            .filter(secret_digest__in=tokens.link_digests_under_all_keys(token)).first())


def _confirm_link(token: Any, saved_here: Collection[str] | None = None) -> ConfirmResult:
    if not tokens.is_well_formed_link_token(token):
        return MALFORMED
    # Only the ids: the rows are read again under their locks (the action, with its stored form, only once).
    found = (Delivery.objects.filter(secret_digest__in=tokens.link_digests_under_all_keys(token)).order_by()
             .values_list("pk", "action_id")[:1])
    if not found:
        return INVALID
    [(delivery_id, action_id)] = found
    with transaction.atomic():
        action = lock(action_id)
        delivery = row_or_none(Delivery.objects.select_for_update().filter(pk=delivery_id))
        channel = configured_channel(delivery.channel) if delivery is not None else None
        if action is None or channel is None or not channel.matches(delivery, token):
            return INVALID  # resent or purged between the lookup and the lock, or its channel removed
        return _accept_or_refuse(action, delivery, saved_here)


LIVE = (DeliveryStatus.GENERATED, DeliveryStatus.SENT, DeliveryStatus.DELIVERED)


LOCK_RETRIES = 3


def _confirm_code(secret: Any, action_ref: Any, saved_here: Collection[str] | None = None) -> ConfirmResult:
    """A code or amounts typed for ``action_ref``.  Only input that could be a secret counts as an attempt."""
    action_id = action_key(action_ref)
    if action_id is None:
        return INVALID
    with transaction.atomic():
        action = lock(action_id)
        if action is None:
            return INVALID
        refusal = _refusal(action, None)
        if refusal is not None:
            if refusal == ConfirmStatus.EXPIRED and action.is_open:
                expire_one(action)
            return ConfirmResult(refusal, action)
        typed = [d for d in action.deliveries.select_for_update().order_by("pk")
                 if (c := configured_channel(d.channel)) is not None and c.secret_kind != "link" and d.secret_digest]
        live = [d for d in typed if d.status in LIVE and not d.has_expired()]
        if not live:
            expired = any(d.has_expired() for d in typed)
            return ConfirmResult(ConfirmStatus.EXPIRED if expired else ConfirmStatus.INVALID, action)
        candidates = [d for d in live if get_channel(d.channel).normalize(secret) is not None]
        if not candidates:  # malformed: cannot be right, so it costs no attempt
            return ConfirmResult(ConfirmStatus.INVALID, action, _attempts_left(live), malformed=True)
        for delivery in candidates:
            if get_channel(delivery.channel).matches(delivery, secret):
                return _accept_or_refuse(action, delivery, saved_here)
        return _wrong_code(action, candidates)


def _attempts_left(deliveries: list[Delivery]) -> int | None:
    left = [max(limit - d.attempts, 0) for d in deliveries
            if (limit := get_channel(d.channel).max_attempts) is not None]
    return min(left) if left else None


def _refusal(action: DeferredAction, delivery: Delivery | None, now=None) -> ConfirmStatus | None:
    """Why this action cannot be confirmed now, or None if it can."""
    if action.state in (State.CONFIRMED, State.APPLIED) or action.confirmed_at is not None:
        return ConfirmStatus.ALREADY_USED
    if delivery is not None and delivery.status == DeliveryStatus.CONFIRMED:
        return ConfirmStatus.ALREADY_USED
    if action.state == State.LOCKED:
        return ConfirmStatus.LOCKED
    if action.state == State.EXPIRED or (action.is_open and action.has_expired(now)):
        return ConfirmStatus.EXPIRED
    if not action.is_open:  # cancelled, or failed before anything was confirmed
        return ConfirmStatus.INVALID
    if delivery is not None and delivery.status in (DeliveryStatus.FAILED, DeliveryStatus.SUPERSEDED):
        return ConfirmStatus.INVALID
    if delivery is not None and delivery.has_expired(now):  # this channel's secret, not the whole action
        return ConfirmStatus.EXPIRED
    return None


def _accept_or_refuse(action: DeferredAction, delivery: Delivery,
                      saved_here: Collection[str] | None = None) -> ConfirmResult:
    annotate_step(channel=delivery.channel)
    now = timezone.now()
    refusal = _refusal(action, delivery, now)
    if refusal == ConfirmStatus.EXPIRED and action.is_open and action.has_expired(now):
        expire_one(action)
    if refusal is not None:
        return ConfirmResult(refusal, action)
    delivery.status = DeliveryStatus.CONFIRMED
    delivery.confirmed_at = now
    delivery.save(update_fields=["status", "confirmed_at", "updated_at"])
    waiting = action.channel_policy == "all" and action.deliveries.exclude(
        status=DeliveryStatus.CONFIRMED).exclude(pk=delivery.pk).exists()
    if saved_here is not None and action.object_pk is None and str(action.pk) not in saved_here:
        action.confirmed_elsewhere = True
        action.save(update_fields=["confirmed_elsewhere", "updated_at"])
    if not waiting:
        move(action, State.CONFIRMED, confirmed_at=now)
        close_deliveries(action)
        dispatch.enqueue(dispatch.APPLY_ACTION, str(action.pk), queue=app_settings.APPLY_QUEUE,
                         action_id=action.pk)
    return ConfirmResult(ConfirmStatus.CONFIRMED, action)


def _wrong_code(action: DeferredAction, deliveries: list[Delivery]) -> ConfirmResult:
    """Count a wrong attempt against each delivery it could have been for; lock the action at the limit."""
    annotate_step(channel=",".join(sorted({d.channel for d in deliveries})))
    for delivery in deliveries:
        delivery.attempts += 1
        delivery.save(update_fields=["attempts", "updated_at"])
    attempts_left = _attempts_left(deliveries)
    if attempts_left == 0:
        move(action, State.LOCKED)
        close_deliveries(action)
        return ConfirmResult(ConfirmStatus.LOCKED, action, 0)
    return ConfirmResult(ConfirmStatus.INVALID, action, attempts_left)


def expire_one(action: DeferredAction) -> None:
    """Mark a locked, open, past-due action expired."""
    move(action, State.EXPIRED)
    close_deliveries(action)
    signal_on_commit(action_expired, action)
