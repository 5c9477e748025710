"""The HTTP payout backend against the fake payouts API on loopback (example/fakes/payouts.py): the request it
makes, refusals (4xx) against outages (429, 5xx, timeouts), and one payout however often a send is retried."""

from __future__ import annotations

import json
import time

import pytest

from deferred_confirmation.django_integration.models import Payout
from deferred_confirmation.pipeline.channels import (
    ChannelConfigurationError,
    PermanentChannelError,
    TransientChannelError,
)
from deferred_confirmation.pipeline.dispatch import APPLY_ACTION, SEND_NOTIFICATION
from deferred_confirmation.pipeline.payouts import load_backend
from deferred_confirmation.pipeline.payouts.http import HTTPPayoutBackend
from deferred_confirmation.pipeline.states import DeliveryStatus, State
from example.fakes.payouts import FakePayoutAPI
from tests.channels.microdeposit.conftest import delivery_of, save_change, wait_for
from tests.conftest import own
from tests.testapp.models import Profile

ACCOUNT = {"holder": "Ada Lovelace", "iban": "DE89370400440532013000", "country": "DE"}


def backend(api: FakePayoutAPI, **options) -> HTTPPayoutBackend:
    return HTTPPayoutBackend({"URL": api.url, "API_KEY": api.api_key, "TIMEOUT": 2, **options})


# --- the backend on its own ------------------------------------------------------------------------------
def test_initiate_posts_the_payout_with_idempotency_key_and_bearer_token(payout_api):
    ref = backend(payout_api, CURRENCY="EUR").initiate(ACCOUNT, (7, 45), "dc-1-0")
    assert ref == "po_000001"
    [request] = payout_api.requests
    assert (request.method, request.path) == ("POST", "/payouts")
    assert request.authorization == f"Bearer {payout_api.api_key}"
    assert request.idempotency_key == "dc-1-0"
    assert request.headers["content-type"] == "application/json"
    assert request.body == {"account": ACCOUNT, "amounts": [7, 45], "currency": "EUR"}
    assert payout_api.payouts[0]["amounts"] == [7, 45]


def test_the_same_idempotency_key_gives_the_same_payout(payout_api):
    api = backend(payout_api)
    assert api.initiate(ACCOUNT, (7, 45), "dc-1-0") == api.initiate(ACCOUNT, (7, 45), "dc-1-0")
    assert api.initiate(ACCOUNT, (8, 9), "dc-1-1") == "po_000002"
    assert len(payout_api.payouts) == 2
    assert [r.replayed for r in payout_api.requests] == [False, True, False]


def test_status_reads_the_payout(payout_api):
    api = backend(payout_api)
    ref = api.initiate(ACCOUNT, (7, 45), "dc-1-0")
    assert api.status(ref) == "pending"
    payout_api.set_status(ref, "paid")
    assert api.status(ref) == "paid"
    assert payout_api.requests[-1].method == "GET" and payout_api.requests[-1].path == f"/payouts/{ref}"
    with pytest.raises(PermanentChannelError, match="No such payout"):
        api.status("po_missing/../x")


@pytest.mark.parametrize(("kind", "message", "code"), [
    (400, "The bank account is closed.", "400"),
    ("invalid", "No such routing number.", "400"),
    ("unauthorized", None, "401"),
    (403, "Payouts are not enabled on this account.", "403"),
])
def test_4xx_are_permanent_with_the_apis_reason(payout_api, kind, message, code):
    payout_api.fail_next(kind, message=message)
    with pytest.raises(PermanentChannelError) as refused:
        backend(payout_api).initiate(ACCOUNT, (7, 45), "dc-1-0")
    assert refused.value.code == code
    assert (message or "Invalid API key provided.") in refused.value.reason
    assert payout_api.payouts == []


def test_a_wrong_api_key_is_refused_permanently(payout_api):
    with pytest.raises(PermanentChannelError, match="Invalid API key"):
        backend(payout_api, API_KEY="sk_wrong").initiate(ACCOUNT, (7, 45), "dc-1-0")


@pytest.mark.parametrize(("kind", "code"), [("rate_limit", "429"), ("server", "500"), (502, "502"),
                                            ("unavailable", "503")])
def test_429_and_5xx_are_transient(payout_api, kind, code):
    payout_api.fail_next(kind)
    api = backend(payout_api)
    with pytest.raises(TransientChannelError) as outage:
        api.initiate(ACCOUNT, (7, 45), "dc-1-0")
    assert outage.value.code == code
    assert api.initiate(ACCOUNT, (7, 45), "dc-1-0") == "po_000001"  # the retry goes through


def test_a_timeout_is_transient_and_the_retry_gets_the_payout_made_meanwhile(payout_api):
    payout_api.fail_next("slow", delay=1.0)
    api = backend(payout_api, TIMEOUT=0.2)
    started = time.monotonic()
    with pytest.raises(TransientChannelError, match=r"did not answer within 0\.2 s"):
        api.initiate(ACCOUNT, (7, 45), "dc-1-0")
    assert time.monotonic() - started < 1.0
    assert api.initiate(ACCOUNT, (7, 45), "dc-1-0") == "po_000001"
    assert len(payout_api.payouts) == 1
    assert payout_api.requests[-1].replayed


