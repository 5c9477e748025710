"""Bank details are sensitive: no table, log line or broker message of a bank-account change shows the account
number in clear.  The delivery and the payout keep it sealed, with a masked form (last 4) for display; the sender
and the operator's export open the sealed copy.

The audit saves a bank-account change, lets the real in-process worker (real Redis broker) make and send the
deposits, with every logger at DEBUG and every SQL statement logged, while recording every command the broker
received (MONITOR); then searches every row of every table, every log record, those broker commands and every
key left in the broker database (base64 bodies decoded) for the account number, compact and as typed.
"""

from __future__ import annotations

import json

import pytest
from django.conf import settings as django_settings
from django.core import mail
from django.urls import reverse

from deferred_confirmation.django_integration.forms import DeferredForm
from deferred_confirmation.django_integration.models import RECIPIENT_PURPOSE, Delivery, Payout, mask_account
from deferred_confirmation.pipeline import crypto
from deferred_confirmation.pipeline.dispatch import SEND_NOTIFICATION
from tests.channels.microdeposit.conftest import (
    IBAN_ACCOUNT,
    US_ACCOUNT,
    delivery_of,
    export,
    save_change,
    wait_for,
)
from tests.conftest import own
from tests.faults.test_secrets_audit import MonitorTap, database_rows, redis_values, with_decoded
from tests.testapp.models import Profile
from tests.web.test_secrets_audit import all_logs, dump_models, record_text  # noqa: F401 - all_logs: a fixture

IBAN = "DE89370400440532013000"


def needles(account: dict[str, str]) -> dict[str, set[str]]:
    """The account numbers of a form's input (IBAN or US account number), as typed, compact and grouped in
    fours as printed; an IBAN also by its national account number (the digits after the bank code)."""
    numbers = {key: value for key, value in account.items() if key in ("bank_iban", "bank_account_number")}
    found = {}
    for key, value in numbers.items():
        compact = "".join(value.split()).upper()
        forms_ = {value.upper(), compact, " ".join(compact[i:i + 4] for i in range(0, len(compact), 4))}
        if key == "bank_iban":
            forms_.add(compact[-10:])  # DE: 8 digits of bank code, then the 10-digit account number
        found[key] = forms_
    return found


def leaks_in(chunks: list[tuple[str, str]], account: dict[str, str]) -> list[str]:
    leaks = []
    for where, text in chunks:
        upper = text.upper()
        for key, forms_ in needles(account).items():
            hit = next((f for f in forms_ if f in upper), None)
            if hit is not None:
                index = upper.find(hit)
                leaks.append(f"{key} in {where}: ...{text[max(index - 100, 0):index + 100]}...")
    return leaks


# --- what is stored ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("account", "full", "masked"), [
    (IBAN_ACCOUNT, {"holder": "Ada Lovelace", "iban": IBAN, "country": "DE"},
     {"holder": "Ada Lovelace", "iban": "••••3000", "country": "DE"}),
    (US_ACCOUNT, {"holder": "Grace Hopper", "routing_number": "111000025", "account_number": "12345678",
                  "country": "US"},
     {"holder": "Grace Hopper", "routing_number": "••••0025", "account_number": "••••5678", "country": "US"}),
], ids=["iban", "us"])
def test_the_delivery_and_the_payout_keep_the_account_sealed_and_show_its_last_4(stage_eager, account, full,
                                                                                  masked):
    _profile, action = stage_eager(account)
    delivery = delivery_of(action)
    assert json.loads(delivery.recipient) == masked
    assert json.loads(crypto.open_sealed(RECIPIENT_PURPOSE, delivery.recipient_sealed)) == full
    assert json.loads(delivery.recipient_value) == full  # what the sender paid into

    [payout] = Payout.objects.filter(delivery=delivery)
    assert json.loads(payout.account) == masked
    assert json.loads(crypto.open_sealed(RECIPIENT_PURPOSE, payout.account_sealed)) == full

    # The operator's export still has the full account to pay.
    [row] = json.loads(export("--json", "--dry-run"))
    assert row["account"] == full


def test_the_admin_shows_the_last_4_never_the_account_number(stage_eager, admin_client):
    stage_eager()
    [payout] = Payout.objects.all()
    for url in (reverse("admin:confirmation_payout_changelist"),
                reverse("admin:confirmation_payout_change", args=[payout.pk])):
        content = admin_client.get(url).content.decode()
        assert "iban ••••3000" in content
        assert IBAN not in content and IBAN[-10:] not in content and payout.account_sealed not in content


