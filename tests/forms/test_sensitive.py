"""Sensitive values are sealed at rest yet applied; key rotation; tampered stored data fails cleanly."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.db.models import TextField
from django.db.models.functions import Cast

from deferred_confirmation.django_integration.models import DeferredAction
from deferred_confirmation.pipeline import crypto, formdata, lifecycle
from tests.testapp.forms import ProfileForm, ProfileWithSecretForm
from tests.testapp.models import Category, Profile, Tag

PIN = "739184"
NICKNAME = "zebrafish-quokka"


def stored_json_text(action: DeferredAction) -> str:
    return DeferredAction.objects.filter(pk=action.pk).annotate(
        raw=Cast("form_data", TextField())).values_list("raw", flat=True).get()


def test_password_input_and_sensitive_fields_are_sealed_but_applied(flow):
    profile = Profile.objects.create(email="secret@example.org", nickname="before")
    action, token = flow.request(ProfileWithSecretForm,
                                 {"email": "secret@example.org", "nickname": NICKNAME, "pin": PIN},
                                 instance=profile)

    raw = stored_json_text(action)
    assert PIN not in raw and NICKNAME not in raw
    assert "secret@example.org" in raw  # a field that is not sensitive is kept as typed
    stored = json.loads(raw)
    for key in ("pin", "nickname"):
        assert len(stored[key]) == 1 and set(stored[key][0]) == {formdata.SEALED}
    # Nor is it in the message the user gets, or on the delivery row.
    delivery = action.deliveries.get()
    assert PIN not in delivery.recipient + delivery.status_detail + delivery.secret_digest

    assert flow.confirm(token).status == "confirmed"

    profile.refresh_from_db()
    assert profile.nickname == f"{NICKNAME}:{PIN}"  # save_confirmed saw both plain values
    action.refresh_from_db()
    assert action.state == "applied"


@pytest.mark.django_db
def test_each_sealing_is_different_so_equal_values_cannot_be_matched():
    first = ProfileWithSecretForm({"email": "a@example.org", "nickname": "x", "pin": PIN})
    second = ProfileWithSecretForm({"email": "b@example.org", "nickname": "x", "pin": PIN})
    assert first.is_valid() and second.is_valid()
    assert formdata.dump(first)["pin"] != formdata.dump(second)["pin"]


@pytest.mark.parametrize("edit", [False, True], ids=["create", "edit"])
def test_secret_key_rotation_still_opens_sealed_values_and_tokens(flow, settings, edit):
    old_key = settings.SECRET_KEY
    profile = Profile.objects.create(email="rot@example.org", nickname="before") if edit else None
    action, token = flow.request(ProfileWithSecretForm, {"email": "rot@example.org", "nickname": NICKNAME,
                                                         "pin": PIN}, instance=profile)

    settings.SECRET_KEY = "rotated-secret-key-9876543210-abcdefghijklmnopqrstuvwxyz"
    settings.SECRET_KEY_FALLBACKS = [old_key]

    assert flow.confirm(token).status == "confirmed"
    action.refresh_from_db()
    assert action.state == "applied", action.failure_reason
    assert Profile.objects.get().nickname == f"{NICKNAME}:{PIN}"


def test_without_the_old_key_sealed_values_fail_with_a_reason(flow, settings):
    action, token = flow.request(ProfileWithSecretForm, {"email": "gone@example.org", "nickname": NICKNAME,
                                                         "pin": PIN})
    assert flow.confirm(token, apply=False).status == "confirmed"
    settings.SECRET_KEY = "an-entirely-different-key-0000000000-abcdefghijklmnop"
    settings.SECRET_KEY_FALLBACKS = []

    assert lifecycle.apply(action.pk) is False

    action.refresh_from_db()
    assert action.state == "failed"
    assert "cannot be opened" in action.failure_reason
    assert not Profile.objects.exists()


def _sealed(text: str) -> dict:
    return {formdata.SEALED: crypto.seal("form_data", text)}


TAMPERED = {
    "not an object": ("a string", "unreadable"),
    "a list": ([["email", "x@example.org"]], "unreadable"),
    "value not a list": ({"email": "x@example.org"}, "unreadable"),
    "sealed garbage": ({"email": ["x@example.org"], "nickname": [{formdata.SEALED: "gAAAAA-garbage"}]},
                       "cannot be opened"),
    "sealed non-json": ({"email": ["x@example.org"], "nickname": [_sealed("{not json")]}, "cannot be opened"),
    "number for email": ({"email": [12345]}, "email"),
    "list for email": ({"email": [["x@example.org"]]}, "email"),
    "object for email": ({"email": [{"x": "x@example.org"}]}, "email"),
    "null email": ({"email": [None]}, "email"),
    "no email": ({"email": []}, "email"),
    "object for category": ({"email": ["x@example.org"], "category": [{"pk": 1}]}, "category"),
    "huge category pk": ({"email": ["x@example.org"], "category": ["9" * 30]}, "category"),
    "list for a tag": ({"email": ["x@example.org"], "tags": [[1, 2]]}, "tags"),
    "text for a tag": ({"email": ["x@example.org"], "tags": ["red"]}, "tags"),
    # SQLite cannot even bind this number: the save is refused, not validated.
    "huge tag pk": ({"email": ["x@example.org"], "tags": [10**40]}, ("tags", "could not be saved")),
    "too long": ({"email": ["x@example.org"], "nickname": ["n" * 500]}, "nickname"),
    "nul byte": ({"email": ["x@example.org"], "nickname": ["a\x00b"]}, "nickname"),
}


@pytest.mark.parametrize("stored, reason", TAMPERED.values(), ids=TAMPERED.keys())
def test_tampered_stored_data_fails_the_action_with_a_reason(flow, stored, reason):
    if connection.vendor == "postgresql" and "\\u0000" in json.dumps(stored):
        pytest.skip("PostgreSQL's jsonb cannot hold a NUL character at all")
    Category.objects.create(name="c")
    Tag.objects.create(name="t")
    action, token = flow.request(ProfileForm, {"email": "x@example.org", "nickname": "ok"})
    assert flow.confirm(token, apply=False).status == "confirmed"
    DeferredAction.objects.filter(pk=action.pk).update(form_data=stored)

    assert lifecycle.apply(action.pk) is False  # never an exception

    action.refresh_from_db()
    assert action.state == "failed"
    assert any(text in action.failure_reason.lower() for text in ([reason] if isinstance(reason, str) else reason))
    assert not Profile.objects.exists()
    assert lifecycle.apply(action.pk) is False  # and it stays failed
    action.refresh_from_db()
    assert action.state == "failed"
