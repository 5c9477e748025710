"""deferred_confirmation.pipeline.confirm never raises: every input gives a ConfirmResult with an honest status."""

from __future__ import annotations

import uuid

import pytest

from deferred_confirmation import pipeline
from deferred_confirmation.django_integration.models import DeferredAction

BAD_SECRETS = {
    "none": None,
    "zero": 0,
    "int": 123456,
    "negative": -1,
    "float": 1.5,
    "bool": True,
    "bytes": b"A" * 43,
    "bytearray": bytearray(b"A" * 43),
    "list": ["A" * 43],
    "tuple": (32, 45),
    "dict": {"token": "A" * 43},
    "set": {"A" * 43},
    "object": object(),
    "empty": "",
    "short": "A",
    "huge": "A" * 1_000_000,
    "huge-unicode": "\u00e9" * 100_000,
    "null": "\x00" * 43,
    "surrogate": "\ud800" * 43,
    "emoji": "\U0001f600" * 43,
}


@pytest.mark.parametrize("secret", BAD_SECRETS.values(), ids=BAD_SECRETS.keys())
def test_bad_link_secrets_are_invalid(stage, secret):
    staged = stage()
    result = pipeline.confirm(secret)
    assert result.status == pipeline.ConfirmStatus.INVALID
    assert result.status == "invalid"
    assert result.action is None
    assert not result.ok
    assert staged.refresh().action.state == "notified"


@pytest.mark.parametrize("secret", BAD_SECRETS.values(), ids=BAD_SECRETS.keys())
def test_bad_code_secrets_for_a_real_action_are_invalid(stage, secret):
    staged = stage()
    result = pipeline.confirm(secret, action=staged.action.pk)
    assert result.status == "invalid"  # an email-only action has no code to match
    assert staged.refresh().action.state == "notified"


BAD_ACTIONS = {
    "non-uuid": "not-a-uuid",
    "empty": "",
    "int": 42,
    "zero": 0,
    "float": 1.0,
    "bytes": b"\x00" * 16,
    "list": [1, 2],
    "dict": {"id": 1},
    "huge": "f" * 1_000_000,
    "null": "\x00",
    "uuid-with-null": str(uuid.uuid4()) + "\x00",
    "unicode": "\u00e9" * 32,
    "missing-uuid": uuid.uuid4(),
    "missing-uuid-str": str(uuid.uuid4()),
    "unsaved-action": DeferredAction(),
    "object": object(),
}


@pytest.mark.parametrize("action", BAD_ACTIONS.values(), ids=BAD_ACTIONS.keys())
def test_bad_action_references_are_invalid(db, action):
    for secret in ("123456", None, "A" * 43, (32, 45)):
        result = pipeline.confirm(secret, action=action)
        assert result.status == "invalid"
        assert result.action is None


def test_none_action_with_a_code_is_a_link_lookup(db):
    assert pipeline.confirm("123456", None).status == "invalid"
    assert pipeline.confirm("123456", action=None).status == "invalid"


def test_link_token_with_its_own_action_id_is_not_a_code(stage):
    staged = stage()
    result = pipeline.confirm(staged.token, action=staged.action.pk)
    assert result.status == "invalid"
    assert staged.refresh().action.state == "notified"
    assert pipeline.confirm(staged.token).status == "confirmed"


def test_confirm_results(stage, run_on_commit):
    staged = stage()
    with run_on_commit():
        first = pipeline.confirm(staged.token)
    assert first.status == "confirmed" and first.ok
    assert first.action.pk == staged.action.pk
    assert first.attempts_left is None
    again = pipeline.confirm(staged.token)
    assert again.status == "already_used"
    assert isinstance(again.status, str)
    assert staged.refresh().action.state == "applied"


def test_expired_and_cancelled(stage):
    from datetime import timedelta

    from django.utils import timezone

    expired = stage()
    DeferredAction.objects.filter(pk=expired.action.pk).update(valid_until=timezone.now() - timedelta(hours=1))
    assert pipeline.confirm(expired.token).status == "expired"
    assert expired.refresh().action.state == "expired"
    assert pipeline.confirm(expired.token).status == "expired"

    cancelled = stage()
    pipeline.cancel(cancelled.action)
    result = pipeline.confirm(cancelled.token)
    assert result.status == "invalid"
    assert cancelled.refresh().action.state == "cancelled"