def test_a_refused_connection_is_transient():
    with FakePayoutAPI() as api:
        url = api.url
    with pytest.raises(TransientChannelError, match="unreachable"):
        HTTPPayoutBackend({"URL": url, "TIMEOUT": 1}).initiate(ACCOUNT, (7, 45), "dc-1-0")


@pytest.mark.parametrize(("options", "problem"), [
    ({}, "URL"),
    ({"URL": "ftp://payouts.example"}, "URL"),
    ({"URL": "https://payouts.example", "TIMEOUT": "soon"}, "TIMEOUT"),
    ({"URL": "https://payouts.example", "CURRENCY": "dollars"}, "CURRENCY"),
    ({"URL": "https://payouts.example", "PAYOUT_BACKEND": "nowhere.Backend"}, "cannot be imported"),
    ({"URL": "https://payouts.example", "PAYOUT_BACKEND": "json.JSONDecoder"}, "not a PayoutBackend"),
])
def test_misconfiguration_is_reported(options, problem):
    with pytest.raises(ChannelConfigurationError, match=problem):
        load_backend({"PAYOUT_BACKEND": "deferred_confirmation.pipeline.payouts.http.HTTPPayoutBackend", **options})


# --- through the channel, with the real worker ---------------------------------------------------------------
def test_deposits_through_the_api_confirm_the_change(http_backend, worker, task_log, client):
    api = http_backend()
    profile, action = save_change()
    wait_for(lambda: True in task_log.returned(SEND_NOTIFICATION), what="the deposits to be sent")
    delivery = delivery_of(action)
    assert delivery.provider_ref == "po_000001"
    [request] = api.requests
    assert request.idempotency_key == delivery.idempotency_key
    assert request.bearer == api.api_key
    assert request.body["account"] == json.loads(delivery.recipient_value)
    assert request.body["currency"] == "USD"
    assert Payout.objects.count() == 0  # the ledger is not involved
    a, b = api.payouts[0]["amounts"]
    own(client, action)
    response = client.post(f"/confirm/deposits/{action.pk}/", {"first": f"0.{b:02d}", "second": str(a)})
    assert response.status_code == 302
    wait_for(lambda: True in task_log.returned(APPLY_ACTION), what="the apply")
    assert Profile.objects.get(pk=profile.pk).bank_iban == "DE89370400440532013000"


def test_a_refusal_fails_the_delivery_and_the_action_with_the_apis_reason(http_backend, worker, task_log,
                                                                          signal_log, send_retries):
    api = http_backend()
    api.fail_next(400, message="The bank account is closed.")
    profile, action = save_change()
    wait_for(lambda: task_log.returned(SEND_NOTIFICATION) == [False], what="the delivery to fail")
    delivery = delivery_of(action)
    assert delivery.status == DeliveryStatus.FAILED
    assert "The bank account is closed." in delivery.status_detail and "400" in delivery.status_detail
    assert delivery.secret_digest == ""
    action.refresh_from_db()
    assert action.state == State.FAILED
    assert "The bank account is closed." in action.failure_reason
    assert len(api.posts()) == 1 and api.payouts == []
    assert send_retries == []
    wait_for(lambda: signal_log.count("confirmation_failed", action.pk) == 1, what="confirmation_failed")
    assert Profile.objects.get(pk=profile.pk).bank_iban == ""


def test_outages_are_retried_until_the_deposits_go_out_once(http_backend, worker, task_log, send_retries):
    api = http_backend(timeout=0.3)
    api.fail_next("rate_limit")
    api.fail_next("server")
    api.fail_next("slow", delay=1.0)  # the payout is made, but the answer comes after the client gave up
    _profile, action = save_change()
    wait_for(lambda: True in task_log.returned(SEND_NOTIFICATION), what="the deposits to be sent")
    posts = api.posts()
    assert [r.status for r in posts[:2]] == [429, 500]
    assert not posts[2].replayed  # made the payout; its answer may still be on its way
    assert (posts[3].status, posts[3].replayed) == (200, True)
    assert {r.idempotency_key for r in posts} == {delivery_of(action).idempotency_key}
    assert len(api.payouts) == 1
    wait_for(lambda: len(send_retries) >= 3, what="every retry to be reported")  # Celery reports after re-sending
    assert len(send_retries) == 3
    assert "Too many requests" in send_retries[0]  # the 429
    assert "Something went wrong" in send_retries[1]  # the 500
    assert "did not answer within 0.3 s" in send_retries[2]
    delivery = delivery_of(action)
    assert (delivery.status, delivery.provider_ref, delivery.send_attempts) == (DeliveryStatus.SENT, "po_000001", 4)
    action.refresh_from_db()
    assert action.state == State.NOTIFIED
