"""Applying a confirmed change: re-validated against the row as it is now, exactly once
(docs/concepts.md#applying-a-change)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db.models.signals import post_save

from deferred_confirmation.django_integration.models import DeferredAction, Delivery
from deferred_confirmation.pipeline import lifecycle
from deferred_confirmation.workers.tasks import apply_action
from tests.forms.extra_forms import (
    HOOK_CALLS,
    HalfwayFailingForm,
    HookedEmailForm,
    RacedForm,
    StaleTolerantEmailForm,
)
from tests.testapp.forms import ProfileEmailForm, ProfileForm
from tests.testapp.models import Category, Profile, Tag


@pytest.fixture
def profile_saves():
    saves: list[int] = []

    def record(sender, instance, **kwargs):
        saves.append(instance.pk)

    post_save.connect(record, sender=Profile, weak=False)
    yield saves
    post_save.disconnect(record, sender=Profile)


def failed(action: DeferredAction) -> str:
    action.refresh_from_db()
    assert action.state == "failed", f"expected failed, got {action.state}"
    assert action.applied_at is None
    return action.failure_reason


# --- re-validation against the current rows ---------------------------------------------------------

def test_a_unique_value_taken_meanwhile_fails_the_change(flow):
    profile = Profile.objects.create(email="old@example.org")
    action, token = flow.request(ProfileEmailForm, {"email": "wanted@example.org"}, instance=profile)
    Profile.objects.create(email="wanted@example.org")  # someone else got there first

    assert flow.confirm(token).status == "confirmed"  # the secret was right ...

    reason = failed(action)  # ... but the change no longer fits
    assert "email" in reason.lower() and "already exists" in reason
    assert Profile.objects.get(pk=profile.pk).email == "old@example.org"


def test_a_unique_value_taken_meanwhile_fails_a_create(flow):
    action, token = flow.request(ProfileForm, {"email": "wanted@example.org", "nickname": "mine"})
    Profile.objects.create(email="wanted@example.org", nickname="theirs")

    flow.confirm(token)

    assert "email" in failed(action).lower()
    assert list(Profile.objects.values_list("nickname", flat=True)) == ["theirs"]


def test_a_deleted_target_fails_and_nothing_is_created(flow):
    profile = Profile.objects.create(email="old@example.org")
    action, token = flow.request(ProfileEmailForm, {"email": "new@example.org"}, instance=profile)
    profile.delete()

    flow.confirm(token)

    assert "no longer exists" in failed(action)
    assert not Profile.objects.exists()


def test_a_deleted_related_row_fails_with_a_readable_reason(flow):
    profile = Profile.objects.create(email="old@example.org")
    category = Category.objects.create(name="to be deleted")
    action, token = flow.request(ProfileForm, {"email": "old@example.org", "nickname": "new", "category":
                                               category.pk}, instance=profile)
    category.delete()

    flow.confirm(token)

    reason = failed(action)
    assert reason.startswith("The change is no longer valid.")
    assert "Category: Select a valid choice" in reason
    profile.refresh_from_db()
    assert (profile.nickname, profile.category) == ("", None)


def test_a_deleted_related_row_fails_a_create(flow):
    category = Category.objects.create(name="to be deleted")
    action, token = flow.request(ProfileForm, {"email": "new@example.org", "category": category.pk})
    category.delete()

    flow.confirm(token)

    assert "Category" in failed(action)
    assert not Profile.objects.exists()


def test_a_deleted_many_to_many_row_fails_the_change(flow):
    keep, gone = Tag.objects.create(name="keep"), Tag.objects.create(name="gone")
    profile = Profile.objects.create(email="old@example.org")
    action, token = flow.request(ProfileForm, {"email": "old@example.org", "tags": [keep.pk, gone.pk]},
                                 instance=profile)
    gone_pk = gone.pk
    gone.delete()

    flow.confirm(token)

    reason = failed(action)
    assert f"Tags: Select a valid choice. {gone_pk} is not one of the available choices." in reason
    assert not profile.tags.exists()


def test_a_form_that_can_no_longer_be_imported_fails(flow):
    profile = Profile.objects.create(email="old@example.org")
    action, token = flow.request(ProfileEmailForm, {"email": "new@example.org"}, instance=profile)
    DeferredAction.objects.filter(pk=action.pk).update(form_class="tests.testapp.forms.RemovedForm")

    flow.confirm(token)

    assert "can no longer be imported" in failed(action)
    assert Profile.objects.get().email == "old@example.org"


def test_a_save_that_fails_halfway_leaves_nothing_behind(flow):
    profile = Profile.objects.create(email="old@example.org")
    action, token = flow.request(HalfwayFailingForm, {"email": "new@example.org"}, instance=profile)

    flow.confirm(token)

    reason = failed(action)
    assert reason == "The change could not be saved: the mailbox service refused the address"
    assert list(Profile.objects.values_list("email", flat=True)) == ["old@example.org"]


def test_a_unique_value_taken_between_validation_and_save_fails_cleanly(flow):
    profile = Profile.objects.create(email="old@example.org")
    action, token = flow.request(RacedForm, {"email": "new@example.org"}, instance=profile)

    assert flow.confirm(token).status == "confirmed"

    assert failed(action).startswith("The change could not be saved:")
    assert list(Profile.objects.values_list("email", flat=True)) == ["old@example.org"]
    action.refresh_from_db()  # the failure was recorded: the transaction was still usable
    assert action.failure_reason


# --- stale targets -----------------------------------------------------------------------------------

def test_a_target_changed_in_a_touched_field_is_stale(flow):
    profile = Profile.objects.create(email="old@example.org")
    action, token = flow.request(ProfileEmailForm, {"email": "new@example.org"}, instance=profile)
    Profile.objects.filter(pk=profile.pk).update(email="admin-set@example.org")

    flow.confirm(token)

    assert failed(action).startswith("stale")
    assert Profile.objects.get().email == "admin-set@example.org"


def test_a_changed_many_to_many_is_stale(flow):
    tag = Tag.objects.create(name="t")
    profile = Profile.objects.create(email="old@example.org")
    action, token = flow.request(ProfileForm, {"email": "old@example.org", "nickname": "n"}, instance=profile)
    profile.tags.add(tag)

    flow.confirm(token)

    assert failed(action).startswith("stale")
    assert Profile.objects.get().nickname == ""


def test_a_change_to_a_field_the_form_does_not_touch_is_not_stale(flow):
    profile = Profile.objects.create(email="old@example.org", nickname="before")
    action, token = flow.request(ProfileEmailForm, {"email": "new@example.org"}, instance=profile)
    Profile.objects.filter(pk=profile.pk).update(nickname="changed meanwhile")

    flow.confirm(token)

    action.refresh_from_db()
    assert action.state == "applied", action.failure_reason
    profile.refresh_from_db()
    assert (profile.email, profile.nickname) == ("new@example.org", "changed meanwhile")


def test_a_form_that_allows_stale_targets_applies_anyway(flow):
    profile = Profile.objects.create(email="old@example.org")
    action, token = flow.request(StaleTolerantEmailForm, {"email": "new@example.org"}, instance=profile)
    Profile.objects.filter(pk=profile.pk).update(email="admin-set@example.org")

    flow.confirm(token)

    action.refresh_from_db()
    assert action.state == "applied", action.failure_reason
    assert Profile.objects.get().email == "new@example.org"


# --- exactly once --------------------------------------------------------------------------------------

def test_apply_runs_once_however_often_it_is_called(flow, profile_saves):
    profile = Profile.objects.create(email="old@example.org")
    profile_saves.clear()
    action, token = flow.request(ProfileEmailForm, {"email": "new@example.org"}, instance=profile)
    assert flow.confirm(token, apply=False).status == "confirmed"
    assert profile_saves == []

    assert lifecycle.apply(action.pk) is True
    assert lifecycle.apply(action.pk) is False
    flow.run(apply_action.apply, args=[str(action.pk)])  # a duplicated task message

    assert profile_saves == [profile.pk]
    action.refresh_from_db()
    applied_at = action.applied_at
    assert action.state == "applied" and applied_at is not None

    assert flow.confirm(token).status == "already_used"  # a second click
    assert profile_saves == [profile.pk]
    action.refresh_from_db()
    assert action.applied_at == applied_at


def test_a_failed_action_is_never_applied_later(flow, profile_saves):
    profile = Profile.objects.create(email="old@example.org")
    action, token = flow.request(ProfileEmailForm, {"email": "wanted@example.org"}, instance=profile)
    blocker = Profile.objects.create(email="wanted@example.org")
    flow.confirm(token)
    failed(action)
    blocker.delete()  # the conflict is gone, but a terminal action never changes again
    profile_saves.clear()

    assert lifecycle.apply(action.pk) is False
    assert flow.confirm(token).status == "already_used"

    assert profile_saves == []
    assert failed(action)
    assert Profile.objects.get().email == "old@example.org"


def test_an_action_that_was_not_confirmed_is_not_applied(flow):
    profile = Profile.objects.create(email="old@example.org")
    action, _token = flow.request(ProfileEmailForm, {"email": "new@example.org"}, instance=profile)

    assert lifecycle.apply(action.pk) is False
    assert lifecycle.apply("00000000-0000-0000-0000-000000000000") is False

    action.refresh_from_db()
    assert action.state == "notified"
    assert Profile.objects.get().email == "old@example.org"


# --- the form's send_notification hook (docs/api.md#deferredform) ---------------------------------------------

def test_the_forms_send_notification_hook_replaces_the_channel(flow):
    HOOK_CALLS.clear()
    user = get_user_model().objects.create_user("hook", "hook@example.org")
    profile = Profile.objects.create(email="old@example.org")
    form = HookedEmailForm({"email": "new@example.org"}, instance=profile)
    assert form.is_valid()

    action = flow.run(form.save, user=user)

    assert mail.outbox == []  # the channel backend was not used
    assert len(HOOK_CALLS) == 1
    hook_user, action_id, token, email = HOOK_CALLS[0]
    assert (hook_user, action_id, email) == (user, action.pk, "new@example.org")
    assert isinstance(token, str) and len(token) == 43
    delivery = Delivery.objects.get(action=action)
    assert delivery.status == "sent" and delivery.secret_digest and token not in delivery.secret_digest
    action.refresh_from_db()
    assert action.state == "notified"
    assert not hasattr(action, "token")

    assert flow.confirm(token).status == "confirmed"  # the raw secret the hook got is the real one

    action.refresh_from_db()
    assert action.state == "applied"
    assert Profile.objects.get().email == "new@example.org"


def test_an_unexpected_error_at_apply_fails_the_action_instead_of_leaving_it_confirmed(flow, caplog):
    """A bug in the form (here a KeyError in clean) must not leave the action confirmed for redrive forever."""
    from tests.forms.extra_forms import BuggyCleanForm

    Profile.objects.create(email="bug-old@example.org")
    action, token = flow.request(BuggyCleanForm, {"email": "bug-new@example.org"},
                                 instance=Profile.objects.get())
    BuggyCleanForm.broken = True
    try:
        assert flow.confirm(token).status == "confirmed"
    finally:
        BuggyCleanForm.broken = False
    action.refresh_from_db()
    assert action.state == "failed"
    assert "KeyError" in action.failure_reason and "absent" not in action.failure_reason
    assert Profile.objects.get().email == "bug-old@example.org"
    assert any("apply failed" in r.getMessage() for r in caplog.records)
