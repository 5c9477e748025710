"""DeferredForm.save(): stores the change instead of writing it; edit and create; what is stored."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.contrib.contenttypes.models import ContentType
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import TextField
from django.db.models.functions import Cast
from django.http import QueryDict
from django.utils import timezone

from deferred_confirmation.django_integration.models import DeferredAction
from tests.forms.extra_forms import ProfileUploadForm, SplitWhenForm
from tests.testapp.forms import ProfileEmailForm, ProfileForm
from tests.testapp.models import Category, Profile, Tag

pytestmark = pytest.mark.django_db


def post(**fields) -> QueryDict:
    """A request.POST: lists become repeated keys, as a browser sends a multiple select."""
    pairs = []
    for key, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            pairs.append((key, item))
    return QueryDict(urlencode(pairs))


def stored_json_text(action: DeferredAction) -> str:
    """form_data exactly as the database holds it."""
    return DeferredAction.objects.filter(pk=action.pk).annotate(
        raw=Cast("form_data", TextField())).values_list("raw", flat=True).get()


# --- edit ------------------------------------------------------------------------------------------

def test_edit_save_stores_a_pending_action_and_writes_nothing():
    user = get_user_model().objects.create_user("ann", "ann@example.org")
    profile = Profile.objects.create(email="old@example.org", nickname="ann")
    form = ProfileEmailForm({"email": "new@example.org"}, instance=profile)
    assert form.is_valid(), form.errors
    valid_until = timezone.now() + timedelta(hours=5)

    action = form.save(user=user, description="Change e-mail", valid_until=valid_until)

    assert isinstance(action, DeferredAction)
    action.refresh_from_db()
    assert action.state == "pending"
    assert action.form_class == "tests.testapp.forms.ProfileEmailForm"
    assert action.content_type == ContentType.objects.get_for_model(Profile)
    assert action.object_pk == str(profile.pk)
    assert action.target == profile
    assert action.user == user
    assert action.description == "Change e-mail"
    assert action.valid_until == valid_until
    assert action.confirmed_at is None and action.applied_at is None
    assert [(d.channel, d.recipient) for d in action.deliveries.all()] == [("email", "new@example.org")]
    # The row and the caller's object both still show what is stored.
    assert Profile.objects.get(pk=profile.pk).email == "old@example.org"
    assert profile.email == "old@example.org"
    assert DeferredAction.objects.pending_for(profile) == 1


def test_edit_is_applied_after_confirmation(flow):
    profile = Profile.objects.create(email="old@example.org", nickname="ann")
    action, token = flow.request(ProfileEmailForm, {"email": "new@example.org"}, instance=profile)
    assert mail.outbox[-1].to == ["new@example.org"]
    assert Profile.objects.get(pk=profile.pk).email == "old@example.org"

    result = flow.confirm(token)

    assert result.status == "confirmed"
    assert Profile.objects.get(pk=profile.pk).email == "new@example.org"
    assert Profile.objects.get(pk=profile.pk).nickname == "ann"  # fields outside the form untouched
    assert profile.email == "old@example.org"  # the caller's object was never written to
    action.refresh_from_db()
    assert action.state == "applied"
    assert action.confirmed_at is not None
    assert action.applied_at is not None and action.applied_at >= action.confirmed_at
    assert action.failure_reason == ""


# --- create ----------------------------------------------------------------------------------------

def test_create_makes_nothing_until_confirmed_then_points_at_the_new_row(flow):
    category = Category.objects.create(name="friends")
    action, token = flow.request(ProfileForm, {"email": "fresh@example.org", "nickname": "fresh",
                                               "category": category.pk})
    assert not Profile.objects.exists()
    action.refresh_from_db()
    assert action.content_type is None and action.object_pk is None
    assert action.target_fingerprint == ""

    assert flow.confirm(token).status == "confirmed"

    profile = Profile.objects.get()
    assert (profile.email, profile.nickname, profile.category) == ("fresh@example.org", "fresh", category)
    action.refresh_from_db()
    assert action.state == "applied"
    assert action.content_type == ContentType.objects.get_for_model(Profile)
    assert action.object_pk == str(profile.pk)
    assert action.target == profile


# --- what is stored --------------------------------------------------------------------------------

def test_many_to_many_survives_a_create(flow):
    red, green, _blue = (Tag.objects.create(name=n) for n in ("red", "green", "blue"))
    data = post(email="tags@example.org", tags=[red.pk, green.pk], csrfmiddlewaretoken="x" * 32)
    action, token = flow.request(ProfileForm, data)
    assert sorted(action.form_data["tags"]) == sorted([str(red.pk), str(green.pk)])

    flow.confirm(token)

    assert set(Profile.objects.get().tags.all()) == {red, green}


def test_many_to_many_survives_an_edit(flow):
    red, green, blue = (Tag.objects.create(name=n) for n in ("red", "green", "blue"))
    profile = Profile.objects.create(email="tags@example.org")
    profile.tags.set([red])
    action, token = flow.request(ProfileForm, post(email="tags@example.org", tags=[green.pk, blue.pk]),
                                 instance=profile)
    assert set(profile.tags.all()) == {red}

    flow.confirm(token)

    assert set(Profile.objects.get().tags.all()) == {green, blue}
    action.refresh_from_db()
    assert action.state == "applied"


def test_prefix_survives(flow):
    profile = Profile.objects.create(email="old@example.org", nickname="old")
    tag = Tag.objects.create(name="t")
    data = post(**{"p-email": "prefixed@example.org", "p-nickname": "pre", "p-tags": [tag.pk],
                   "email": "decoy@example.org", "nickname": "decoy"})
    action, token = flow.request(ProfileForm, data, instance=profile, prefix="p")
    assert action.form_prefix == "p"
    assert set(action.form_data) == {"p-email", "p-nickname", "p-tags"}

    flow.confirm(token)

    profile.refresh_from_db()
    assert (profile.email, profile.nickname) == ("prefixed@example.org", "pre")
    assert list(profile.tags.all()) == [tag]


def test_only_the_forms_own_fields_are_stored_as_json():
    category = Category.objects.create(name="c")
    data = post(email="keys@example.org", nickname="k", category=category.pk, csrfmiddlewaretoken="t" * 64,
                next="/after/", is_staff="on", password="not-a-form-field")
    form = ProfileForm(data)
    assert form.is_valid(), form.errors

    action = form.save()

    assert set(action.form_data) == {"email", "nickname", "category"}
    raw = stored_json_text(action)
    assert json.loads(raw) == {"email": ["keys@example.org"], "nickname": ["k"], "category": [str(category.pk)]}
    for leftover in ("csrfmiddlewaretoken", "t" * 64, "/after/", "is_staff", "not-a-form-field"):
        assert leftover not in raw


def test_form_data_from_a_plain_dict_is_stored_as_lists_of_json_values():
    tag = Tag.objects.create(name="t")
    form = ProfileForm({"email": "dict@example.org", "tags": [tag], "unrelated": object()})
    assert form.is_valid(), form.errors

    action = form.save()

    assert json.loads(stored_json_text(action)) == {"email": ["dict@example.org"], "tags": [tag.pk]}


# --- refusals --------------------------------------------------------------------------------------

def test_save_before_is_valid_is_refused():
    profile = Profile.objects.create(email="old@example.org")
    form = ProfileEmailForm({"email": "new@example.org"}, instance=profile)
    with pytest.raises(ValueError, match=r"is_valid\(\)"):
        form.save()
    assert not DeferredAction.objects.exists()


def test_save_commit_false_is_refused_with_a_clear_message():
    profile = Profile.objects.create(email="old@example.org")
    form = ProfileEmailForm({"email": "new@example.org"}, instance=profile)
    assert form.is_valid()
    with pytest.raises(ValueError, match=r"commit=False.*not supported"):
        form.save(commit=False)
    assert not DeferredAction.objects.exists()
    assert Profile.objects.get().email == "old@example.org"


@pytest.mark.parametrize("data", [{"email": "not an address"}, {}])
def test_saving_an_invalid_form_is_refused(data):
    Profile.objects.create(email="taken@example.org")
    form = ProfileEmailForm(data)
    assert not form.is_valid()
    with pytest.raises(ValueError, match="didn't validate"):
        form.save()
    assert not DeferredAction.objects.exists()


def test_saving_an_unbound_form_is_refused():
    form = ProfileEmailForm()
    assert not form.is_valid()
    with pytest.raises(ValueError):
        form.save()
    assert not DeferredAction.objects.exists()


def test_a_duplicate_unique_value_is_refused_at_request_time():
    Profile.objects.create(email="taken@example.org")
    form = ProfileEmailForm({"email": "taken@example.org"})
    assert not form.is_valid()
    assert "email" in form.errors


def test_file_uploads_are_refused_with_a_clear_error():
    profile = Profile.objects.create(email="old@example.org")
    upload = SimpleUploadedFile("scan.pdf", b"%PDF-1.4 secret scan", content_type="application/pdf")
    form = ProfileUploadForm({"email": "new@example.org"}, {"attachment": upload}, instance=profile)
    assert form.is_valid(), form.errors

    with pytest.raises(ValueError, match="file uploads cannot be deferred"):
        form.save()

    assert not DeferredAction.objects.exists()
    assert Profile.objects.get().email == "old@example.org"


def test_a_form_with_an_empty_file_field_still_saves():
    profile = Profile.objects.create(email="old@example.org")
    form = ProfileUploadForm({"email": "new@example.org"}, instance=profile)
    assert form.is_valid(), form.errors

    action = form.save()

    assert set(action.form_data) == {"email"}


def test_a_multiwidget_field_with_a_prefix_survives(flow):
    profile = Profile.objects.create(email="old@example.org")
    data = {"w-email": "when@example.org", "w-when_0": "2031-02-03", "w-when_1": "04:05", "when_0": "1999-01-01"}
    action, token = flow.request(SplitWhenForm, data, instance=profile, prefix="w")
    assert action.form_data == {"w-email": ["when@example.org"], "w-when_0": ["2031-02-03"],
                                "w-when_1": ["04:05"]}

    flow.confirm(token)

    profile.refresh_from_db()
    assert (profile.email, profile.nickname) == ("when@example.org", "2031-02-03 04:05")


def test_defaults_of_save():
    profile = Profile.objects.create(email="old@example.org")
    form = ProfileEmailForm({"email": "new@example.org"}, instance=profile)
    assert form.is_valid()
    before = timezone.now()

    action = form.save(user=AnonymousUser())

    assert action.user is None and action.description == ""
    # valid_until defaults to the channel's EXPIRES (email: 3 days)
    assert before + timedelta(days=3) <= action.valid_until <= timezone.now() + timedelta(days=3)


def test_saving_an_edit_of_a_row_deleted_meanwhile_is_refused():
    profile = Profile.objects.create(email="old@example.org")
    form = ProfileEmailForm({"email": "new@example.org"}, instance=profile)
    assert form.is_valid()
    Profile.objects.filter(pk=profile.pk).delete()

    with pytest.raises(ValueError, match="no longer exists"):
        form.save()

    assert not DeferredAction.objects.exists()
    assert not Profile.objects.exists()


def test_multi_part_widgets_are_stored_whole_and_applied(flow):
    """SelectDateWidget posts when_year/when_month/when_day: all three must be stored, none dropped."""
    from tests.forms.extra_forms import SelectDateForm

    profile = Profile.objects.create(email="sd@example.org")
    data = {"email": "sd-new@example.org", "when_year": "2024", "when_month": "5", "when_day": "6",
            "csrfmiddlewaretoken": "x"}
    action, token = flow.request(SelectDateForm, data, instance=profile)
    assert set(action.form_data) == {"email", "when_year", "when_month", "when_day"}
    assert flow.confirm(token).status == "confirmed"
    profile.refresh_from_db()
    assert (profile.email, profile.nickname) == ("sd-new@example.org", "2024-05-06")


def test_a_form_whose_input_cannot_survive_storage_is_refused_at_save(db):
    from tests.forms.extra_forms import UnstorableForm

    profile = Profile.objects.create(email="lossy@example.org")
    form = UnstorableForm({"email": "lossy-new@example.org", "unrelated_key": "kept"}, instance=profile)
    assert form.is_valid()
    with pytest.raises(ValueError, match="secret_note"):
        form.save()
    assert not DeferredAction.objects.exists()


def test_a_nested_form_class_is_refused_because_a_worker_could_not_import_it(db):
    class Nested(ProfileEmailForm):
        pass

    form = Nested({"email": "nested@example.org"}, instance=Profile.objects.create(email="n@example.org"))
    assert form.is_valid()
    with pytest.raises(ValueError, match="module-level"):
        form.save()


def test_save_false_positionally_is_refused_like_commit_false(db):
    form = ProfileEmailForm({"email": "pos@example.org"}, instance=Profile.objects.create(email="p@example.org"))
    assert form.is_valid()
    with pytest.raises(ValueError, match="commit=False"):
        form.save(False)
    assert not DeferredAction.objects.exists()


def test_without_recipient_field_a_user_edit_is_confirmed_at_the_stored_address(flow, django_user_model):
    """A user form without recipient_field: the secret goes to the address on file, not to what was typed."""
    from tests.forms.extra_forms import UserEmailNoRecipientForm

    user = django_user_model.objects.create_user("carol", "carol@example.org", "pw")
    form = UserEmailNoRecipientForm({"email": "carol.new@example.org"}, instance=user)
    assert form.is_valid()
    assert form.get_recipient("email") == "carol@example.org"
    action, _token = flow.request(UserEmailNoRecipientForm, {"email": "carol.new@example.org"}, instance=user)
    assert action.deliveries.get().recipient == "carol@example.org"
