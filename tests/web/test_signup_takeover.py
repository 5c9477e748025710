"""Sign-up takeover: someone signs up with a victim's address and a password they know; the victim, puzzled
by the mail, confirms it.  The account must not end up with a password the victim never chose: confirmed
from another browser session than the one that signed up, it gets no usable password, and the status page
sends the person to set one.  Whoever confirms their own sign-up keeps the password they chose.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core import mail
from django.test import Client
from django.urls import reverse

from deferred_confirmation.django_integration.models import DeferredAction
from tests.conftest import link_token

ATTACKER_PASSWORD = "the attacker's own passphrase"
VICTIM = {"username": "victim", "email": "victim@example.org"}
SET_PASSWORD = "Set a password to sign in."

pytestmark = [pytest.mark.urls("tests.web.signup")]


@pytest.fixture
def sign_up(db, eager, run_on_commit):
    """``client`` submits the sign-up form with ``password``; returns the action and the mailed link token."""
    def _sign_up(client: Client, password: str) -> tuple[DeferredAction, str]:
        with run_on_commit():
            response = client.post("/signup/", {**VICTIM, "password": password})
        assert response.status_code == 302, response.content[:500]
        action = DeferredAction.objects.get()
        assert not get_user_model().objects.filter(username="victim").exists()
        assert mail.outbox[-1].to == [VICTIM["email"]]
        return action, link_token(mail.outbox[-1])
    return _sign_up


def confirm_link(client: Client, token: str, run_on_commit) -> str:
    """POST the link (the Confirm button); the apply task runs; returns the status page's URL."""
    with run_on_commit():
        response = client.post(reverse("confirmation:link", args=[token]))
    assert response.status_code == 302
    return response["Location"]


def test_a_sign_up_confirmed_from_another_browser_keeps_no_password_of_the_sign_up(sign_up, run_on_commit):
    attacker, victim = Client(), Client()
    action, token = sign_up(attacker, ATTACKER_PASSWORD)
    status_url = confirm_link(victim, token, run_on_commit)
    action.refresh_from_db()
    assert action.confirmed_elsewhere is True
    assert action.state == "applied", action.failure_reason
    account = get_user_model().objects.get(username="victim")
    assert account.email == VICTIM["email"]
    assert not account.has_usable_password()
    assert authenticate(username="victim", password=ATTACKER_PASSWORD) is None
    assert not attacker.login(username="victim", password=ATTACKER_PASSWORD)
    # The victim is told why and sent to set a password.
    page = victim.get(status_url).content.decode()
    assert SET_PASSWORD in page
    assert f'href="{reverse("password_reset")}"' in page


def test_without_a_password_reset_page_the_status_page_still_says_to_set_one(sign_up, run_on_commit, settings):
    _action, token = sign_up(Client(), ATTACKER_PASSWORD)
    victim = Client()
    status_url = confirm_link(victim, token, run_on_commit)
    settings.ROOT_URLCONF = "tests.urls"  # a site without django.contrib.auth's password_reset
    page = victim.get(status_url)
    assert page.status_code == 200
    assert SET_PASSWORD in page.content.decode()
    assert "password-reset" not in page.content.decode()


def test_whoever_confirms_their_own_sign_up_keeps_their_password(sign_up, run_on_commit):
    newcomer = Client()
    password = "my very own passphrase"
    action, token = sign_up(newcomer, password)
    status_url = confirm_link(newcomer, token, run_on_commit)
    action.refresh_from_db()
    assert action.confirmed_elsewhere is False
    assert action.state == "applied", action.failure_reason
    assert authenticate(username="victim", password=password) is not None
    page = newcomer.get(status_url).content.decode()
    assert "Done: the change has been made." in page
    assert SET_PASSWORD not in page
