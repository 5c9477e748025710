"""The link view: GET shows a Confirm button and changes nothing; POST confirms; refusals are honest."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import quote

import pytest
from django.urls import reverse
from django.utils import timezone

from deferred_confirmation import pipeline
from deferred_confirmation.django_integration.models import DeferredAction, Delivery

NOT_VALID = "This confirmation link is not valid"
EXPIRED = "This confirmation has expired"
USED = "already been confirmed"
WITHDRAWN = "withdrawn or could not be made"
SUCCESS_WORDS = ("Done: the change has been made", "Confirm your change")


def link_url(token: str) -> str:
    return reverse("confirmation:link", args=[token])


def snapshot(staged):
    """Everything a GET could change: the action, its deliveries, the target row."""
    action = DeferredAction.objects.values().get(pk=staged.action.pk)
    deliveries = list(Delivery.objects.filter(action_id=staged.action.pk).order_by("pk").values())
    return action, deliveries, staged.profile.__class__.objects.values().get(pk=staged.profile.pk)


def assert_refused(response, status: int, text: str) -> None:
    assert response.status_code == status, response.content[:500]
    body = response.content.decode()
    assert text in body
    for word in SUCCESS_WORDS:
        assert word not in body
    assert "<form" not in body  # no Confirm button on a refusal


# --- GET never confirms --------------------------------------------------------------------------

def test_get_shows_confirm_page_and_changes_nothing(stage, client, run_on_commit):
    staged = stage(description="Change your email address")
    before = snapshot(staged)
    with run_on_commit():
        for _ in range(3):
            response = client.get(link_url(staged.token))
            assert response.status_code == 200
            body = response.content.decode()
            assert '<form method="post">' in body
            assert "csrfmiddlewaretoken" in body
            assert ">Confirm</button>" in body
            assert "Change your email address" in body
        head = client.head(link_url(staged.token))
        assert head.status_code == 200
        assert head.content == b""
    assert snapshot(staged) == before
    staged.refresh()
    assert staged.action.state == "notified"
    assert staged.action.confirmed_at is None
    assert staged.profile.email == staged.old_email


def test_post_confirms_and_redirects_to_status(stage, client, run_on_commit):
    staged = stage()
    client.get(link_url(staged.token))
    with run_on_commit():
        response = client.post(link_url(staged.token))
    status_url = reverse("confirmation:status", kwargs={"action_id": staged.action.pk})
    assert response.status_code in (302, 303)
    assert response["Location"] == status_url
    staged.refresh()
    assert staged.action.state == "applied"
    assert staged.action.confirmed_at is not None
    assert staged.profile.email == staged.new_email
    page = client.get(status_url)
    assert page.status_code == 200
    assert 'data-state="applied"' in page.content.decode()
    assert "Done: the change has been made" in page.content.decode()


@pytest.mark.django_db(transaction=True)
def test_post_confirms_without_a_prior_get(stage, client):
    """Real commits: with eager Celery the change is applied before the redirect is followed."""
    staged = stage()
    response = client.post(link_url(staged.token), follow=True)
    assert response.redirect_chain and response.redirect_chain[-1][1] in (302, 303)
    assert response.status_code == 200
    assert 'data-state="applied"' in response.content.decode()


# --- honest refusals -----------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["get", "post"])
def test_unknown_well_formed_token_is_404(db, client, method):
    response = getattr(client, method)(link_url("A" * 43))
    assert_refused(response, 404, NOT_VALID)


@pytest.mark.parametrize("method", ["get", "post"])
def test_expired_link_is_410_and_not_applied(stage, client, run_on_commit, method):
    staged = stage()
    DeferredAction.objects.filter(pk=staged.action.pk).update(valid_until=timezone.now() - timedelta(seconds=1))
    with run_on_commit():
        response = getattr(client, method)(link_url(staged.token))
        again = getattr(client, method)(link_url(staged.token))
    assert_refused(response, 410, EXPIRED)
    assert_refused(again, 410, EXPIRED)
    staged.refresh()
    assert staged.action.state == ("expired" if method == "post" else "notified")
    assert staged.action.confirmed_at is None
    assert staged.profile.email == staged.old_email


def test_reused_link_is_409(stage, client, run_on_commit):
    staged = stage()
    with run_on_commit():
        first = client.post(link_url(staged.token))
        second = client.post(link_url(staged.token))
        third = client.get(link_url(staged.token))
    assert first.status_code in (302, 303)
    assert_refused(second, 409, USED)
    assert_refused(third, 409, USED)
    staged.refresh()
    assert staged.action.state == "applied"


@pytest.mark.parametrize("method", ["get", "post"])
def test_cancelled_link_is_410(stage, client, run_on_commit, method):
    staged = stage()
    assert pipeline.cancel(staged.action) is True
    with run_on_commit():
        response = getattr(client, method)(link_url(staged.token))
    assert_refused(response, 410, WITHDRAWN)
    staged.refresh()
    assert staged.action.state == "cancelled"
    assert staged.profile.email == staged.old_email


def test_resent_link_kills_the_old_token(stage, client, run_on_commit, no_resend_cooldown):
    from django.core import mail

    from tests.conftest import link_token

    staged = stage()
    with run_on_commit():
        assert pipeline.resend(staged.action).sent is True
    fresh = link_token(mail.outbox[-1])
    assert fresh != staged.token
    assert_refused(client.post(link_url(staged.token)), 404, NOT_VALID)
    with run_on_commit():
        assert client.post(link_url(fresh)).status_code in (302, 303)
    assert staged.refresh().profile.email == staged.new_email


# Raw path segments (already URL-encoded where needed) that can never be a token.
MALFORMED = {
    "one-char": "A",
    "42-chars": "A" * 42,
    "44-chars": "A" * 44,
    "10kB": "A" * 10_000,
    "10kB-junk": quote("x\u00e9<>\"'" * 1500, safe=""),
    "accented-43": quote("\u00e9" * 43, safe=""),
    "emoji": quote("\U0001f600" * 43, safe=""),
    "rtl": quote("\u202e\u05d0\u0627" * 15, safe=""),
    "fullwidth-digits": quote("\uff11" * 43, safe=""),
    "encoded-junk": "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    "percent-percent": "%25%25%25",
    "null-byte": "%00",
    "null-in-token": "A" * 21 + "%00" + "A" * 21,
    "trailing-newline": "A" * 43 + "%0A",
    "trailing-space": "A" * 43 + "%20",
    "padding": "A" * 42 + "%3D",
    "dots": "..",
    "invalid-utf8": "%FF%FE" * 20,
    "lone-surrogate-ish": "%ED%A0%80" * 15,
    "sql": quote("' OR 1=1 --", safe=""),
}


@pytest.mark.parametrize("method", ["get", "post", "head"])
@pytest.mark.parametrize("segment", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_tokens_are_404_with_a_clear_page(stage, client, method, segment):
    staged = stage()
    before = snapshot(staged)
    response = getattr(client, method)(f"/confirm/{segment}/")
    assert response.status_code == 404, (segment[:80], response.status_code)
    if method != "head":
        body = response.content.decode()
        # Our page for anything reaching the view; Django's own page for paths no route matches.
        assert NOT_VALID in body or "The requested resource was not found" in body
        assert "Done" not in body and "<form" not in body
    assert snapshot(staged) == before


def test_malformed_tokens_reach_the_view_and_get_our_page(db, client):
    """The long, unicode and null-byte inputs are handled by the view itself, not only by the router."""
    for key in ("10kB", "accented-43", "emoji", "rtl", "null-in-token", "invalid-utf8"):
        response = client.get(f"/confirm/{MALFORMED[key]}/")
        assert response.status_code == 404, key
        assert NOT_VALID in response.content.decode(), key


def test_post_of_a_token_with_a_slash_is_404(db, client):
    response = client.post("/confirm/" + "A" * 20 + "%2F" + "A" * 22 + "/")
    assert response.status_code == 404


# --- CSRF --------------------------------------------------------------------------------------

def test_post_without_csrf_token_is_refused(stage, csrf_client, run_on_commit):
    staged = stage()
    before = snapshot(staged)
    with run_on_commit():
        response = csrf_client.post(link_url(staged.token))
    assert response.status_code == 403
    assert snapshot(staged) == before


def test_post_with_the_csrf_token_of_the_page_confirms(stage, csrf_client, run_on_commit):
    staged = stage()
    page = csrf_client.get(link_url(staged.token))
    assert page.status_code == 200
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())
    assert found
    with run_on_commit():
        forged = csrf_client.post(link_url(staged.token), {"csrfmiddlewaretoken": "x" * 64})
    assert forged.status_code == 403
    assert staged.refresh().action.state == "notified"
    with run_on_commit():
        response = csrf_client.post(link_url(staged.token), {"csrfmiddlewaretoken": found.group(1)})
    assert response.status_code in (302, 303)
    assert staged.refresh().action.state == "applied"
    assert staged.profile.email == staged.new_email


# --- headers -----------------------------------------------------------------------------------

def assert_private(response) -> None:
    cache_control = response["Cache-Control"]
    for word in ("no-cache", "no-store", "must-revalidate", "private"):
        assert word in cache_control, cache_control
    assert response["Referrer-Policy"] == "same-origin"


def test_link_pages_are_private(stage, client, run_on_commit):
    staged = stage()
    assert_private(client.get(link_url(staged.token)))
    assert_private(client.head(link_url(staged.token)))
    assert_private(client.get(link_url("A" * 43)))
    assert_private(client.post(link_url("A")))
    with run_on_commit():
        redirect = client.post(link_url(staged.token))
    assert_private(redirect)
    assert_private(client.post(link_url(staged.token)))  # 409


def test_other_methods_are_refused(stage, client):
    staged = stage()
    before = snapshot(staged)
    for method in ("put", "delete", "patch", "options"):
        assert getattr(client, method)(link_url(staged.token)).status_code == 405
    assert snapshot(staged) == before
