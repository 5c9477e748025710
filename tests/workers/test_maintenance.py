"""The periodic sweeps, run through their Celery tasks: expire_stale, purge, redrive (the outbox sweeper)."""

from contextlib import nullcontext
from datetime import timedelta

import pytest
from celery.signals import before_task_publish
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from deferred_confirmation import pipeline, workers
from deferred_confirmation.django_integration.models import DeferredAction, Delivery, SendRecord
from deferred_confirmation.pipeline import dispatch, limits
from deferred_confirmation.pipeline.states import DeliveryStatus, State
from tests.conftest import link_token
from tests.testapp.models import Profile
from tests.workers.conftest import messages_lost, stage_change

pytestmark = pytest.mark.django_db(transaction=True)


def _run(task_name):
    """Send the task the way beat does (by name, no arguments) and return its result (eager: in place)."""
    return workers.app.tasks[task_name].delay().get(timeout=30)


def _mails_to(address):
    return [m for m in mail.outbox if m.to == [address]]


def _state(action):
    return DeferredAction.objects.get(pk=action.pk).state


def _age(actions, **delta):
    """Make ``actions`` look last touched ``delta`` ago (updated_at is auto_now, so via update())."""
    then = timezone.now() - timedelta(**delta)
    DeferredAction.objects.filter(pk__in=[a.pk for a in actions]).update(updated_at=then)
    Delivery.objects.filter(action__in=[a.pk for a in actions]).update(updated_at=then)


# --- expire -------------------------------------------------------------------------------------------
def test_expire_stale_marks_open_actions_past_valid_until_expired_in_batches(eager, confirmation_settings,
                                                                              signal_log):
    confirmation_settings(BATCH_SIZE=2)
    past = timezone.now() - timedelta(minutes=1)
    # Sent while valid (no secret is made for an action already past its time), then overdue.
    notified = [stage_change(f"exp-n{i}@example.org", f"exp-n{i}-new@example.org")[1] for i in range(3)]
    DeferredAction.objects.filter(pk__in=[a.pk for a in notified]).update(valid_until=past)
    with messages_lost():  # still pending: their generate_token never ran
        pending = [stage_change(f"exp-p{i}@example.org", f"exp-p{i}-new@example.org", valid_until=past)[1]
                   for i in range(2)]
    fresh = [stage_change(f"exp-f{i}@example.org", f"exp-f{i}-new@example.org")[1] for i in range(2)]
    _profile, confirmed = stage_change("exp-c@example.org", "exp-c-new@example.org")
    with messages_lost():  # confirmed, apply not run yet
        assert pipeline.confirm(link_token(_mails_to("exp-c-new@example.org")[0])).ok
    _profile, applied = stage_change("exp-a@example.org", "exp-a-new@example.org")
    assert pipeline.confirm(link_token(_mails_to("exp-a-new@example.org")[0])).ok
    DeferredAction.objects.filter(pk__in=[confirmed.pk, applied.pk]).update(valid_until=past)
    assert {_state(a) for a in notified} == {State.NOTIFIED}
    assert {_state(a) for a in pending} == {State.PENDING}

    with CaptureQueriesContext(connection) as queries:
        assert _run(dispatch.EXPIRE_STALE) == 5

    stale = notified + pending
    assert {_state(a) for a in stale} == {State.EXPIRED}
    assert {_state(a) for a in fresh} == {State.NOTIFIED}
    assert _state(confirmed) == State.CONFIRMED
    assert _state(applied) == State.APPLIED
    assert set(Delivery.objects.filter(action__in=stale).values_list("status", flat=True)) == {
        DeliveryStatus.SUPERSEDED}
    assert sum(signal_log.count("action_expired", a.pk) for a in stale) == 5
    assert signal_log.count("action_expired") == 5
    updates = [q for q in queries if q["sql"].startswith('UPDATE "confirmation_deferredaction"')]
    assert len(updates) == 3  # 5 rows in batches of 2
    # an expired action's link says so, and nothing is applied
    assert pipeline.confirm(link_token(_mails_to("exp-n0-new@example.org")[0])).status == "expired"
    assert Profile.objects.get(email="exp-n0@example.org")
    # a second sweep has nothing left to do
    assert _run(dispatch.EXPIRE_STALE) == 0


