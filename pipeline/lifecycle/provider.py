"""report_status: what a provider later says about a message it accepted (a delivery-status webhook).

Provider-neutral: a webhook view checks the provider's signature, maps its status words to ``"delivered"``
or ``"failed"`` and calls :func:`report_status` with the message's reference.  Deliveries are found by
``(channel, provider_ref)`` (indexed).

Only a delivery still in ``sent`` changes, and only for the reference it holds now:
- a report for an unknown reference is ignored (the provider retries non-2xx answers, and a report may
  arrive before the worker stored the reference; it is then lost, which costs only the status);
- a resent delivery keeps its old reference until the new message is accepted, but is not ``sent`` in
  the meantime, so a late report about the old message cannot touch the new secret;
- reports arrive out of order: ``delivered`` is final, a later ``failed`` does not undo it.
"""

from __future__ import annotations

import logging

from django.db import transaction

from deferred_confirmation.django_integration.models import Delivery
from deferred_confirmation.pipeline.lifecycle.delivery import delivery_failed
from deferred_confirmation.pipeline.lifecycle.steplog import annotate_step, logged_step, silence_step
from deferred_confirmation.pipeline.lifecycle.transitions import lock
from deferred_confirmation.pipeline.states import DeliveryStatus

logger = logging.getLogger("deferred_confirmation.lifecycle")

DELIVERED = DeliveryStatus.DELIVERED.value
FAILED = DeliveryStatus.FAILED.value


@logged_step("delivery_report", done="reported", skipped="ignored")
def report_status(channel: str, provider_ref: str, status: str, detail: str = "") -> str | None:
    """Record a provider's report; returns ``"delivered"`` or ``"failed"`` if it changed a delivery.

    ``status`` is ``"delivered"`` or ``"failed"`` (anything else is ignored); ``detail`` is the
    provider's reason for a failure (its error code first), stored on the delivery and the action.
    A failure is permanent: the delivery fails, and the action with it when no other delivery can
    still confirm it (:func:`deferred_confirmation.pipeline.lifecycle.delivery_failed`).
    """
    if status not in (DELIVERED, FAILED) or not isinstance(provider_ref, str) or not provider_ref:
        return None
    if len(provider_ref) > 255:
        return None
    found = (Delivery.objects.filter(channel=channel, provider_ref=provider_ref).order_by("-pk")
             .values_list("pk", "action_id").first())
    if found is None:
        return None
    with transaction.atomic():
        lock(found[1])  # the action first, as everywhere, so a report racing a confirm cannot deadlock
        delivery = Delivery.objects.select_for_update().filter(pk=found[0]).first()
        if delivery is None or delivery.status != DeliveryStatus.SENT:
            return None
        if status == DELIVERED:
            delivery.status = DeliveryStatus.DELIVERED
            delivery.save(update_fields=["status", "updated_at"])
            annotate_step(outcome="delivered", action_id=delivery.action_id, channel=channel, delivery_id=delivery.pk)
            return DELIVERED
        delivery_failed(delivery.pk, delivery.generation, (detail or "the provider reported a failure")[:2000])
        silence_step()  # the deliver_failed line tells it
    return FAILED
