"""The code view, with a small code channel defined here (only the email channel ships in this issue)."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.urls import reverse

from deferred_confirmation import pipeline
from deferred_confirmation.django_integration.models import DeferredAction, Delivery
from deferred_confirmation.pipeline import tokens
from deferred_confirmation.pipeline.channels.base import BaseChannel
from tests.conftest import own

#: What the fake outside world received: (recipient, code).  The code channel's "phone".
SENT: list[tuple[str, str]] = []
WRONG = "That code is wrong or has expired."


class CodeChannel(BaseChannel):
    """Six digits, typed back by a person; spaces are ignored."""

    secret_kind = "code"

    def make_secret(self) -> str:
        return tokens.make_code(6)

    def normalize(self, raw: object) -> str | None:
        if not isinstance(raw, str):
            return None
        return "".join(raw.split()) or None

    def send(self, *, delivery, action, secret: str) -> str:
        SENT.append((delivery.recipient, secret))
        return f"fake-{len(SENT)}"


@pytest.fixture(autouse=True)
def code_channel(settings):
    settings.DEFERRED_CONFIRMATION = {
        **settings.DEFERRED_CONFIRMATION,
        "CHANNELS": {
            "email": {},
            "testcode": {"BACKEND": f"{__name__}.CodeChannel", "MAX_ATTEMPTS": 3,
                         "EXPIRES": timedelta(minutes=10)},
        },
    }
    SENT.clear()
    yield
    SENT.clear()


@pytest.fixture
def staged_code(stage, client):
    """An action confirmed by a code; ``client`` is the browser that saved it (the pages are its own)."""
    staged = stage(channels=["testcode"])
    own(client, staged.action)
    assert len(SENT) == 1
    recipient, code = SENT[-1]
    assert recipient == staged.new_email and re.fullmatch(r"\d{6}", code)
    staged.code = code
    return staged


def code_url(action_id) -> str:
    return reverse("confirmation:code", kwargs={"action_id": action_id})


def wrong_code(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_code_page_shows_a_form(staged_code, client):
    response = client.get(code_url(staged_code.action.pk))
    assert response.status_code == 200
    body = response.content.decode()
    assert 'name="code"' in body and "csrfmiddlewaretoken" in body
    assert staged_code.refresh().action.state == "notified"


def test_channel_expiry_applies(staged_code):
    delta = staged_code.action.valid_until - staged_code.action.created_at
    assert delta == timedelta(minutes=10)


def test_wrong_code_shows_attempts_left(staged_code, client, run_on_commit):
    with run_on_commit():
        response = client.post(code_url(staged_code.action.pk), {"code": wrong_code(staged_code.code)})
    assert response.status_code == 400
    body = response.content.decode()
    assert WRONG in body
    assert "2 attempts left" in body
    response = client.post(code_url(staged_code.action.pk), {"code": wrong_code(staged_code.code)})
    assert "1 attempt left" in response.content.decode()
    staged_code.refresh()
    assert staged_code.action.state == "notified"
    assert Delivery.objects.get(action=staged_code.action).attempts == 2
    assert staged_code.profile.email == staged_code.old_email


def test_attempts_exhausted_locks_and_right_code_then_fails(staged_code, client, run_on_commit):
    url = code_url(staged_code.action.pk)
    bad = wrong_code(staged_code.code)
    with run_on_commit():
        assert client.post(url, {"code": bad}).status_code == 400
        assert client.post(url, {"code": bad}).status_code == 400
        locked = client.post(url, {"code": bad})
    assert locked.status_code == 403
    assert "Too many wrong attempts" in locked.content.decode()
    assert staged_code.refresh().action.state == "locked"
    with run_on_commit():
        right = client.post(url, {"code": staged_code.code})
    assert right.status_code == 403
    assert pipeline.confirm(staged_code.code, action=staged_code.action.pk).status == "locked"
    staged_code.refresh()
    assert staged_code.action.state == "locked"
    assert staged_code.action.confirmed_at is None
    assert staged_code.profile.email == staged_code.old_email
    # The page of a settled action sends the person to its status.
    page = client.get(url)
    assert page.status_code in (302, 303)
    assert page["Location"] == reverse("confirmation:status", kwargs={"action_id": staged_code.action.pk})


def test_right_code_confirms_and_redirects(staged_code, client, run_on_commit):
    url = code_url(staged_code.action.pk)
    assert client.post(url, {"code": wrong_code(staged_code.code)}).status_code == 400
    spaced = " ".join([staged_code.code[:3], staged_code.code[3:]])
    with run_on_commit():
        response = client.post(url, {"code": spaced})
    status_url = reverse("confirmation:status", kwargs={"action_id": staged_code.action.pk})
    assert response.status_code in (302, 303)
    assert response["Location"] == status_url
    staged_code.refresh()
    assert staged_code.action.state == "applied"
    assert staged_code.profile.email == staged_code.new_email
    assert 'data-state="applied"' in client.get(status_url).content.decode()
    again = client.post(url, {"code": staged_code.code})
    assert again.status_code == 409


def test_expired_code_is_refused(staged_code, client, run_on_commit):
    DeferredAction.objects.filter(pk=staged_code.action.pk).update(valid_until=staged_code.action.created_at)
    with run_on_commit():
        response = client.post(code_url(staged_code.action.pk), {"code": staged_code.code})
    assert response.status_code == 410
    assert staged_code.refresh().action.state == "expired"
    assert staged_code.profile.email == staged_code.old_email


def test_code_of_one_action_does_not_confirm_another(stage, client, run_on_commit):
    first = stage(channels=["testcode"])
    second = stage(channels=["testcode"])
    first_code, second_code = SENT[0][1], SENT[1][1]
    if first_code == second_code:
        pytest.skip("the two random codes happen to be equal")
    own(client, first.action)
    own(client, second.action)
    with run_on_commit():
        response = client.post(code_url(second.action.pk), {"code": first_code})
    assert response.status_code == 400
    assert second.refresh().action.state == "notified"
    assert first.refresh().action.state == "notified"


def test_non_uuid_paths_are_404(db, client):
    for segment in ("123", "not-a-uuid", "A" * 10_000, "%00", "%C3%A9" * 36):
        assert client.get(f"/confirm/code/{segment}/").status_code == 404
        assert client.post(f"/confirm/code/{segment}/", {"code": "123456"}).status_code == 404


def test_unknown_action_is_404(db, client):
    for method in ("get", "post"):
        response = getattr(client, method)(code_url(uuid.uuid4()), {"code": "123456"})
        assert response.status_code == 404
        assert "not valid" in response.content.decode()


GARBAGE = {
    "10kB": "9" * 10_000,
    "unicode": "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9",
    "emoji": "\U0001f600" * 6,
    "rtl": "\u202e\u05d0\u0627123",
    "fullwidth": "\uff11" * 6,
    "null-byte": "12\x003456",
    "only-null": "\x00",
    "empty": "",
    "spaces": "     ",
    "sql": "' OR 1=1 --",
}


@pytest.mark.parametrize("code", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_codes_are_400_not_500(staged_code, client, code):
    response = client.post(code_url(staged_code.action.pk), {"code": code})
    assert response.status_code == 400
    body = response.content.decode()
    assert 'name="code"' in body and 'class="error"' in body
    staged_code.refresh()
    assert staged_code.action.state == "notified"
    assert staged_code.profile.email == staged_code.old_email


def test_post_without_a_code_field_is_400(staged_code, client):
    assert client.post(code_url(staged_code.action.pk), {}).status_code == 400
    assert client.post(code_url(staged_code.action.pk), {"other": "1"}).status_code == 400
    assert client.post(code_url(staged_code.action.pk), b"\xff\xfe\x00", content_type="text/plain").status_code == 400


def test_code_pages_are_private(staged_code, client):
    url = code_url(staged_code.action.pk)
    for response in (client.get(url), client.post(url, {"code": "x"}), client.get(code_url(uuid.uuid4()))):
        cache_control = response["Cache-Control"]
        for word in ("no-cache", "no-store", "must-revalidate", "private"):
            assert word in cache_control
        assert response["Referrer-Policy"] == "same-origin"


def test_code_post_without_csrf_is_refused(staged_code, csrf_client, run_on_commit):
    own(csrf_client, staged_code.action)
    with run_on_commit():
        response = csrf_client.post(code_url(staged_code.action.pk), {"code": staged_code.code})
    assert response.status_code == 403
    assert staged_code.refresh().action.state == "notified"
    assert Delivery.objects.get(action=staged_code.action).attempts == 0


@pytest.mark.parametrize("secret", [None, 123456, b"123456", ["123456"], {"code": 1}, "", "9" * 1_000_000,
                                    "\x00", "\ud800" * 6, "\U0001f600" * 6], ids=repr)
def test_confirm_never_raises_for_bad_codes(staged_code, secret):
    result = pipeline.confirm(secret, action=staged_code.action.pk)
    assert result.status == "invalid"
    assert result.attempts_left in (2, 3)  # malformed input may cost no attempt at all
    assert staged_code.refresh().action.state == "notified"
    assert pipeline.confirm(staged_code.code, action=str(staged_code.action.pk)).status == "confirmed"


BODIES = {
    "bad-multipart": (b"--nope\r\nContent-Disposition: form-data\r\n\r\n\xff\x00", "multipart/form-data; boundary=xyz"),
    "no-boundary": (b"code=123456", "multipart/form-data"),
    "json": (b'{"code": "123456"}', "application/json"),
    "binary-urlencoded": (b"code=%FF%FE%00&code=\xff", "application/x-www-form-urlencoded"),
    "too-many-fields": (b"&".join(b"f%d=1" % i for i in range(1200)), "application/x-www-form-urlencoded"),
}


@pytest.mark.parametrize(("body", "content_type"), BODIES.values(), ids=BODIES.keys())
def test_odd_request_bodies_are_400_not_500(staged_code, client, body, content_type):
    client.raise_request_exception = False
    response = client.post(code_url(staged_code.action.pk), body, content_type=content_type)
    assert response.status_code == 400
    assert staged_code.refresh().action.state == "notified"
    link = client.post(f"/confirm/{'A' * 43}/", body, content_type=content_type)
    assert link.status_code in (400, 404)