def test_expire_stale_signals_receivers_connected_for_the_changed_model(eager, confirmation_settings):
    """A receiver of action_expired connected for one sender (the model the change is to) hears the sweep."""
    from deferred_confirmation.django_integration.signals import action_expired

    confirmation_settings(BATCH_SIZE=2)
    heard = []

    def receiver(sender, instance, **kwargs):
        heard.append((sender, instance.pk))

    action_expired.connect(receiver, sender=Profile)
    try:
        past = timezone.now() - timedelta(minutes=1)
        actions = [stage_change(f"exp-s{i}@example.org", f"exp-s{i}-new@example.org")[1] for i in range(3)]
        DeferredAction.objects.filter(pk__in=[a.pk for a in actions]).update(valid_until=past)
        assert _run(dispatch.EXPIRE_STALE) == 3
    finally:
        action_expired.disconnect(receiver, sender=Profile)
    assert sorted(heard, key=str) == sorted(((Profile, a.pk) for a in actions), key=str)


# --- purge --------------------------------------------------------------------------------------------
def test_purge_deletes_old_terminal_actions_with_their_deliveries(eager, confirmation_settings):
    confirmation_settings(BATCH_SIZE=2, RETENTION=timedelta(days=30))

    def staged(name):
        return stage_change(f"purge-{name}@example.org", f"purge-{name}-new@example.org")[1]

    def confirmed(name, apply_lost=False):
        action = staged(name)
        with messages_lost() if apply_lost else nullcontext():
            assert pipeline.confirm(link_token(_mails_to(f"purge-{name}-new@example.org")[0])).ok
        return action

    old_applied, old_cancelled, old_expired, old_failed = (
        confirmed("applied"), staged("cancelled"), staged("expired"), staged("failed"))
    assert pipeline.cancel(old_cancelled)
    DeferredAction.objects.filter(pk=old_expired.pk).update(valid_until=timezone.now())
    assert _run(dispatch.EXPIRE_STALE) == 1
    DeferredAction.objects.filter(pk=old_failed.pk).update(state=State.FAILED, failure_reason="test")
    recent_applied = confirmed("recent")
    old_open = staged("open")
    old_confirmed = confirmed("confirmed", apply_lost=True)
    doomed = [old_applied, old_cancelled, old_expired, old_failed]
    _age([*doomed, old_open, old_confirmed], days=31)
    _age([recent_applied], days=29)
    assert _state(old_confirmed) == State.CONFIRMED and _state(old_open) == State.NOTIFIED
    doomed_deliveries = list(Delivery.objects.filter(action__in=doomed).values_list("pk", flat=True))
    assert len(doomed_deliveries) == 4

    assert _run(dispatch.PURGE) == 4

    assert not DeferredAction.objects.filter(pk__in=[a.pk for a in doomed]).exists()
    assert not Delivery.objects.filter(pk__in=doomed_deliveries).exists()
    kept = [recent_applied, old_open, old_confirmed]
    assert DeferredAction.objects.filter(pk__in=[a.pk for a in kept]).count() == 3
    assert Delivery.objects.filter(action__in=kept).count() == 3
    assert _run(dispatch.PURGE) == 0


def test_purge_forgets_sends_no_limit_counts_any_more_and_keeps_the_rest(eager, confirmation_settings):
    """One SendRecord per secret ever sent would grow without end: rows older than the longest window (each
    channel's SEND_WINDOW and RESEND_COOLDOWN, the built-in channels' too, SEND_WINDOW_PER_CLIENT) go with the
    daily purge; a row still inside a window keeps counting, so a limit reached before the purge is still
    reached after it."""
    longest = timedelta(days=30)  # the letter channel's SEND_WINDOW, built in
    confirmation_settings(BATCH_SIZE=2, SEND_WINDOW_PER_CLIENT=timedelta(hours=1), CHANNELS={
        "email": {"SEND_LIMIT": 2, "SEND_WINDOW": timedelta(hours=1), "RESEND_COOLDOWN": timedelta(days=2)}})
    assert limits.longest_window() == longest
    now = timezone.now()
    for _n in range(5):
        limits.record_send("email", "old-sends@example.org", now=now - longest - timedelta(minutes=1))
    limits.record_send("email", "cooling@example.org", now=now - timedelta(days=1))
    limits.record_send("email", "busy@example.org", now=now - timedelta(minutes=5))
    limits.record_send("email", "busy@example.org", now=now - timedelta(minutes=1))
    SendRecord.objects.create(channel=limits.CLIENT_SCOPE, recipient_key="k" * 64,
                              created_at=now - longest - timedelta(days=1))

    assert _run(dispatch.PURGE) == 0  # no action to delete; the sends are counted in the log line

    assert SendRecord.objects.count() == 3
    assert limits.check_send("email", "busy@example.org").reason == "limit"  # still counted
    assert limits.check_send("email", "cooling@example.org", resend=True).reason == "cooldown"
    assert limits.check_send("email", "old-sends@example.org") is None


