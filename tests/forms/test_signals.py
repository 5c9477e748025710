"""The four public signals (docs/api.md#signals), with real commits: transaction=True and eager Celery."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import connection
from django.utils import timezone

from deferred_confirmation import pipeline
from deferred_confirmation.django_integration import signals
from deferred_confirmation.pipeline import lifecycle
from tests.conftest import link_token
from tests.testapp.forms import ProfileEmailForm, ProfileForm
from tests.testapp.models import Profile

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def received():
    """received(signal) -> list of (sender, kwargs) as each call saw them."""
    connected = []

    def listen(signal):
        calls = []

        def receiver(sender, **kwargs):
            instance = kwargs["instance"]
            calls.append({
                "sender": sender,
                "action_id": instance.pk,
                "state": instance.state,
                "token": getattr(instance, "token", None),
                "in_transaction": connection.in_atomic_block,
                "emails": sorted(Profile.objects.values_list("email", flat=True)),
                **{k: v for k, v in kwargs.items() if k not in ("instance", "signal")},
            })

        signal.connect(receiver, weak=False)
        connected.append((signal, receiver))
        return calls

    yield listen
    for signal, receiver in connected:
        signal.disconnect(receiver)


def request(form_class, data, instance=None, **save_kwargs):
    form = form_class(data, instance=instance)
    assert form.is_valid(), form.errors
    action = form.save(**save_kwargs)  # commits: the eager tasks run now and send the mail
    return action, link_token(mail.outbox[-1])


def test_change_confirmed_is_sent_once_after_the_apply_commits(eager, received):
    applied = received(signals.change_confirmed)
    failed = received(signals.confirmation_failed)
    profile = Profile.objects.create(email="old@example.org")
    action, token = request(ProfileEmailForm, {"email": "new@example.org"}, instance=profile)
    assert applied == []

    pipeline.confirm(token)
    lifecycle.apply(action.pk)  # a second run sends nothing more

    assert len(applied) == 1
    call = applied[0]
    assert call["sender"] is Profile and call["action_id"] == action.pk and call["state"] == "applied"
    assert call["in_transaction"] is False  # sent after the commit ...
    assert call["emails"] == ["new@example.org"]  # ... and the change is visible to the receiver
    assert failed == []


def test_change_confirmed_for_a_create_names_the_model(eager, received):
    applied = received(signals.change_confirmed)
    action, token = request(ProfileForm, {"email": "created@example.org"})

    pipeline.confirm(token)

    assert [(c["sender"], c["action_id"], c["emails"]) for c in applied] == [
        (Profile, action.pk, ["created@example.org"])]


def test_confirmation_failed_carries_the_reason(eager, received):
    applied = received(signals.change_confirmed)
    failed = received(signals.confirmation_failed)
    profile = Profile.objects.create(email="old@example.org")
    action, token = request(ProfileEmailForm, {"email": "wanted@example.org"}, instance=profile)
    Profile.objects.create(email="wanted@example.org")

    pipeline.confirm(token)

    action.refresh_from_db()
    assert action.state == "failed"
    assert len(failed) == 1
    call = failed[0]
    assert (call["sender"], call["action_id"], call["state"]) == (Profile, action.pk, "failed")
    assert call["reason"] == action.failure_reason and "email" in call["reason"].lower()
    assert call["in_transaction"] is False
    assert applied == []


def test_confirmation_required_is_sent_in_the_worker_with_the_raw_token(eager, received):
    required = received(signals.confirmation_required)
    user = get_user_model().objects.create_user("sig", "sig@example.org")
    profile = Profile.objects.create(email="old@example.org")

    action, token = request(ProfileEmailForm, {"email": "new@example.org"}, instance=profile, user=user)

    assert len(required) == 1
    call = required[0]
    assert (call["sender"], call["action_id"], call["user"], call["channel"]) == (
        Profile, action.pk, user, "email")
    assert call["token"] == token  # the secret that was mailed, in memory only
    assert token not in action.deliveries.get().secret_digest
    assert pipeline.confirm(token).status == "confirmed"


def test_action_expired_is_sent_by_the_expiry_sweep(eager, received):
    expired = received(signals.action_expired)
    profile = Profile.objects.create(email="old@example.org")
    action, token = request(ProfileEmailForm, {"email": "new@example.org"}, instance=profile)
    other, _ = request(ProfileEmailForm, {"email": "other@example.org"}, instance=profile,
                       valid_until=timezone.now() + timedelta(days=30))

    assert lifecycle.expire(now=timezone.now() + timedelta(days=4)) == 1

    assert [(c["sender"], c["action_id"], c["state"]) for c in expired] == [(Profile, action.pk, "expired")]
    assert pipeline.confirm(token).status == "expired"
    assert len(expired) == 1
    other.refresh_from_db()
    assert other.state == "notified"


def test_action_expired_is_sent_when_an_expired_link_is_used(eager, received):
    expired = received(signals.action_expired)
    profile = Profile.objects.create(email="old@example.org")
    action, token = request(ProfileEmailForm, {"email": "new@example.org"}, instance=profile,
                            valid_until=timezone.now() + timedelta(seconds=30))
    type(action).objects.filter(pk=action.pk).update(valid_until=timezone.now() - timedelta(seconds=1))

    assert pipeline.confirm(token).status == "expired"

    assert [(c["sender"], c["action_id"], c["state"]) for c in expired] == [(Profile, action.pk, "expired")]
    assert Profile.objects.get().email == "old@example.org"
