"""Send limits per client and per signed-in user, across recipients: SMS pumping and mail bombing.

Threat: per-recipient limits stop texting one number over and over, but an attacker who changes "their" phone
number to a list of premium numbers (or "their" email to a list of victims) makes the site send one secret to
each.  Every secret sent because of one client address or one signed-in user counts against
SEND_LIMIT_PER_CLIENT per SEND_WINDOW_PER_CLIENT, one per recipient, at save() and at resend.  The saves go
through a view like a project's, over the Django test client and the real middleware stack.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections, transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.test import Client, RequestFactory
from django.urls import path, reverse

from deferred_confirmation.django_integration.models import DeferredAction, Delivery, SendRecord
from deferred_confirmation.pipeline import limits
from deferred_confirmation.pipeline.lifecycle import resend
from tests.testapp.forms import ProfileEmailForm
from tests.testapp.models import Profile
from tests.urls import urlpatterns as project_urls

pytestmark = pytest.mark.urls(__name__)

ATTACKER, OTHER, PROXY = "203.0.113.5", "198.51.100.7", "10.0.0.1"
FROM_HERE = "Too many confirmation messages were requested from here"
TO_RECIPIENT = "Too many confirmation messages were sent to this recipient"


def change_email(request: HttpRequest, pk: int) -> HttpResponse:
    """A project's "change your email" page: the form saved with the request."""
    form = ProfileEmailForm(request.POST, instance=get_object_or_404(Profile, pk=pk))
    if form.is_valid():
        try:
            action = form.save(request=request)
        except limits.SendLimitExceeded:
            return HttpResponse(" ".join(form.non_field_errors()), status=429)
        return redirect("confirmation:status", action_id=action.pk)
    return HttpResponse(str(form.errors), status=400)


def change_email_for(request: HttpRequest, pk: int, user_pk: int) -> HttpResponse:
    """A page where anyone may start a change on someone's behalf (an invitation, a support tool): the action
    is that user's, the request is whoever asks."""
    form = ProfileEmailForm(request.POST, instance=get_object_or_404(Profile, pk=pk), request=request)
    if form.is_valid():
        try:
            form.save(user=get_user_model().objects.get(pk=user_pk))
        except limits.SendLimitExceeded:
            return HttpResponse(" ".join(form.non_field_errors()), status=429)
        return HttpResponse(status=202)
    return HttpResponse(str(form.errors), status=429 if form.send_refusal else 400)


urlpatterns = [*project_urls, path("change-email/<int:pk>/", change_email, name="change_email"),
               path("change-email/<int:pk>/for/<int:user_pk>/", change_email_for, name="change_email_for")]


def _conf(settings, **values) -> None:
    settings.DEFERRED_CONFIRMATION = {**settings.DEFERRED_CONFIRMATION, **values}


_profiles = iter(range(1_000_000))


def save_from(client: Client, email: str, **headers: str) -> HttpResponse:
    """One "change your email" request, for a fresh profile, to ``email``."""
    profile = Profile.objects.create(email=f"own{next(_profiles)}@example.org")
    return client.post(reverse("change_email", args=[profile.pk]), {"email": email}, headers=headers)


def sender_records(scope: str) -> int:
    return SendRecord.objects.filter(channel=scope).count()


def test_the_11th_save_from_one_client_to_11_recipients_is_refused_and_another_client_is_not(db):
    attacker = Client(REMOTE_ADDR=ATTACKER)
    statuses = [save_from(attacker, f"victim{n}@example.org").status_code for n in range(10)]
    assert statuses == [302] * 10  # ten different recipients: no recipient's own limit is anywhere near
    refused = save_from(attacker, "victim10@example.org")
    assert refused.status_code == 429 and FROM_HERE in refused.content.decode()
    # Refused before anything was written: no action, no delivery, nothing counted for that recipient.
    assert DeferredAction.objects.count() == 10
    assert not Delivery.objects.filter(recipient="victim10@example.org").exists()
    assert sender_records(limits.CLIENT_SCOPE) == 10
    assert SendRecord.objects.filter(channel="email").count() == 10

    other = Client(REMOTE_ADDR=OTHER)
    assert save_from(other, "victim10@example.org").status_code == 302


