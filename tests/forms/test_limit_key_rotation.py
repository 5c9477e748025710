"""Send limits survive a SECRET_KEY rotation.

Threat: recipients, clients and users are stored in SendRecord only as keyed hashes.  If only the current
SECRET_KEY made those hashes, rotating it (Django's way: the new key in SECRET_KEY, the old one in
SECRET_KEY_FALLBACKS) would silently reset every send limit at once: a window for SMS pumping and mail
bombing that an attacker can wait for.  Sends recorded under a fallback key keep counting; new ones are
recorded under the current key.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from deferred_confirmation.django_integration.models import SendRecord
from deferred_confirmation.pipeline import limits
from deferred_confirmation.pipeline.lifecycle import stage
from tests.testapp.forms import ProfileEmailForm
from tests.testapp.models import Profile

OLD_KEY = "the-old-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
NEW_KEY = "the-new-secret-key-9876543210-zyxwvutsrqponmlkjihgfedcba"
_numbers = iter(range(1_000_000))


@pytest.fixture
def old_key(settings):
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = OLD_KEY, []


def rotate(settings, keep_old: bool = True) -> None:
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, [OLD_KEY] if keep_old else []


def _form(email: str) -> ProfileEmailForm:
    return ProfileEmailForm({"email": email}, instance=Profile.objects.create(email=f"p{next(_numbers)}@example.org"))


def save(email: str, **kwargs) -> None:
    form = _form(email)
    assert form.is_valid(), form.errors
    form.save(**kwargs)


def test_sends_to_a_recipient_before_the_rotation_still_count(db, settings, old_key):
    settings.DEFERRED_CONFIRMATION = {**settings.DEFERRED_CONFIRMATION, "CHANNELS": {"email": {"SEND_LIMIT": 3}}}
    save("victim@example.org")
    save("victim@example.org")
    rotate(settings)
    save("victim@example.org")  # the third: allowed, and recorded under the new key
    form = _form("victim@example.org")
    assert not form.is_valid()  # the form's own check counts the old sends
    assert "Too many" in form.non_field_errors()[0]
    refused = limits.reserve_sends([("email", "victim@example.org")])  # and so does save()'s
    assert refused is not None and refused[1].reason == "limit"
    records = list(SendRecord.objects.filter(channel="email").order_by("id").values_list("recipient_key", flat=True))
    current, fallback = limits.recipient_keys("email", "victim@example.org")
    assert records == [fallback, fallback, current]

    # Once the old key leaves SECRET_KEY_FALLBACKS, what it recorded no longer counts: keep it there for at
    # least the longest SEND_WINDOW.
    rotate(settings, keep_old=False)
    assert limits.check_send("email", "victim@example.org") is None


@pytest.mark.parametrize("who", ["client", "user"])
def test_sends_asked_for_by_a_client_or_user_before_the_rotation_still_count(db, settings, old_key, who):
    user = get_user_model().objects.create_user("pumper")
    asking = {"client": "203.0.113.5"} if who == "client" else {"user": user}
    for n in range(9):
        _stage(f"v{n}@example.org", **asking)
    rotate(settings)
    _stage("v9@example.org", **asking)  # the 10th: allowed
    with pytest.raises(limits.SendLimitExceeded) as refused:
        _stage("v10@example.org", **asking)
    assert refused.value.refusal.scope == (limits.CLIENT_SCOPE if who == "client" else limits.USER_SCOPE)

    rotate(settings, keep_old=False)  # only the one send recorded under the new key counts now
    _stage("v10@example.org", **asking)


def _stage(email: str, client: str | None = None, user=None) -> None:
    form = _form(email)
    assert form.is_valid(), form.errors
    stage(form, client=client, user=user)
