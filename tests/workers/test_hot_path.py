"""What the throughput work (bench/throughput.py, bench/notes/throughput.md) changed in the tasks' hot path, pinned:
generate trusts the ``action_id`` keyword only for that action's delivery; a link confirmed before the send was
recorded still gets its ``sent_at``; receivers connected for one sender get the lifecycle signals; and a worker
handles database connections as Django does around a request (CONN_MAX_AGE), not one per task.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.db import connection

from deferred_confirmation import pipeline, workers
from deferred_confirmation.django_integration import signals
from deferred_confirmation.django_integration.models import DeferredAction, Delivery
from deferred_confirmation.pipeline import lifecycle
from deferred_confirmation.pipeline.states import DeliveryStatus, State
from deferred_confirmation.workers.celery import NEVER, _db_connections_like_requests
from tests.conftest import link_token
from tests.testapp.models import Profile
from tests.workers.conftest import messages_lost, stage_change


@pytest.mark.django_db(transaction=True)
def test_generate_with_the_action_id_keyword_and_without_it():
    with messages_lost():  # the test runs generate itself
        _profile, action = stage_change("kw-old@example.org", "kw-new@example.org")
        _other_profile, other = stage_change("kw2-old@example.org", "kw2-new@example.org")
    delivery = Delivery.objects.get(action=action)

    # Another action's id, or something that is no id at all: that action's delivery is not this one.
    assert lifecycle.generate(delivery.pk, delivery.generation, action_id=str(other.pk)) is False
    assert lifecycle.generate(delivery.pk, delivery.generation, action_id=str(uuid.uuid4())) is False
    assert Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.QUEUED
    # Not a uuid (a message from elsewhere): looked up, as messages without the keyword are.
    assert lifecycle.generate(delivery.pk, delivery.generation, action_id="not-a-uuid") is True
    assert Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.GENERATED

    other_delivery = Delivery.objects.get(action=other)
    assert lifecycle.generate(other_delivery.pk, other_delivery.generation, action_id=other.pk) is True
    assert lifecycle.generate(other_delivery.pk, other_delivery.generation, action_id=other.pk) is False  # once


@pytest.mark.django_db(transaction=True)
def test_a_link_confirmed_before_the_send_is_recorded_keeps_its_sent_at(eager, mailoutbox):
    """The recipient clicks while the worker is between the provider's accept and its bookkeeping: the
    delivery is confirmed and the change applied, and the row still says when the message went out."""
    confirmed = []

    def click_at_once(sender, instance, **kwargs):  # runs after the send, before it is recorded
        confirmed.append(pipeline.confirm(instance.token).status)

    signals.confirmation_required.connect(click_at_once, weak=False, dispatch_uid="tests.hot_path.click")
    try:
        profile, action = stage_change("quick-old@example.org", "quick-new@example.org")
    finally:
        signals.confirmation_required.disconnect(dispatch_uid="tests.hot_path.click")
    assert confirmed == ["confirmed"]
    delivery = Delivery.objects.get(action=action)
    assert delivery.status == DeliveryStatus.CONFIRMED
    assert delivery.sent_at is not None and delivery.sent_at <= delivery.confirmed_at
    assert delivery.sending_until is None
    assert DeferredAction.objects.get(pk=action.pk).state == State.APPLIED
    profile.refresh_from_db()
    assert (profile.email, profile.nickname) == ("quick-new@example.org", "+")
    assert len(mailoutbox) == 1


@pytest.mark.django_db(transaction=True)
def test_a_send_overtaken_by_a_resend_leaves_the_action_pending(eager, mailoutbox, settings):
    """A resend between the provider's accept and the bookkeeping: the old secret is dead, the new one not
    sent yet, so the action must not be marked notified by the old send (its move is rolled back)."""
    conf = settings.DEFERRED_CONFIRMATION
    channels = conf.get("CHANNELS", {"email": {}})
    settings.DEFERRED_CONFIRMATION = {**conf, "CHANNELS": {
        **channels, "email": {**channels.get("email", {}), "RESEND_COOLDOWN": timedelta(0)}}}
    resent = []

    def resend_at_once(sender, instance, **kwargs):  # runs after the send, before it is recorded
        with messages_lost():  # the new secret's tasks never run in this test
            resent.append(bool(pipeline.resend(instance)))

    signals.confirmation_required.connect(resend_at_once, weak=False, dispatch_uid="tests.hot_path.resend")
    try:
        _profile, action = stage_change("overtaken-old@example.org", "overtaken-new@example.org")
    finally:
        signals.confirmation_required.disconnect(dispatch_uid="tests.hot_path.resend")
    assert resent == [True]
    assert len(mailoutbox) == 1
    delivery = Delivery.objects.get(action=action)
    assert (delivery.status, delivery.generation, delivery.sent_at) == (DeliveryStatus.QUEUED, 1, None)  # resent once
    assert DeferredAction.objects.get(pk=action.pk).state == State.PENDING
    assert pipeline.confirm(link_token(mailoutbox[0].body)).status == "invalid"


@pytest.mark.django_db(transaction=True)
def test_receivers_connected_for_the_model_get_change_confirmed(eager, mailoutbox):
    received = []

    def for_profiles(sender, instance, **kwargs):
        received.append((sender, instance.pk))

    signals.change_confirmed.connect(for_profiles, sender=Profile, weak=False, dispatch_uid="tests.hot_path.model")
    try:
        _profile, action = stage_change("model-old@example.org", "model-new@example.org")
        assert pipeline.confirm(link_token(mailoutbox[-1].body)).ok
    finally:
        signals.change_confirmed.disconnect(sender=Profile, dispatch_uid="tests.hot_path.model")
    assert received == [(Profile, action.pk)]


def test_celery_leaves_database_connections_to_django():
    assert workers.app.conf.get("CELERY_DB_REUSE_MAX") == NEVER


@pytest.mark.django_db(transaction=True)
def test_around_a_task_connections_are_closed_as_around_a_request():
    worker_task = SimpleNamespace(request=SimpleNamespace(is_eager=False))
    eager_task = SimpleNamespace(request=SimpleNamespace(is_eager=True))

    connection.ensure_connection()
    connection.close_at = None  # CONN_MAX_AGE=None: kept
    _db_connections_like_requests(task=worker_task)
    assert connection.connection is not None

    connection.close_at = time.monotonic() - 1  # past CONN_MAX_AGE (0, the default: after every task)
    _db_connections_like_requests(task=eager_task)  # an eager task runs inside its caller's transaction
    assert connection.connection is not None
    _db_connections_like_requests(task=worker_task)
    assert connection.connection is None
