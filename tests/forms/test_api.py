"""pending_for, resend and cancel (docs/api.md#lifecycle-functions)."""

from __future__ import annotations

from datetime import timedelta

from django.core import mail
from django.utils import timezone

from deferred_confirmation import pipeline
from deferred_confirmation.django_integration.models import DeferredAction
from tests.conftest import link_token
from tests.testapp.forms import ProfileEmailForm, ProfileForm
from tests.testapp.models import Profile


def test_pending_for_counts_open_unexpired_actions_of_that_object(flow):
    mine = Profile.objects.create(email="mine@example.org")
    theirs = Profile.objects.create(email="theirs@example.org")
    assert DeferredAction.objects.pending_for(mine) == 0

    flow.request(ProfileEmailForm, {"email": "a@example.org"}, instance=mine)
    overdue, _ = flow.request(ProfileEmailForm, {"email": "b@example.org"}, instance=mine)
    DeferredAction.objects.filter(pk=overdue.pk).update(valid_until=timezone.now() - timedelta(minutes=1))
    cancelled, _ = flow.request(ProfileEmailForm, {"email": "c@example.org"}, instance=mine)
    pipeline.cancel(cancelled)
    flow.request(ProfileEmailForm, {"email": "d@example.org"}, instance=theirs)
    flow.request(ProfileForm, {"email": "e@example.org"})  # a create points at nothing yet
    assert DeferredAction.objects.pending_for(mine) == 1
    assert DeferredAction.objects.pending_for(theirs) == 1

    second, token = flow.request(ProfileEmailForm, {"email": "f@example.org"}, instance=mine)
    assert DeferredAction.objects.pending_for(mine) == 2

    flow.confirm(token)  # applied: no longer waiting
    second.refresh_from_db()
    assert second.state == "applied"
    assert DeferredAction.objects.pending_for(mine) == 1


def test_resend_kills_the_old_link_and_the_new_one_works(flow, no_resend_cooldown):
    profile = Profile.objects.create(email="old@example.org")
    action, old_token = flow.request(ProfileEmailForm, {"email": "new@example.org"}, instance=profile)

    assert flow.run(pipeline.resend, action).sent is True

    assert len(mail.outbox) == 2
    new_token = link_token(mail.outbox[-1])
    assert new_token != old_token
    assert mail.outbox[-1].to == ["new@example.org"]
    assert flow.confirm(old_token).status == "invalid"
    assert Profile.objects.get().email == "old@example.org"

    assert flow.confirm(new_token).status == "confirmed"

    action.refresh_from_db()
    assert action.state == "applied"
    assert Profile.objects.get().email == "new@example.org"
    assert flow.run(pipeline.resend, action).sent is False  # nothing left to resend
    assert len(mail.outbox) == 2


def test_cancel_stops_the_link_and_is_true_only_once(flow, no_resend_cooldown):
    profile = Profile.objects.create(email="old@example.org")
    action, token = flow.request(ProfileEmailForm, {"email": "new@example.org"}, instance=profile)

    assert pipeline.cancel(action) is True
    assert action.state == "cancelled"  # the caller's object is refreshed

    assert pipeline.cancel(action) is False
    result = flow.confirm(token)
    assert result.status == "invalid"
    assert flow.run(pipeline.resend, action).sent is False
    assert len(mail.outbox) == 1
    action.refresh_from_db()
    assert action.state == "cancelled"
    assert Profile.objects.get().email == "old@example.org"
    assert DeferredAction.objects.pending_for(profile) == 0


def test_an_applied_action_cannot_be_cancelled(flow):
    profile = Profile.objects.create(email="old@example.org")
    action, token = flow.request(ProfileEmailForm, {"email": "new@example.org"}, instance=profile)
    flow.confirm(token)

    assert pipeline.cancel(action) is False

    action.refresh_from_db()
    assert action.state == "applied"
    assert Profile.objects.get().email == "new@example.org"


def test_no_secret_is_made_or_sent_for_an_action_already_past_its_time(flow):
    from django.core import mail

    profile = Profile.objects.create(email="late@example.org")
    form = ProfileEmailForm({"email": "late-new@example.org"}, instance=profile)
    assert form.is_valid()
    sent = len(mail.outbox)
    action = flow.run(form.save, valid_until=timezone.now() - timedelta(seconds=1))
    assert len(mail.outbox) == sent
    assert set(action.deliveries.values_list("secret_digest", flat=True)) == {""}


def test_a_provider_reason_echoing_the_recipient_is_stored_masked(flow):
    from deferred_confirmation.pipeline import lifecycle

    profile = Profile.objects.create(email="echo@example.org")
    action, _token = flow.request(ProfileEmailForm, {"email": "echo.new@example.org"}, instance=profile)
    delivery = action.deliveries.get()
    delivery.status = "generated"  # as while a send is in flight
    delivery.save(update_fields=["status"])
    assert lifecycle.delivery_failed(delivery.pk, delivery.generation,
                                     "550 echo.new@example.org: no such user; IBAN DE89370400440532013000")
    delivery.refresh_from_db()
    action.refresh_from_db()
    for stored in (delivery.status_detail, action.failure_reason):
        assert "echo.new@example.org" not in stored and "DE89370400440532013000" not in stored
        assert "550" in stored and "no such user" in stored