def test_taking_a_channel_out_of_settings_for_a_while_does_not_reset_its_limits(eager, confirmation_settings):
    """The purge keeps send records as long as the built-in channels' own windows too (micro-deposits: ten
    days), whatever the settings say at the moment it runs."""
    confirmation_settings(CHANNELS={"email": {}, "microdeposit": {}})
    account = '{"country": "DE", "holder": "Ada", "iban": "DE89370400440532013000"}'
    for _send in range(2):
        limits.record_send("microdeposit", account, now=timezone.now() - timedelta(days=3))
    assert limits.check_send("microdeposit", account).reason == "limit"

    confirmation_settings(CHANNELS={"email": {}})  # taken out for maintenance
    assert _run(dispatch.PURGE) == 0
    confirmation_settings(CHANNELS={"email": {}, "microdeposit": {}})  # and back
    assert limits.check_send("microdeposit", account).reason == "limit"


# --- redrive ------------------------------------------------------------------------------------------
@pytest.fixture
def published():
    messages = []

    def receiver(sender=None, body=None, **kwargs):
        messages.append((sender, tuple(body[0])))

    before_task_publish.connect(receiver, weak=False)
    yield messages
    before_task_publish.disconnect(receiver)


def test_redrive_reenqueues_actions_stuck_in_pending_and_confirmed(eager, confirmation_settings, published,
                                                                  signal_log):
    confirmation_settings(BATCH_SIZE=2, REDRIVE_AFTER=timedelta(minutes=10))
    with messages_lost():
        # never generated (generate_token lost)
        _p, queued = stage_change("rd-q@example.org", "rd-q-new@example.org")
        # generated, but the mail with the secret was lost
        _p, generated = stage_change("rd-g@example.org", "rd-g-new@example.org")
        delivery = Delivery.objects.get(action=generated)
        assert workers.app.tasks[dispatch.GENERATE_TOKEN].apply(args=[delivery.pk, delivery.generation]).get()
        # recent: not stuck yet
        _p, recent = stage_change("rd-r@example.org", "rd-r-new@example.org")
        # stuck, but already past its validity: expire's business, not redrive's
        _p, overdue = stage_change("rd-o@example.org", "rd-o-new@example.org",
                                   valid_until=timezone.now() + timedelta(seconds=1))
    lost_send = [args for name, args in published if name == dispatch.SEND_NOTIFICATION]
    assert len(lost_send) == 1
    old = Delivery.objects.get(action=generated)
    assert old.status == DeliveryStatus.GENERATED and old.secret_digest
    # confirmed, but the apply message was lost
    profile_c, confirmed = stage_change("rd-c@example.org", "rd-c-new@example.org")
    with messages_lost():
        assert pipeline.confirm(link_token(_mails_to("rd-c-new@example.org")[0])).ok
    # notified: waiting for the person, nothing to redrive
    _p, notified = stage_change("rd-n@example.org", "rd-n-new@example.org")
    DeferredAction.objects.filter(pk=overdue.pk).update(valid_until=timezone.now() - timedelta(seconds=1))
    _age([queued, generated, overdue, confirmed, notified], minutes=20)
    _age([recent], minutes=5)
    generations = dict(Delivery.objects.values_list("action_id", "generation"))
    mails_before = len(mail.outbox)

    assert _run(dispatch.REDRIVE) == 3

    # pending: the lost generate_token is published again (same generation: it is idempotent); a secret
    # whose mail was lost is replaced by a new generation, so the lost one can no longer be sent
    for action, bump in ((queued, 0), (generated, 1)):
        new = Delivery.objects.get(action=action)
        assert new.generation == generations[action.pk] + bump
        assert new.status == DeliveryStatus.SENT
        assert _state(action) == State.NOTIFIED
    assert Delivery.objects.get(action=generated).secret_digest != old.secret_digest
    assert workers.app.tasks[dispatch.SEND_NOTIFICATION].apply(args=lost_send[0]).get() is False
    assert len(_mails_to("rd-q-new@example.org")) == 1
    assert len(_mails_to("rd-g-new@example.org")) == 1
    # confirmed: applied now, once
    assert _state(confirmed) == State.APPLIED
    profile_c.refresh_from_db()
    assert (profile_c.email, profile_c.nickname) == ("rd-c-new@example.org", "+")
    assert signal_log.count("change_confirmed", confirmed.pk) == 1
    # the others untouched
    for action in (recent, overdue, notified):
        assert Delivery.objects.get(action=action).generation == generations[action.pk]
    assert _state(recent) == State.PENDING and _state(overdue) == State.PENDING
    assert _state(notified) == State.NOTIFIED
    assert len(mail.outbox) == mails_before + 2
    # the redriven mail works
    assert pipeline.confirm(link_token(_mails_to("rd-g-new@example.org")[0])).ok
    assert Profile.objects.filter(email="rd-g-new@example.org").exists()
    # the sweep touched what it redrove: not picked up again before REDRIVE_AFTER passes
    assert _run(dispatch.REDRIVE) == 0