def test_behind_a_proxy_the_forwarded_client_is_counted_not_the_proxy(db, settings):
    _conf(settings, TRUSTED_PROXY_COUNT=1)
    attacker, victim = Client(REMOTE_ADDR=PROXY), Client(REMOTE_ADDR=PROXY)
    statuses = [save_from(attacker, f"v{n}@example.org", **{"X-Forwarded-For": f"9.9.9.{n}, {ATTACKER}"}).status_code
                for n in range(11)]
    assert statuses == [302] * 10 + [429]  # a forged first entry makes no new client
    assert save_from(victim, "mine@example.org", **{"X-Forwarded-For": OTHER}).status_code == 302


def test_a_signed_in_user_switching_addresses_is_still_limited_per_user(db):
    user = get_user_model().objects.create_user("pumper")
    statuses = []
    for n in range(11):
        client = Client(REMOTE_ADDR=f"192.0.2.{n + 1}")  # a new address each time (a mobile network, a VPN)
        client.force_login(user)
        statuses.append(save_from(client, f"premium{n}@example.org").status_code)
    assert statuses == [302] * 10 + [429]
    assert sender_records(limits.USER_SCOPE) == 10

    # Another person signed in at one of those addresses is not affected (their address sent one secret).
    someone = Client(REMOTE_ADDR="192.0.2.1")
    someone.force_login(get_user_model().objects.create_user("someone"))
    assert save_from(someone, "someone@example.org").status_code == 302


def test_every_recipient_of_a_save_counts(db, settings):
    """A change confirmed over two channels sends two secrets: it counts two."""
    _conf(settings, CHANNELS={"email": {}, "testcode": {"BACKEND": "tests.web.test_code_view.CodeChannel"}},
          ROUTES={"tests.testapp.forms.ProfileEmailForm": ["email", "testcode"]})
    client = Client(REMOTE_ADDR=ATTACKER)
    assert [save_from(client, f"two{n}@example.org").status_code for n in range(6)] == [302] * 5 + [429]
    assert sender_records(limits.CLIENT_SCOPE) == 10


def test_resends_count_against_the_client_and_the_user(db, no_resend_cooldown):
    user = get_user_model().objects.create_user("resender")
    client = Client(REMOTE_ADDR=ATTACKER)
    client.force_login(user)
    assert [save_from(client, f"r{n}@example.org").status_code for n in range(9)] == [302] * 9
    action = DeferredAction.objects.earliest("created_at")

    assert resend(action, client=ATTACKER, user=user).sent  # the 10th secret: allowed
    refused = resend(action, client=ATTACKER, user=user)  # the 11th: its recipient has had only two
    assert not refused.sent and refused.refusal.scope in (limits.CLIENT_SCOPE, limits.USER_SCOPE)
    assert FROM_HERE in refused.message
    assert Delivery.objects.get(action=action).generation == 1  # the refusal changed nothing
    assert resend(action, client=OTHER, user=user).refusal.scope == limits.USER_SCOPE  # another address: the user
    assert save_from(client, "r9@example.org").status_code == 429  # and the next save from here too

    other = get_user_model().objects.create_user("other")
    assert resend(action, client=OTHER, user=other).sent  # somebody else, from elsewhere


def test_the_resend_page_counts_against_the_client(db, no_resend_cooldown):
    owner = get_user_model().objects.create_user("owner")
    client = Client(REMOTE_ADDR=ATTACKER)
    client.force_login(owner)
    assert [save_from(client, f"page{n}@example.org").status_code for n in range(9)] == [302] * 9
    action = DeferredAction.objects.earliest("created_at")
    url = reverse("confirmation:resend", args=[action.pk])
    assert client.post(url).status_code == 200  # the 10th secret
    refused = client.post(url)
    assert refused.status_code == 429 and FROM_HERE in refused.content.decode() and int(refused["Retry-After"]) > 0
    assert Delivery.objects.get(action=action).generation == 1


