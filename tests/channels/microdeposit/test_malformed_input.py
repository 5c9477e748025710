"""Whatever is typed on the deposits page or passed to pipeline.confirm, malformed amounts are a form error (400)
or "invalid", never a 500, and cost no attempt: only a well-formed wrong pair counts."""

from __future__ import annotations

import pytest
from django.urls import reverse

from deferred_confirmation import pipeline
from deferred_confirmation.pipeline.states import State
from tests.channels.microdeposit.conftest import delivery_of
from tests.conftest import own

MALFORMED = [
    "1e3", "-5", "0.999", "１２", "٣٢", "", "0", "100", "9" * 10_000, "3\x002", "\x00", "0.32.1", "$-0.32", "32¢",
    "0x20", "1_0", " ", "3 2", "٠.٣٢", "+32", "𝟑𝟐",
]


@pytest.fixture
def staged(stage_eager, client):
    """A change the test's ``client`` saved: the deposits page is the client's."""
    _profile, action = stage_eager()
    own(client, action)
    return action


def assert_untouched(action) -> None:
    action.refresh_from_db()
    assert action.state == State.NOTIFIED
    assert delivery_of(action).attempts == 0


@pytest.mark.parametrize("typed", MALFORMED)
def test_a_malformed_amount_is_a_form_error_that_costs_no_attempt(staged, client, typed):
    url = reverse("confirmation:deposits", args=[staged.pk])
    for data in ({"first": typed, "second": "45"}, {"first": "45", "second": typed}):
        response = client.post(url, data)
        assert response.status_code == 400, data
        assert b"attempt" not in response.content  # not counted, so no "n attempts left"
    assert_untouched(staged)


def test_missing_fields_equal_amounts_and_junk_posts_are_form_errors(staged, client):
    url = reverse("confirmation:deposits", args=[staged.pk])
    equal = client.post(url, {"first": "0.32", "second": "32"})
    assert equal.status_code == 400
    assert b"different amounts" in equal.content
    for data in ({}, {"first": "32"}, {"first": ["32", "45"], "second": ["45"]}, {"amounts": "32,45"}):
        assert client.post(url, data).status_code == 400, data
    assert client.post(url, "\x00" * 10_000, content_type="application/octet-stream").status_code == 400
    assert_untouched(staged)


@pytest.mark.parametrize("secret", [
    "1e3, 5", (32, 32), "0.32, 0.32", (0, 45), (100, 45), (-5, 45), (True, 45), (32.0, 45.0), (32,), (1, 2, 3),
    "32", "", None, b"32,45", ["３２", "45"], "٣٢, 45", "32,45" * 2_000, "32,\x0045", {"a": 1}, object(),
])
def test_malformed_amounts_given_to_confirm_are_invalid_and_cost_no_attempt(staged, secret):
    result = pipeline.confirm(secret, action=staged.pk)
    assert (result.status, result.attempts_left) == ("invalid", 3)
    assert_untouched(staged)