def test_redrive_leaves_a_delivery_that_is_still_retrying_alone(eager, confirmation_settings, published):
    """A send in transient-error backoff touches its row on each retry; redrive must not kill its secret."""
    confirmation_settings(REDRIVE_AFTER=timedelta(minutes=10))
    with messages_lost():
        _p, action = stage_change("rd-live@example.org", "rd-live-new@example.org")
        delivery = Delivery.objects.get(action=action)
        workers.app.tasks[dispatch.GENERATE_TOKEN].apply(args=[delivery.pk, delivery.generation]).get()
    _age([action], minutes=20)
    pipeline.lifecycle.delivery_retrying(delivery.pk, delivery.generation, "451 try again")  # a retry, just now

    assert _run(dispatch.REDRIVE) == 1
    delivery.refresh_from_db()
    assert delivery.generation == 0 and delivery.status == DeliveryStatus.GENERATED
    assert delivery.status_detail == "retrying: 451 try again"


def test_redrive_recovers_a_resend_whose_publish_was_lost(eager, confirmation_settings, no_resend_cooldown):
    confirmation_settings(REDRIVE_AFTER=timedelta(minutes=10))
    _p, action = stage_change("rd-resend@example.org", "rd-resend-new@example.org")
    assert _state(action) == State.NOTIFIED
    with messages_lost():  # the broker was away when the person asked for a new link
        assert pipeline.resend(action).sent
    delivery = Delivery.objects.get(action=action)
    assert delivery.status == DeliveryStatus.QUEUED and delivery.generation == 1
    _age([action], minutes=20)
    before = len(_mails_to("rd-resend-new@example.org"))

    assert _run(dispatch.REDRIVE) == 1

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT and delivery.generation == 1  # the same resend, delivered
    assert len(_mails_to("rd-resend-new@example.org")) == before + 1


def test_redrive_waits_for_the_broker_to_redeliver_a_send_that_reached_its_provider(eager, confirmation_settings):
    """A send that called its provider (send_attempts > 0) and then lost its worker is redelivered by the broker
    after the visibility timeout; a new generation before that would send a second SMS or payout."""
    confirmation_settings(REDRIVE_AFTER=timedelta(minutes=10))
    with messages_lost():
        _p, action = stage_change("rd-inflight@example.org", "rd-inflight-new@example.org")
        delivery = Delivery.objects.get(action=action)
        workers.app.tasks[dispatch.GENERATE_TOKEN].apply(args=[delivery.pk, delivery.generation]).get()
    Delivery.objects.filter(pk=delivery.pk).update(send_attempts=1)  # the provider was called, then the worker died
    _age([action], minutes=20)
    assert _run(dispatch.REDRIVE) == 1
    assert Delivery.objects.get(pk=delivery.pk).generation == 0  # left for the broker's redelivery

    _age([action], minutes=2 * 60)  # past any visibility timeout: the message is gone for good
    assert _run(dispatch.REDRIVE) == 1
    assert Delivery.objects.get(pk=delivery.pk).generation == 1