def test_the_allowance_comes_back_after_the_window(db, settings):
    _conf(settings, SEND_LIMIT_PER_CLIENT=2, SEND_WINDOW_PER_CLIENT=timedelta(minutes=30))
    client = Client(REMOTE_ADDR=ATTACKER)
    assert [save_from(client, f"w{n}@example.org").status_code for n in range(3)] == [302, 302, 429]
    refused = save_from(client, "w3@example.org")
    assert "Try again in 30 minutes" in refused.content.decode()
    SendRecord.objects.update(created_at=SendRecord.objects.earliest("created_at").created_at - timedelta(minutes=31))
    assert save_from(client, "w3@example.org").status_code == 302


# --- a recipient's allowance belongs to whoever asks ------------------------------------------------------
def test_a_stranger_cannot_use_up_the_owners_allowance_of_their_own_address(db, settings):
    """Someone keeps entering a victim's address (sign-ups, "change my email"): they use up their own
    allowance of that recipient; the victim, asking from elsewhere, still gets their mail."""
    _conf(settings, SEND_LIMIT_PER_CLIENT=None, CHANNELS={"email": {"SEND_LIMIT": 3}})
    stranger = Client(REMOTE_ADDR=ATTACKER)
    assert [save_from(stranger, "owner@example.org").status_code for _ in range(4)] == [302, 302, 302, 429]

    owner = Client(REMOTE_ADDR=OTHER)
    owner.force_login(get_user_model().objects.create_user("owner-of-the-address"))
    assert save_from(owner, "owner@example.org").status_code == 302


def test_all_requesters_together_still_cannot_bomb_one_recipient(db, settings):
    _conf(settings, SEND_LIMIT_PER_CLIENT=None, CHANNELS={"email": {"SEND_LIMIT": 2}})
    total = 2 * limits.ALL_REQUESTERS_FACTOR
    clients = [Client(REMOTE_ADDR=f"192.0.2.{n + 1}") for n in range(limits.ALL_REQUESTERS_FACTOR + 1)]
    responses = [save_from(client, "bombed@example.org") for client in clients for _ in range(2)]
    assert [r.status_code for r in responses[:total]] == [302] * total
    assert all(r.status_code in (400, 429) and TO_RECIPIENT in r.content.decode() for r in responses[total:])
    assert SendRecord.objects.filter(channel="email").count() == total
    # A user signed in at one of those clients has an allowance of their own, but the recipient has had enough.
    late = Client(REMOTE_ADDR="192.0.2.1")
    late.force_login(get_user_model().objects.create_user("late"))
    assert TO_RECIPIENT in save_from(late, "bombed@example.org").content.decode()


def test_more_accounts_from_one_address_add_no_allowance(db, settings):
    """One person at one address, signed out and then signed in with throwaway accounts, is one requester."""
    _conf(settings, SEND_LIMIT_PER_CLIENT=None, CHANNELS={"email": {"SEND_LIMIT": 2}})
    statuses = [save_from(Client(REMOTE_ADDR=ATTACKER), "target@example.org").status_code for _ in range(2)]
    for name in ("sock1", "sock2"):
        sock = Client(REMOTE_ADDR=ATTACKER)
        sock.force_login(get_user_model().objects.create_user(name))
        statuses += [save_from(sock, "target@example.org").status_code for _ in range(2)]
    assert statuses[:2] == [302, 302] and 302 not in statuses[2:]
    assert SendRecord.objects.filter(channel="email").count() == 2

    owner = Client(REMOTE_ADDR=OTHER)
    owner.force_login(get_user_model().objects.create_user("target-owner"))
    assert save_from(owner, "target@example.org").status_code == 302