def test_the_export_reads_payouts_written_before_accounts_were_sealed(stage_eager):
    stage_eager()
    full = Payout.objects.get().account_value
    Payout.objects.update(account=full, account_sealed="")  # a row as the ledger wrote it before
    [row] = json.loads(export("--json", "--dry-run"))
    assert row["account"] == json.loads(full)


class SensitiveEmailForm(DeferredForm):
    """A form whose recipient field is one of its sensitive fields: its recipient is stored sealed and masked
    whatever the channel."""

    recipient_field = "email"
    sensitive_fields = ("email",)

    class Meta:
        model = Profile
        fields = ["email"]


def test_a_recipient_taken_from_a_sensitive_field_is_sealed_on_any_channel(db, eager,
                                                                           django_capture_on_commit_callbacks):
    profile = Profile.objects.create(email="old-sealed@example.org")
    form = SensitiveEmailForm({"email": "hidden-recipient@example.org"}, instance=profile)
    assert form.is_valid(), form.errors
    with django_capture_on_commit_callbacks(execute=True):
        action = form.save()
    delivery = Delivery.objects.get(action=action, channel="email")
    assert delivery.recipient == "••••.org"
    assert delivery.recipient_value == "hidden-recipient@example.org"
    assert [m.to for m in mail.outbox] == [["hidden-recipient@example.org"]]  # sent to the full address
    assert "hidden-recipient" not in dump_models()


@pytest.mark.parametrize(("value", "masked"), [
    ('{"account_holder": "Ada", "bank_account": "0532013000", "bic": "COBADEFFXXX", "country": "DE"}',
     {"account_holder": "Ada", "bank_account": "••••3000", "bic": "COBADEFFXXX", "country": "DE"}),
    ('{"iban": "DE89 3704 0044 0532 0130 00", "nested": {"account_number": 12345678}, "sort_code": ""}',
     {"iban": "••••3000", "nested": {"account_number": "••••5678"}, "sort_code": ""}),
    ("DE89370400440532013000", "••••3000"),
    ("1234567", "••••"),  # too short to show any of it
    ("{not json", "••••json"),
])
def test_mask_account_keeps_only_the_last_4_of_each_number(value, masked):
    shown = mask_account(value)
    assert (json.loads(shown) if isinstance(masked, dict) else shown) == masked


def test_the_http_payout_backend_stores_no_account(http_backend, stage_eager):
    api = http_backend()
    stage_eager()
    [request] = api.requests
    assert request.body["account"]["iban"] == IBAN  # the payouts API gets the full account
    assert Payout.objects.count() == 0
    assert IBAN not in dump_models() and IBAN[-10:] not in dump_models()


# --- the audit ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("account", [IBAN_ACCOUNT, US_ACCOUNT], ids=["iban", "us"])
@pytest.mark.django_db(transaction=True)
def test_no_account_number_in_any_table_log_or_broker_message(account, worker, task_log, all_logs,  # noqa: F811
                                                              settings, client):
    settings.DEBUG = True  # the worker threads' database connections log their SQL too
    with MonitorTap(django_settings.CELERY_BROKER_URL) as tap:
        _profile, action = save_change(dict(account))
        wait_for(lambda: task_log.returned(SEND_NOTIFICATION).count(True) == 1, what="the deposits to be sent")
        own(client, action)
        status = client.get(reverse("confirmation:status", args=[action.pk]), HTTP_ACCEPT="application/json")
    delivery = delivery_of(action)
    [payout] = Payout.objects.filter(delivery=delivery)

    chunks: list[tuple[str, str]] = []
    chunks += database_rows()
    chunks += [("models", dump_models())]
    chunks += [(f"log {r.name}", record_text(r)) for r in all_logs]
    chunks += [("broker MONITOR", with_decoded(command)) for command in tap.commands]
    chunks += redis_values(django_settings.CELERY_BROKER_URL)
    chunks += [("status page", status.content.decode())]

    # The collection is real: it saw the delivery's and the payout's rows, the SQL, the tasks on the broker.
    everything = "\n".join(text for _, text in chunks)
    assert delivery.recipient_sealed in everything and payout.amounts_sealed in everything
    assert any(r.name == "django.db.backends" and "confirmation_payout" in r.getMessage() for r in all_logs)
    assert any(SEND_NOTIFICATION in text for where, text in chunks if where == "broker MONITOR")
    assert needles(account) and leaks_in([("control", json.dumps(account))], account)

    leaks = leaks_in(chunks, account)
    assert leaks == [], "\n".join(leaks[:10])

    # The deposits still go to the right account: the operator's export (the one place it is readable).
    [row] = json.loads(export("--json", "--dry-run"))
    expected = "".join(account.get("bank_iban", account.get("bank_account_number", "")).split()).upper()
    assert expected in json.dumps(row["account"])
