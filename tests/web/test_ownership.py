"""Action pages belong to their action: the action's id alone grants nothing.

The id travels in SMS texts, letters and an ``X-Deferred-Action`` mail header.  Whoever holds it but is not
the action's signed-in user, nor the browser session that saved it or confirmed it, gets on every page
(code and deposits, GET and POST; status, HTML and JSON; resend) the very answer an unknown id gets, and
cannot lock the action with wrong secrets, burn the recipient's send allowance, or read the description.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.urls import reverse

from deferred_confirmation import pipeline
from deferred_confirmation.django_integration.models import DeferredAction, Delivery, SendRecord
from deferred_confirmation.pipeline import amounts
from deferred_confirmation.pipeline.channels.microdeposit import MicroDepositChannel
from tests.web.test_code_view import SENT, wrong_code

#: What the fake bank "paid": (recipient, canonical amounts "32,45").
PAID: list[tuple[str, str]] = []
PASSWORD = "a long test passphrase"
JSON = {"HTTP_ACCEPT": "application/json"}


class FakeDeposits(MicroDepositChannel):
    """The micro-deposit channel with its payout made by a fake bank (the recipient is the profile's email)."""

    def send(self, *, delivery, action, secret: str) -> str:
        PAID.append((delivery.recipient, secret))
        return f"fake-payout-{len(PAID)}"


@pytest.fixture(autouse=True)
def channels(settings):
    """A link, a code and micro-deposits for every action; resends allowed at once (no cooldown)."""
    settings.DEFERRED_CONFIRMATION = {
        **settings.DEFERRED_CONFIRMATION,
        "CHANNELS": {
            "email": {"RESEND_COOLDOWN": None},
            "testcode": {"BACKEND": "tests.web.test_code_view.CodeChannel", "MAX_ATTEMPTS": 3,
                         "EXPIRES": timedelta(minutes=10), "RESEND_COOLDOWN": None},
            "testdeposits": {"BACKEND": f"{__name__}.FakeDeposits", "MAX_ATTEMPTS": 3, "RESEND_COOLDOWN": None},
        },
    }
    SENT.clear()
    PAID.clear()
    yield
    SENT.clear()
    PAID.clear()


def make_user(name: str):
    return get_user_model().objects.create_user(name, f"{name}@example.org", PASSWORD)


@pytest.fixture
def owner(db):
    return make_user("owner")


@pytest.fixture
def owned(stage, owner):
    """An email change of ``owner``'s, confirmable by its link, a code or two deposits."""
    staged = stage(channels=["email", "testcode", "testdeposits"], user=owner,
                   description="Change your email address to the secret new one")
    staged.code = SENT[-1][1]
    staged.amounts = amounts.parse_pair(PAID[-1][1])
    return staged


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture(params=["signed-in stranger", "anonymous"])
def intruder(request, db) -> Client:
    """Someone holding the action's id: another signed-in user, or a visitor who is not signed in."""
    return signed_in(make_user("stranger")) if request.param == "signed-in stranger" else Client()


def wrong_amounts(pair: tuple[int, int]) -> dict[str, str]:
    """Two different amounts that are not ``pair``."""
    first, second = (1, 2) if set(pair) != {1, 2} else (3, 4)
    return {"first": f"0.{first:02d}", "second": f"0.{second:02d}"}


#: Every page of an action: (method, url name, form data, headers).
PAGES = {
    "code GET": ("get", "confirmation:code", None, {}),
    "code POST": ("post", "confirmation:code", "wrong code", {}),
    "deposits GET": ("get", "confirmation:deposits", None, {}),
    "deposits POST": ("post", "confirmation:deposits", "wrong amounts", {}),
    "status HTML": ("get", "confirmation:status", None, {}),
    "status JSON": ("get", "confirmation:status", None, JSON),
    "resend POST": ("post", "confirmation:resend", {}, {}),
}
#: What the action's owner gets on each page (the pages work as before for whom they belong to).
OWNER_STATUS = {"code GET": 200, "code POST": 400, "deposits GET": 200, "deposits POST": 400,
                "status HTML": 200, "status JSON": 200, "resend POST": 200}


def open_page(client: Client, page: str, action_id, staged):
    method, name, data, headers = PAGES[page]
    if data == "wrong code":
        data = {"code": wrong_code(staged.code)}
    elif data == "wrong amounts":
        data = wrong_amounts(staged.amounts)
    url = reverse(name, kwargs={"action_id": action_id})
    return getattr(client, method)(url, data, **headers) if method == "post" else client.get(url, **headers)


def footprint(staged) -> dict:
    """Everything an intruder could change or spend: state, attempts, generations, sends counted and made."""
    action = DeferredAction.objects.get(pk=staged.action.pk)
    deliveries = Delivery.objects.filter(action=action).order_by("channel")
    return {"state": action.state, "valid_until": action.valid_until,
            "attempts": [(d.channel, d.attempts, d.generation, d.secret_digest) for d in deliveries],
            "send records": SendRecord.objects.count(), "mails": len(mail.outbox), "texts": len(SENT),
            "payouts": len(PAID)}


@pytest.mark.parametrize("page", PAGES)
def test_someone_else_gets_what_an_unknown_id_gets_and_changes_nothing(owned, owner, intruder, page,
                                                                       run_on_commit):
    before = footprint(owned)
    with run_on_commit():  # a resend or a lock would run its tasks: mails, texts, payouts
        response = open_page(intruder, page, owned.action.pk, owned)
    missing = uuid.uuid4()
    unknown = open_page(intruder, page, missing, owned)
    assert response.status_code == unknown.status_code == 404
    # Not even whether the action exists: the same page, but for the id it was asked about (a sign-in link
    # back to the page asked for).
    assert response.content.decode().replace(str(owned.action.pk), "<id>") == unknown.content.decode().replace(
        str(missing), "<id>")
    body = response.content.decode()
    assert owned.action.description not in body and owned.new_email not in body
    assert footprint(owned) == before
    # The same page still works for the action's own user.
    with run_on_commit():
        mine = open_page(signed_in(owner), page, owned.action.pk, owned)
    assert mine.status_code == OWNER_STATUS[page]


def test_wrong_secrets_from_someone_else_never_lock_the_action(owned, owner, intruder, run_on_commit):
    code_url = reverse("confirmation:code", kwargs={"action_id": owned.action.pk})
    deposits_url = reverse("confirmation:deposits", kwargs={"action_id": owned.action.pk})
    with run_on_commit():
        answers = {intruder.post(code_url, {"code": wrong_code(owned.code)}).status_code for _ in range(5)}
        answers |= {intruder.post(deposits_url, wrong_amounts(owned.amounts)).status_code for _ in range(5)}
    assert answers == {404}
    owned.refresh()
    assert owned.action.state == "notified"
    assert [d.attempts for d in owned.action.deliveries.all()] == [0, 0, 0]
    with run_on_commit():  # the person it belongs to confirms as if nothing happened
        right = signed_in(owner).post(code_url, {"code": owned.code})
    assert right.status_code == 302
    assert owned.refresh().action.state == "applied"
    assert owned.profile.email == owned.new_email


def test_someone_else_cannot_burn_the_send_allowance(owned, owner, intruder, run_on_commit):
    url = reverse("confirmation:resend", kwargs={"action_id": owned.action.pk})
    before = footprint(owned)
    with run_on_commit():
        assert [intruder.post(url).status_code for _ in range(5)] == [404] * 5
    assert footprint(owned) == before  # no send counted, none made, no secret replaced
    with run_on_commit():
        assert signed_in(owner).post(url).status_code == 200
    assert SendRecord.objects.count() > before["send records"]
    assert pipeline.confirm(owned.token).status == "invalid"  # the owner's resend did replace the link


def test_someone_else_cannot_read_the_description(owned, owner, intruder):
    bodies = [open_page(intruder, page, owned.action.pk, owned).content.decode()
              for page in ("code GET", "deposits GET", "status HTML", "status JSON")]
    assert not any(owned.action.description in body for body in bodies)
    assert not any(owned.new_email in body or '"state"' in body for body in bodies)
    mine = signed_in(owner).get(reverse("confirmation:status", kwargs={"action_id": owned.action.pk}))
    assert owned.action.description in mine.content.decode()


@pytest.mark.urls("tests.web.signup")
def test_the_session_that_saved_an_anonymous_sign_up_owns_it_and_no_one_else(db, eager, intruder, run_on_commit):
    visitor = Client()
    with run_on_commit():
        response = visitor.post("/signup/", {"username": "newcomer", "email": "newcomer@example.org",
                                             "password": PASSWORD})
    assert response.status_code == 302
    action = DeferredAction.objects.get()
    assert action.user_id is None  # nobody signed in: only the session ties the visitor to it
    status_url = reverse("confirmation:status", kwargs={"action_id": action.pk})
    assert response["Location"] == status_url
    page = visitor.get(status_url)
    assert page.status_code == 200 and "Create the account newcomer" in page.content.decode()
    assert visitor.get(status_url, **JSON).json()["state"] == "notified"
    sends = SendRecord.objects.count()
    for client in (intruder, Client()):
        assert client.get(status_url).status_code == 404
        assert client.get(status_url, **JSON).status_code == 404
        assert client.post(reverse("confirmation:resend", kwargs={"action_id": action.pk})).status_code == 404
        assert client.get(reverse("confirmation:code", kwargs={"action_id": action.pk})).status_code == 404
    assert SendRecord.objects.count() == sends


def test_the_session_that_confirmed_by_link_may_follow_it_and_no_one_else(owned, intruder, run_on_commit):
    phone = Client()  # the mail opened on another device, nobody signed in there
    with run_on_commit():
        confirmed = phone.post(reverse("confirmation:link", args=[owned.token]))
    status_url = reverse("confirmation:status", kwargs={"action_id": owned.action.pk})
    assert confirmed.status_code == 302 and confirmed["Location"] == status_url
    assert phone.get(status_url).status_code == 200
    assert phone.get(status_url, **JSON).json()["state"] == "applied"
    assert intruder.get(status_url).status_code == 404
    assert intruder.get(status_url, **JSON).status_code == 404


@pytest.mark.urls("tests.web.signup")
def test_signing_in_as_someone_else_drops_what_an_anonymous_visitor_saved(db, eager, run_on_commit):
    """A shared browser: Django's login() keeps an anonymous visitor's session data when someone signs in."""
    make_user("next")
    browser = Client()
    with run_on_commit():
        assert browser.post("/signup/", {"username": "first", "email": "first@example.org",
                                         "password": PASSWORD}).status_code == 302
    action = DeferredAction.objects.get()
    status_url = reverse("confirmation:status", kwargs={"action_id": action.pk})
    assert browser.get(status_url).status_code == 200
    assert browser.login(username="next", password=PASSWORD)
    assert browser.get(status_url).status_code == 404
    assert browser.get(status_url, **JSON).status_code == 404
    assert browser.post(reverse("confirmation:resend", kwargs={"action_id": action.pk})).status_code == 404


def test_signing_in_as_another_user_drops_the_previous_users_actions(owned, owner):
    browser = signed_in(owner)
    status_url = reverse("confirmation:status", kwargs={"action_id": owned.action.pk})
    assert browser.get(status_url).status_code == 200
    browser.force_login(make_user("colleague"))
    assert browser.get(status_url).status_code == 404


def test_a_visitor_not_signed_in_is_offered_to_sign_in_and_then_gets_the_page(owned, owner, settings):
    """The code texted to a phone opens the code page there, where nobody is signed in yet."""
    settings.LOGIN_URL = "/login/"
    phone = Client()
    code_url = reverse("confirmation:code", kwargs={"action_id": owned.action.pk})
    page = phone.get(code_url)
    assert page.status_code == 404
    assert f'href="/login/?next={code_url}"' in page.content.decode()
    assert phone.login(username="owner", password=PASSWORD)
    assert phone.get(code_url).status_code == 200
    stranger = signed_in(make_user("stranger"))  # signed in already: nothing to offer
    assert 'id="sign-in"' not in stranger.get(code_url).content.decode()
