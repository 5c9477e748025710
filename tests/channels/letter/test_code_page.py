"""The code page of a letter action, hit with garbage: every answer is a clear 400/404 page, never a 500 and
never a success, and malformed input costs no attempt.  Tasks run eagerly here (the letter is really
rendered and stored), so no worker is needed."""

from __future__ import annotations

import uuid

import pytest

from tests.channels.letter.conftest import code_in, code_url, delivery_of, read_letter, stage_address_change
from tests.conftest import own


@pytest.fixture
def letter_action(db, eager, settings, django_capture_on_commit_callbacks, client):
    """A letter sent for an address change that the test's ``client`` saved (its page is the client's)."""
    with django_capture_on_commit_callbacks(execute=True):
        _profile, action = stage_address_change()
    own(client, action)
    delivery = delivery_of(action)
    assert delivery.status == "sent"
    return action, code_in(read_letter(settings, delivery))


def test_get_shows_the_form(client, letter_action):
    action, _code = letter_action
    response = client.get(code_url(action))
    assert response.status_code == 200
    assert 'name="code"' in response.content.decode()
    assert response["Referrer-Policy"] == "same-origin"


@pytest.mark.parametrize("path", [
    "/confirm/code/not-a-uuid/", "/confirm/code/%00/", "/confirm/code/" + "9" * 5000 + "/",
    "/confirm/code/%ED%A0%80/", f"/confirm/code/{uuid.uuid4()}/",
])
def test_unknown_or_malformed_action_ids_are_404(client, db, path):
    assert client.get(path).status_code == 404
    assert client.post(path, {"code": "ACEF-3479"}).status_code == 404


GARBAGE_DATA = [
    {}, {"code": ""}, {"code": "   "}, {"code": "x" * 10_000}, {"code": "\x00"}, {"code": "ACEF\x003479"},
    {"code": "ＡＣＥＦ３４７９"}, {"code": "١٢٣٤٥٦٧٨"}, {"code": "ACEF-347O"}, {"code": ["a", "b"]},
    {"code": "' OR 1=1 --"}, {"code": "<script>alert(1)</script>"}, {"other": "ACEF-3479"},
]
GARBAGE_BODIES = [
    (b"code=%ED%A0%80%ED%A0%80", "application/x-www-form-urlencoded"),  # a lone surrogate, as UTF-8 bytes
    (b"code=\xff\xfe\xfd", "application/x-www-form-urlencoded"),
    (b'{"code": "ACEF-3479"}', "application/json"),
    (b"\x00" * 2048, "application/octet-stream"),
    (b'--x\r\nContent-Disposition: form-data; name="code"\r\n\r\n\x00\r\n--x--\r\n',
     "multipart/form-data; boundary=x"),
]


def test_garbage_codes_are_400_and_cost_no_attempt(client, letter_action):
    # One letter for all the cases: rendering a PDF is the slow part.
    action, _code = letter_action
    for data in GARBAGE_DATA:
        response = client.post(code_url(action), data)
        assert response.status_code == 400, data
        assert "<script>alert" not in response.content.decode()
    for body, content_type in GARBAGE_BODIES:
        response = client.post(code_url(action), data=body, content_type=content_type)
        assert response.status_code == 400, body
    assert delivery_of(action).attempts == 0
    action.refresh_from_db()
    assert action.state == "notified"


def test_wrong_code_costs_an_attempt_and_the_right_one_still_works(client, letter_action,
                                                                    django_capture_on_commit_callbacks):
    action, code = letter_action
    wrong = ("C" if code[0] != "C" else "A") + code[1:]
    response = client.post(code_url(action), {"code": wrong})
    assert response.status_code == 400 and "4 attempts left" in response.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(code_url(action), {"code": code.replace("-", " ")}).status_code == 302
    action.refresh_from_db()
    assert action.state == "applied"
