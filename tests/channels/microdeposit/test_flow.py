"""Micro-deposits end to end with the real in-process worker on the real Redis and the default ledger backend:
save -> a sealed Payout row -> the operator's export -> the amounts typed on the deposits page -> applied."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.apps import apps
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from deferred_confirmation import pipeline, workers
from deferred_confirmation.django_integration.models import DeferredAction, Delivery, Payout
from deferred_confirmation.pipeline.dispatch import APPLY_ACTION, GENERATE_TOKEN, SEND_NOTIFICATION
from deferred_confirmation.pipeline.payouts.ledger import open_amounts
from deferred_confirmation.pipeline.states import DeliveryStatus, State
from tests.channels.microdeposit.conftest import (
    QUEUE,
    US_ACCOUNT,
    cents_text,
    delivery_of,
    export,
    exported_amounts,
    wait_for,
    wrong_amounts,
)
from tests.conftest import own
from tests.testapp.models import Profile


def deposits_url(action) -> str:
    return reverse("confirmation:deposits", args=[action.pk])


def post_amounts(client, action, first, second):
    return client.post(deposits_url(action), {"first": str(first), "second": str(second)})


def wait_applied(task_log, action):
    wait_for(lambda: True in task_log.returned(APPLY_ACTION), what="the apply")
    action.refresh_from_db()
    assert action.state == State.APPLIED


def database_text() -> tuple[str, str]:
    """Every stored value: raw column values (as the database returns them) and model reprs (no timestamps as
    text, so "0.32" cannot come from a time of day)."""
    raw = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608 - introspected
            raw += [str(bytes(v).hex() if isinstance(v, bytes | memoryview) else v)
                    for row in cursor.fetchall() for v in row]
    models = [repr(row) for model in apps.get_models() for row in model._default_manager.values()]
    return "\n".join(raw), "\n".join(models)


def test_deposits_are_paid_sealed_read_by_the_operator_and_confirm_the_change(stage_sent, task_log, client):
    profile, action = stage_sent()
    own(client, action)
    assert action.state == State.NOTIFIED
    delivery = delivery_of(action)
    assert delivery.status == DeliveryStatus.SENT
    assert json.loads(delivery.recipient_value) == {"holder": "Ada Lovelace", "iban": "DE89370400440532013000",
                                                    "country": "DE"}
    assert json.loads(delivery.recipient) == {"holder": "Ada Lovelace", "iban": "••••3000", "country": "DE"}

    # One payout for the delivery's generation, amounts sealed; the profile is not changed yet.
    [payout] = Payout.objects.all()
    assert payout.delivery_id == delivery.pk
    assert payout.idempotency_key == delivery.idempotency_key == f"dc-{delivery.action_id}-{delivery.pk}-0"
    assert delivery.provider_ref == f"ledger:{payout.pk}"
    assert (payout.status, payout.currency, payout.exported_at) == ("initiated", "USD", None)
    assert payout.account == delivery.recipient  # masked
    assert json.loads(payout.account_value) == json.loads(delivery.recipient_value)
    assert Profile.objects.get(pk=profile.pk).bank_iban == ""

    # The operator's export opens them and marks the payout exported.
    a, b = exported_amounts(action)
    assert 1 <= a < b <= 99
    assert open_amounts(Payout.objects.get()) == (a, b)
    payout.refresh_from_db()
    assert payout.status == "exported" and payout.exported_at is not None
    assert json.loads(export("--json")) == []  # nothing left to pay

    # No column holds them in clear: not the payout, not the delivery (only an HMAC), not the form data.
    raw, reprs = database_text()
    assert payout.amounts_sealed in raw and delivery.secret_digest in raw  # the dump covers both tables
    for clear in (f"{a},{b}", f"{b},{a}", f"{a}, {b}", f"[{a}, {b}]", f"[{b}, {a}]"):
        assert clear not in raw and clear not in reprs
    for clear in (cents_text(a), cents_text(b)):
        assert clear not in reprs

    # Wrong amounts: 400, attempts left shown, nothing applied.
    response = post_amounts(client, action, *wrong_amounts((a, b)))
    assert response.status_code == 400
    assert b"2 attempts left" in response.content
    assert delivery_of(action).attempts == 1

    # The right ones, in reverse order, one typed as "0.bb" and one as plain cents.
    response = post_amounts(client, action, cents_text(b), a)
    assert response.status_code == 302
    assert response["Location"] == reverse("confirmation:status", args=[action.pk])
    wait_applied(task_log, action)
    profile.refresh_from_db()
    assert (profile.bank_holder, profile.bank_iban) == ("Ada Lovelace", "DE89370400440532013000")
    assert client.get(response["Location"], HTTP_ACCEPT="application/json").json()["state"] == "applied"
    assert post_amounts(client, action, a, b).status_code == 409  # used


def test_three_wrong_entries_lock_the_action_and_then_the_right_amounts_fail_too(stage_sent, client):
    profile, action = stage_sent(US_ACCOUNT)
    own(client, action)
    assert json.loads(delivery_of(action).recipient_value) == {
        "holder": "Grace Hopper", "routing_number": "111000025", "account_number": "12345678", "country": "US"}
    right = exported_amounts(action)
    wrong = wrong_amounts(right)
    for left in (2, 1):
        response = post_amounts(client, action, *wrong)
        assert response.status_code == 400
        assert f"{left} attempt".encode() in response.content
    assert post_amounts(client, action, *wrong).status_code == 403
    action.refresh_from_db()
    assert action.state == State.LOCKED
    assert post_amounts(client, action, *right).status_code == 403
    result = pipeline.confirm(right, action=action.pk)
    assert result.status == "locked"
    assert Profile.objects.get(pk=profile.pk).bank_routing_number == ""


def test_expired_amounts_are_refused_with_410(stage_sent, client):
    profile, action = stage_sent()
    own(client, action)
    right = exported_amounts(action)
    past = timezone.now() - timedelta(seconds=1)
    Delivery.objects.filter(action=action).update(expires_at=past)
    DeferredAction.objects.filter(pk=action.pk).update(valid_until=past)
    response = post_amounts(client, action, *right)
    assert response.status_code == 410
    action.refresh_from_db()
    assert action.state == State.EXPIRED
    assert Profile.objects.get(pk=profile.pk).bank_iban == ""


@pytest.mark.parametrize("form", ["cents", "text"])
def test_the_programmatic_api_takes_cents_or_text_in_any_order(stage_sent, task_log, form):
    profile, action = stage_sent()
    a, b = exported_amounts(action)
    secret = (b, a) if form == "cents" else f"{cents_text(b)}, {cents_text(a)}"
    assert pipeline.confirm("not amounts", action=action.pk).status == "invalid"  # costs nothing
    assert delivery_of(action).attempts == 0
    result = pipeline.confirm(secret, action=action.pk)
    assert result.status == "confirmed" and result.action.pk == action.pk
    wait_applied(task_log, action)
    assert Profile.objects.get(pk=profile.pk).bank_iban == "DE89370400440532013000"


def test_a_resend_pays_new_deposits_and_the_old_amounts_die(stage_sent, task_log, microdeposit_channel, monkeypatch):
    microdeposit_channel(RESEND_COOLDOWN=None)
    pairs = iter([(12, 34), (56, 78)])
    monkeypatch.setattr("deferred_confirmation.pipeline.channels.microdeposit.random_pair", lambda: next(pairs))
    profile, action = stage_sent()
    old = exported_amounts(action)
    assert old == (12, 34)

    assert pipeline.resend(action).sent is True
    wait_for(lambda: task_log.returned(SEND_NOTIFICATION).count(True) == 2, what="the new deposits")
    delivery = delivery_of(action)
    assert delivery.generation == 1 and delivery.status == DeliveryStatus.SENT
    first, second = Payout.objects.order_by("pk")
    prefix = f"dc-{delivery.action_id}-{delivery.pk}"
    assert (first.idempotency_key, second.idempotency_key) == (f"{prefix}-0", f"{prefix}-1")
    assert delivery.provider_ref == f"ledger:{second.pk}"
    new = exported_amounts(action)  # only the new payout is waiting
    assert new == (56, 78)

    result = pipeline.confirm(old, action=action.pk)
    assert (result.status, result.attempts_left) == ("invalid", 2)
    assert pipeline.confirm(new, action=action.pk).status == "confirmed"
    wait_for(lambda: True in task_log.returned(APPLY_ACTION), what="the apply")
    assert Profile.objects.get(pk=profile.pk).bank_iban == "DE89370400440532013000"


def test_a_replayed_send_task_never_makes_a_second_payout(stage_sent, task_log):
    _profile, action = stage_sent()
    delivery = delivery_of(action)
    [payout] = Payout.objects.all()
    [send_args] = task_log.args_of(SEND_NOTIFICATION)
    assert len(task_log.args_of(GENERATE_TOKEN)) == 1

    def replay() -> None:
        runs = len(task_log.returned(SEND_NOTIFICATION))
        workers.app.send_task(SEND_NOTIFICATION, args=send_args, queue=QUEUE)
        wait_for(lambda: len(task_log.returned(SEND_NOTIFICATION)) > runs, what="the replayed send")

    # A redelivered message after the send was recorded: nothing to do.
    replay()
    assert task_log.returned(SEND_NOTIFICATION) == [True, False]
    # A worker that died after the payout was made but before the send was recorded: the retry goes to the
    # backend again, with the same idempotency key, and gets the payout made the first time.
    Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.GENERATED, provider_ref="")
    replay()
    assert task_log.returned(SEND_NOTIFICATION) == [True, False, True]
    assert list(Payout.objects.values_list("pk", flat=True)) == [payout.pk]
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.provider_ref == f"ledger:{payout.pk}"
    assert delivery.send_attempts == 2
