"""The global throttle of failed attempts, routing policies (any/all, ROUTES forms) and the resend page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse

from deferred_confirmation import pipeline
from deferred_confirmation.django_integration.models import Delivery
from tests.conftest import link_token, own
from tests.testapp.forms import ProfileEmailForm
from tests.testapp.models import Profile
from tests.web.test_code_view import SENT, code_channel, code_url, wrong_code  # noqa: F401 (autouse fixture)

BOGUS = "A" * 43  # well formed, unknown


def _two_channel_settings(settings, policy: str | None = None, **extra):
    route = {"channels": ["email", "testcode"], **({"policy": policy} if policy else {})}
    settings.DEFERRED_CONFIRMATION = {**settings.DEFERRED_CONFIRMATION,
                                      "ROUTES": {"tests.testapp.forms.ProfileEmailForm": route}, **extra}


# --- global throttle -----------------------------------------------------------------------------------
def test_failures_across_many_actions_from_one_client_end_in_429(stage, client, settings):
    settings.DEFERRED_CONFIRMATION = {**settings.DEFERRED_CONFIRMATION, "FAILED_ATTEMPTS_LIMIT": 5}
    staged = [stage(channels=["testcode"]) for _ in range(3)]
    for each in staged:
        own(client, each.action)
    codes = [code for _recipient, code in SENT]
    statuses = []
    for i in range(6):  # spread over three actions: no action reaches its own limit of 3
        target = staged[i % 3]
        statuses.append(client.post(code_url(target.action.pk), {"code": wrong_code(codes[i % 3])}).status_code)
    assert statuses == [400] * 5 + [429]
    # the throttle holds for the right code too, and for links, and tells nothing about the secret
    blocked = client.post(code_url(staged[0].action.pk), {"code": codes[0]})
    assert blocked.status_code == 429 and blocked["Retry-After"]
    assert client.post(reverse("confirmation:link", args=[BOGUS])).status_code == 429
    assert staged[0].refresh().action.state == "notified"
    # another client is not affected
    other = type(client)(REMOTE_ADDR="10.9.8.7")
    own(other, staged[0].action)
    assert other.post(code_url(staged[0].action.pk), {"code": codes[0]}).status_code == 302


def test_unknown_links_posted_count_as_failures_but_opening_them_never_does(client, settings, db):
    settings.DEFERRED_CONFIRMATION = {**settings.DEFERRED_CONFIRMATION, "FAILED_ATTEMPTS_LIMIT": 3}
    url = reverse("confirmation:link", args=[BOGUS])
    # A GET confirms nothing (mail scanners open links), so it cannot be a guess: never counted.
    assert {client.get(url).status_code for _ in range(10)} == {404}
    assert [client.post(url).status_code for _ in range(4)] == [404, 404, 404, 429]
    assert client.get(url).status_code == 404  # opening a link is never refused


# --- routing policies ----------------------------------------------------------------------------------
def test_policy_any_one_channel_confirms_and_the_other_secret_dies(stage, settings, run_on_commit):
    _two_channel_settings(settings)
    staged = stage()
    assert {d.channel for d in staged.action.deliveries.all()} == {"email", "testcode"}
    with run_on_commit():
        assert pipeline.confirm(staged.token).status == "confirmed"
    staged.refresh()
    assert staged.action.state == "applied"
    code = SENT[-1][1]
    assert pipeline.confirm(code, action=staged.action.pk).status == "already_used"


def test_policy_all_needs_every_channel(stage, settings, run_on_commit):
    _two_channel_settings(settings, policy="all")
    staged = stage()
    assert staged.action.channel_policy == "all"
    with run_on_commit():
        assert pipeline.confirm(staged.token).status == "confirmed"
    assert staged.refresh().action.state == "notified"  # the email alone is not enough
    assert Profile.objects.get(pk=staged.profile.pk).email != staged.new_email
    with run_on_commit():
        assert pipeline.confirm(SENT[-1][1], action=staged.action.pk).status == "confirmed"
    assert staged.refresh().action.state == "applied"


def test_a_model_label_route_applies_when_no_form_route_exists(db, settings):
    settings.DEFERRED_CONFIRMATION = {**settings.DEFERRED_CONFIRMATION,
                                      "ROUTES": {"testapp.profile": ["testcode"]}}
    form = ProfileEmailForm({"email": "ml@example.org"}, instance=Profile.objects.create(email="m@example.org"))
    assert form.is_valid()
    action = form.save()
    assert list(action.deliveries.values_list("channel", flat=True)) == ["testcode"]


def test_an_unknown_policy_is_refused_at_save(db, settings):
    class_path = "tests.testapp.forms.ProfileEmailForm"
    settings.DEFERRED_CONFIRMATION = {**settings.DEFERRED_CONFIRMATION,
                                      "ROUTES": {class_path: {"channels": ["email"], "policy": "most"}}}
    form = ProfileEmailForm({"email": "p@example.org"}, instance=Profile.objects.create(email="q@example.org"))
    assert form.is_valid()
    with pytest.raises(ValueError, match="policy"):
        form.save()


# --- resend page ---------------------------------------------------------------------------------------
def _resend(client, action):
    return client.post(reverse("confirmation:resend", args=[action.pk]))


def test_resend_page_sends_a_new_link_once_the_cooldown_allows(stage, client, settings, run_on_commit):
    staged = stage()
    own(client, staged.action)
    refused = _resend(client, staged.action)
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert "seconds" in refused.content.decode()
    assert Delivery.objects.get(action=staged.action).generation == 0  # the refusal changed nothing
    conf = {**settings.DEFERRED_CONFIRMATION, "CHANNELS": {"email": {"RESEND_COOLDOWN": None}}}
    settings.DEFERRED_CONFIRMATION = conf
    with run_on_commit():
        sent = _resend(client, staged.action)
    assert sent.status_code == 200
    assert pipeline.confirm(staged.token).status == "invalid"  # the old link died
    assert pipeline.confirm(link_token(mail.outbox[-1])).status == "confirmed"
    assert _resend(client, staged.action).status_code == 410  # nothing left to resend


def test_resend_obeys_the_send_limit(stage, client, settings, run_on_commit):
    settings.DEFERRED_CONFIRMATION = {**settings.DEFERRED_CONFIRMATION, "CHANNELS": {
        "email": {"RESEND_COOLDOWN": None, "SEND_LIMIT": 2, "SEND_WINDOW": timedelta(hours=1)}}}
    staged = stage()
    own(client, staged.action)
    with run_on_commit():
        assert _resend(client, staged.action).status_code == 200
    refused = _resend(client, staged.action)
    assert refused.status_code == 429 and "Too many" in refused.content.decode()
    assert Delivery.objects.get(action=staged.action).generation == 1


def test_resend_of_an_unknown_action_is_404_and_needs_post(client, db):
    import uuid

    url = reverse("confirmation:resend", args=[uuid.uuid4()])
    assert client.post(url).status_code == 404
    assert client.get(url).status_code == 405
