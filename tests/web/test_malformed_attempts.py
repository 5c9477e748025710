"""Input that could not be any secret costs the client nothing.

Threat: the failure throttle (FAILED_ATTEMPTS_LIMIT per client) is there to stop guessing.  Counting input that
cannot be a secret at all (a code of the wrong length, a link token of the wrong shape: a typo, a mail client
that cut the link) as a failure would lock a person out of their own correct code for a quarter of an hour
after a few fumbles, and would tell a guesser nothing either way.  Only a POST of a well-formed wrong secret
counts.  Through the Django test client and the real middleware stack.
"""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from deferred_confirmation.pipeline import tokens
from tests.conftest import own
from tests.web.test_code_view import SENT, CodeChannel, code_url, wrong_code

LIMIT = 3


class SixDigitChannel(CodeChannel):
    """A code channel that knows its codes' shape, as the SMS and letter channels do."""

    def normalize(self, raw: object) -> str | None:
        code = super().normalize(raw)
        return code if code is not None and re.fullmatch(r"\d{6}", code) else None


@pytest.fixture(autouse=True)
def six_digit_channel(settings):
    from datetime import timedelta

    settings.DEFERRED_CONFIRMATION = {
        **settings.DEFERRED_CONFIRMATION,
        "FAILED_ATTEMPTS_LIMIT": LIMIT,
        "CHANNELS": {"email": {}, "testcode": {"BACKEND": f"{__name__}.SixDigitChannel", "MAX_ATTEMPTS": 3,
                                                "EXPIRES": timedelta(minutes=10)}},
    }
    SENT.clear()
    yield
    SENT.clear()


def test_codes_of_the_wrong_shape_cost_no_throttle_count_and_the_right_code_still_works(stage, client):
    staged = stage(channels=["testcode"])
    own(client, staged.action)
    _recipient, code = SENT[-1]
    url = code_url(staged.action.pk)

    fumbles = [code[:5], code + "1", "12a456", "------"]  # five digits, seven, a letter, nothing usable
    for typed in fumbles * 2:
        response = client.post(url, {"code": typed})
        assert response.status_code == 400  # a form error, re-rendered with what to do
    assert client.post(url, {"code": code}).status_code == 302  # not throttled: the fumbles counted nothing
    assert staged.refresh().action.state in ("confirmed", "applied")


def test_a_wrong_code_of_the_right_shape_still_counts(stage, client):
    staged = stage(channels=["testcode"])
    own(client, staged.action)
    _recipient, code = SENT[-1]
    other = stage(channels=["testcode"])
    own(client, other.action)
    _recipient, other_code = SENT[-1]
    # One guess at each of three actions (no action's own MAX_ATTEMPTS is reached): the client's limit is.
    third = stage(channels=["testcode"])
    own(client, third.action)
    statuses = [client.post(code_url(s.action.pk), {"code": wrong_code(c)}).status_code
                for s, c in ((staged, code), (other, other_code), (third, SENT[-1][1]))]
    assert statuses == [400, 400, 400]
    assert client.post(code_url(staged.action.pk), {"code": code}).status_code == 429


def test_link_tokens_of_the_wrong_shape_cost_nothing(stage, client):
    staged = stage()
    cut_short = staged.token[:20]
    assert not tokens.is_well_formed_link_token(cut_short)
    for _ in range(LIMIT * 3):
        assert client.post(reverse("confirmation:link", args=[cut_short])).status_code == 404
    assert client.post(reverse("confirmation:link", args=[staged.token])).status_code == 302
    assert staged.refresh().action.state in ("confirmed", "applied")