def test_the_limits_counted_are_the_askers_not_those_of_the_user_saved_for(db, settings):
    _conf(settings, SEND_LIMIT_PER_CLIENT=2)
    owner = get_user_model().objects.create_user("saved-for")
    for n in range(3):  # three strangers, three addresses, each starting a change on the owner's behalf
        profile = Profile.objects.create(email=f"for{n}@example.org")
        stranger = Client(REMOTE_ADDR=f"192.0.2.{n + 1}")
        assert stranger.post(reverse("change_email_for", args=[profile.pk, owner.pk]),
                             {"email": f"for-new{n}@example.org"}).status_code == 202
    client = Client(REMOTE_ADDR=OTHER)
    client.force_login(owner)
    assert save_from(client, "mine-for@example.org").status_code == 302  # the owner's own allowance is untouched


def test_resend_cooldown_is_the_requesters_own(db, settings):
    """A stranger's send to an address does not make its owner wait for a resend of their own change."""
    _conf(settings, SEND_LIMIT_PER_CLIENT=None, CHANNELS={"email": {"RESEND_COOLDOWN": timedelta(minutes=5)}})
    owner = get_user_model().objects.create_user("cooldown-owner")
    client = Client(REMOTE_ADDR=OTHER)
    client.force_login(owner)
    assert save_from(client, "cool@example.org").status_code == 302
    action = DeferredAction.objects.get()
    assert not resend(action, client=OTHER, user=owner).sent  # their own cooldown
    SendRecord.objects.update(created_at=SendRecord.objects.filter(channel="email").get().created_at
                              - timedelta(minutes=6))
    assert save_from(Client(REMOTE_ADDR=ATTACKER), "cool@example.org").status_code == 302  # a stranger, just now
    assert resend(action, client=OTHER, user=owner).sent


def test_no_limit_per_client_when_set_to_none(db, settings):
    _conf(settings, SEND_LIMIT_PER_CLIENT=None)
    client = Client(REMOTE_ADDR=ATTACKER)
    assert {save_from(client, f"n{n}@example.org").status_code for n in range(12)} == {302}


def test_a_refusal_leaves_the_callers_transaction_usable(db):
    """A view under ATOMIC_REQUESTS goes on after the form error (render the page, log something)."""
    request = RequestFactory().post("/", REMOTE_ADDR=ATTACKER)

    def valid_form(n: int) -> ProfileEmailForm:
        form = ProfileEmailForm({"email": f"t{n}@example.org"}, instance=Profile.objects.create(email=f"o{n}@x.org"))
        assert form.is_valid()
        return form

    with transaction.atomic():
        for n in range(10):
            valid_form(n).save(request=request)
        form = valid_form(10)
        with pytest.raises(limits.SendLimitExceeded):
            form.save(request=request)
        assert FROM_HERE in form.non_field_errors()[0]
        assert Profile.objects.filter(email="o10@x.org").exists()  # the transaction still answers
    assert DeferredAction.objects.count() == 10


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="parallel writers: PostgreSQL")
def test_parallel_saves_from_one_client_never_exceed_the_limit(settings):
    _conf(settings, SEND_LIMIT_PER_CLIENT=5)
    profiles = [Profile.objects.create(email=f"par{n}@example.org") for n in range(16)]
    barrier = threading.Barrier(len(profiles), timeout=30)
    statuses: list[int] = []

    def save(n: int) -> None:
        try:
            client = Client(REMOTE_ADDR=ATTACKER)
            url = reverse("change_email", args=[profiles[n].pk])
            barrier.wait()
            statuses.append(client.post(url, {"email": f"parallel{n}@example.org"}).status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=save, args=(n,)) for n in range(len(profiles))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(statuses) == [302] * 5 + [429] * 11, statuses
    assert DeferredAction.objects.count() == 5 and sender_records(limits.CLIENT_SCOPE) == 5
