"""Letters through Lob (lob-python) against a loopback fake of Lob's API, with the real in-process worker:
what Lob is sent, one letter however often the task is retried (the idempotency key), address refusals
failing the delivery and the action at once, rate limits and server errors retried until the letter goes."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone

from deferred_confirmation.pipeline.channels import (
    ChannelConfigurationError,
    PermanentChannelError,
    TransientChannelError,
)
from deferred_confirmation.pipeline.channels.letter import LobLetterChannel
from deferred_confirmation.pipeline.dispatch import APPLY_ACTION as APPLY
from deferred_confirmation.pipeline.dispatch import SEND_NOTIFICATION as SEND
from deferred_confirmation.pipeline.states import DeliveryStatus, State
from example.fakes.lob import FakeLob
from tests.channels.letter.conftest import SENDER, code_in, code_url, delivery_of, stage_address_change, wait_for
from tests.conftest import own
from tests.testapp.models import Profile


def finished(task_log, result: bool) -> None:
    wait_for(lambda: result in task_log.returned(SEND), what=f"send_notification to return {result}")


def test_letter_request_at_lob_and_its_code_confirms(worker, task_log, fake_lob, client):
    profile, action = stage_address_change()
    own(client, action)
    finished(task_log, True)
    delivery = delivery_of(action)

    assert len(fake_lob.letters) == 1 and len(fake_lob.requests) == 1
    request, letter = fake_lob.requests[0], fake_lob.letters[0]
    assert (request.method, request.path) == ("POST", "/v1/letters")
    assert request.username == fake_lob.api_key and request.password == ""
    assert request.idempotency_key == delivery.idempotency_key and delivery.idempotency_key.endswith("-0")
    body = request.body
    assert body["to"] == {"name": "Erika Mustermann", "address_line1": "Heidestraße 17", "address_city": "Köln",
                          "address_zip": "51147", "address_country": "DE"}
    assert body["from"] == {"name": "Example Ltd", "address_line1": "185 Berry St", "address_line2": "Suite 6100",
                            "address_city": "San Francisco", "address_state": "CA", "address_zip": "94107",
                            "address_country": "US"}
    assert body["color"] is False and body["use_type"] == "operational" and body["double_sided"] is False
    assert body["metadata"] == {"delivery": str(delivery.pk), "generation": "0"}
    # The letter is HTML rendered by Lob: the code and the code page, no address block (Lob prints it).
    html = body["file"]
    assert html.lstrip().startswith("<!doctype html>") and len(html) < 10_000
    assert f"https://confirm.example.org/confirm/code/{action.pk}/" in html
    assert "Mustermann" not in html and "Heidestra" not in html
    code = code_in(html)
    assert delivery.provider_ref == letter["id"] and delivery.provider_ref.startswith("ltr_")
    assert delivery.status == DeliveryStatus.SENT

    assert client.post(code_url(action), {"code": code.lower()}).status_code == 302
    wait_for(lambda: task_log.returned(APPLY) == [True], what="the apply")
    assert Profile.objects.get(pk=profile.pk).address_city == "Köln"


@pytest.mark.parametrize("failure", ["drop", "slow"])
def test_retried_send_makes_one_letter_at_lob(worker, task_log, fake_lob, fast_retries, send_retries, failure):
    """Lob made the letter but its answer was lost (connection dropped, or too slow for the client): the
    retry carries the same idempotency key, so Lob answers with the same letter instead of a second one."""
    fake_lob.fail_next(failure, delay=2)
    _profile, action = stage_address_change()
    finished(task_log, True)

    delivery = delivery_of(action)
    # Celery signals the retry after the retried message is already out: with no countdown another worker
    # thread can finish the retry before the first one has reported it.
    wait_for(lambda: send_retries, what="the retry to be reported")
    assert len(send_retries) == 1 and "Lob unreachable" in send_retries[0]
    assert len(fake_lob.requests) == 2
    assert {r.idempotency_key for r in fake_lob.requests} == {delivery.idempotency_key}
    assert [r.replayed for r in fake_lob.requests] == [False, True]
    assert len(fake_lob.letters) == 1
    assert delivery.provider_ref == fake_lob.letters[0]["id"]
    assert delivery.status == DeliveryStatus.SENT and delivery.send_attempts == 2


@pytest.mark.parametrize(("script", "changes", "message"), [
    ("address", {}, "The to address does not meet the deliverability strictness level of this account."),
    # A US address without a state (the form has no state field): Lob refuses it.
    (None, {"address_country": "US", "address_postal_code": "10001", "address_city": "New York"},
     "to.address_state is required"),
])
def test_lob_address_refusal_fails_delivery_and_action(worker, task_log, signal_log, fake_lob, send_retries, script,
                                                       changes, message):
    if script:
        fake_lob.fail_next(script)
    profile, action = stage_address_change(**changes)
    finished(task_log, False)

    delivery = delivery_of(action)
    assert delivery.status == DeliveryStatus.FAILED
    assert message in delivery.status_detail and delivery.status_detail.startswith("422: Lob: ")
    assert delivery.secret_digest == ""
    action.refresh_from_db()
    assert action.state == State.FAILED and message in action.failure_reason
    assert send_retries == [] and len(fake_lob.requests) == 1 and fake_lob.letters == []
    wait_for(lambda: signal_log.count("confirmation_failed", action.pk) == 1, what="confirmation_failed")
    assert Profile.objects.get(pk=profile.pk).address_city == "Bonn"


def test_rate_limit_and_server_errors_are_retried_then_sent(worker, task_log, fake_lob, fast_retries, send_retries):
    fake_lob.fail_next("rate_limit")
    fake_lob.fail_next("server")
    _profile, action = stage_address_change()
    finished(task_log, True)

    assert [r.status for r in fake_lob.requests] == [429, 500, 200]
    assert len({r.idempotency_key for r in fake_lob.requests}) == 1
    wait_for(lambda: len(send_retries) >= 2, what="both retries to be reported")  # reported after re-sending
    assert len(send_retries) == 2
    assert "Rate limit exceeded" in send_retries[0] and "internal server error" in send_retries[1]
    assert len(fake_lob.letters) == 1
    delivery = delivery_of(action)
    assert delivery.status == DeliveryStatus.SENT and delivery.provider_ref == fake_lob.letters[0]["id"]
    action.refresh_from_db()
    assert action.state == State.NOTIFIED


# --- the channel alone: error mapping without a worker ----------------------------------------------------
def _lob(**options) -> LobLetterChannel:
    return LobLetterChannel("letter", {"OPTIONS": {"FROM": SENDER, "TIMEOUT": (1, 1), **options}})


def _call(channel: LobLetterChannel, country: str = "DE") -> str:
    recipient = {"name": "Erika Mustermann", "line1": "Heidestraße 17", "line2": "", "city": "Köln", "state": "",
                 "postal_code": "51147", "country": country}
    delivery = SimpleNamespace(pk=7, generation=0, idempotency_key="dc-7-0", recipient_value=json.dumps(recipient),
                               expires_at=timezone.now() + timedelta(days=30))
    action = SimpleNamespace(pk=uuid.uuid4(), description="", user=None, valid_until=delivery.expires_at)
    return channel.send(delivery=delivery, action=action, secret="ACEF3479")


def test_unreachable_lob_is_transient():
    with FakeLob() as lob:
        url, key = lob.url, lob.api_key
    with pytest.raises(TransientChannelError, match="Lob unreachable"):
        _call(_lob(API_KEY=key, BASE_URL=url))


@pytest.mark.parametrize(("kind", "error"), [
    ("unauthorized", TransientChannelError),  # a key being rotated: retried, then given up on
    ("unavailable", TransientChannelError),
    ("invalid", PermanentChannelError),
])
def test_lob_statuses_map_to_channel_errors(kind, error):
    with FakeLob() as lob:
        lob.fail_next(kind)
        with pytest.raises(error) as raised:
            _call(_lob(API_KEY=lob.api_key, BASE_URL=lob.url))
    assert raised.value.reason.startswith("Lob: ")


def test_wrong_api_key_is_not_a_permanent_failure():
    with FakeLob() as lob, pytest.raises(TransientChannelError, match="401"):
        _call(_lob(API_KEY="test_wrong", BASE_URL=lob.url))


def test_missing_configuration_is_reported():
    with pytest.raises(ChannelConfigurationError, match="API_KEY"):
        _call(_lob(BASE_URL="http://127.0.0.1:9/v1"))
    with FakeLob() as lob, pytest.raises(ChannelConfigurationError, match="FROM"):
        _call(LobLetterChannel("letter", {"OPTIONS": {"API_KEY": lob.api_key, "BASE_URL": lob.url}}))


def test_unknown_country_is_refused_before_calling_lob():
    with FakeLob() as lob:
        with pytest.raises(PermanentChannelError, match="address refused before sending"):
            _call(_lob(API_KEY=lob.api_key, BASE_URL=lob.url), country="XX")
        assert lob.requests == []


def test_fake_lob_speaks_lob():
    """The fake's letters deserialise into lob-python's Letter model (so the client code paths are real)."""
    from lob_python import ApiClient, Configuration
    from lob_python.api.letters_api import LettersApi

    with FakeLob() as lob:
        ref = _call(_lob(API_KEY=lob.api_key, BASE_URL=lob.url))
        with ApiClient(Configuration(host=lob.url, username=lob.api_key)) as api:
            letter = LettersApi(api).get(ref)  # type-checked: a Letter with Address models
    assert letter.id == ref and letter.to.address_city == "KÖLN" and letter.to.address_country.value == "GERMANY"
