"""MicroDepositChannel's secrets, the ledger payout backend (idempotent, sealed) and the operator's export_payouts."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from types import SimpleNamespace

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from deferred_confirmation import pipeline
from deferred_confirmation.django_integration.models import Payout
from deferred_confirmation.pipeline import crypto
from deferred_confirmation.pipeline.channels import PermanentChannelError, get_channel
from deferred_confirmation.pipeline.channels.microdeposit import MicroDepositChannel, random_pair
from deferred_confirmation.pipeline.payouts import load_backend
from deferred_confirmation.pipeline.payouts.ledger import LedgerPayoutBackend, open_amounts, seal_amounts
from deferred_confirmation.pipeline.states import State
from tests.channels.microdeposit.conftest import (
    US_ACCOUNT,
    delivery_of,
    export,
    exported_amounts,
)

ACCOUNT = {"holder": "Ada Lovelace", "iban": "DE89370400440532013000", "country": "DE"}


# --- secrets ------------------------------------------------------------------------------------------------
def test_the_secret_is_two_different_amounts_of_1_to_99_cents_as_canonical_text():
    channel = get_channel("microdeposit")
    assert isinstance(channel, MicroDepositChannel)
    assert (channel.secret_kind, channel.max_attempts) == ("amounts", 3)
    secrets = [channel.make_secret() for _ in range(3000)]
    pairs = [tuple(int(c) for c in s.split(",")) for s in secrets]
    assert all(s == f"{a},{b}" and 1 <= a < b <= 99 for s, (a, b) in zip(secrets, pairs, strict=True))
    seen = Counter(c for pair in pairs for c in pair)
    assert set(seen) == set(range(1, 100))  # every amount can come up, the ends too
    assert len(set(pairs)) > 1500  # of 4851 possible pairs


def test_random_pairs_are_never_equal():
    assert all(a != b for a, b in (random_pair() for _ in range(5000)))


@pytest.mark.parametrize(("raw", "canonical"), [
    ((32, 45), "32,45"), ((45, 32), "32,45"), ([5, 50], "5,50"), (("0.32", "45"), "32,45"),
    ("0.32, 0.45", "32,45"), ("0.45, 0.32", "32,45"), ("45,32", "32,45"), ("$0.05 / $0.50", "5,50"),
    ("0.32 0.45", "32,45"), ("32;45", "32,45"),
    ((32, 32), None), ("0.32, 0.32", None), ((0, 45), None), ((100, 45), None), ("1e3, 5", None),
    ("３２, 45", None), (None, None), (32, None), ("32", None), ((True, 45), None), ("3\x002, 45", None),
])
def test_normalize_accepts_cents_and_text_in_any_order(raw, canonical):
    assert get_channel("microdeposit").normalize(raw) == canonical


def test_digest_and_matches_are_order_and_format_blind():
    channel = get_channel("microdeposit")
    delivery = SimpleNamespace(pk=7)
    delivery.secret_digest = channel.digest(delivery, "32,45")
    for typed in [(45, 32), "0.32, 0.45", ("45", "0.32"), "$0.45 / 32"]:
        assert channel.matches(delivery, typed)
    for typed in [(32, 46), "0.32", None, "32,45,1", (32, 32)]:
        assert not channel.matches(delivery, typed)
    assert not channel.matches(SimpleNamespace(pk=8, secret_digest=delivery.secret_digest), (32, 45))


# --- the ledger backend --------------------------------------------------------------------------------------
def test_the_default_payout_backend_is_the_ledger():
    assert isinstance(get_channel("microdeposit").payout_backend(), LedgerPayoutBackend)
    assert load_backend({"CURRENCY": "EUR"}).currency == "EUR"


@pytest.mark.django_db
def test_the_ledger_makes_one_sealed_payout_per_idempotency_key():
    backend = load_backend({})
    ref = backend.initiate(ACCOUNT, (7, 45), "dc-1-0")
    assert backend.initiate(ACCOUNT, (7, 45), "dc-1-0") == ref
    [payout] = Payout.objects.all()
    assert ref == f"ledger:{payout.pk}"
    assert (payout.idempotency_key, payout.currency, payout.status) == ("dc-1-0", "USD", "initiated")
    assert json.loads(payout.account_value) == ACCOUNT
    assert payout.account_sealed.startswith("gAAAAA")
    assert payout.amounts_sealed.startswith("gAAAAA")  # a Fernet token, nothing readable
    assert open_amounts(payout) == (7, 45)
    assert backend.status(ref) == "initiated"
    assert backend.status("ledger:999999") == backend.status("ledger:" + "9" * 40) == backend.status("x") == "unknown"


@pytest.mark.django_db
def test_sealed_amounts_only_open_on_their_own_row_and_with_the_sites_keys():
    backend = load_backend({})
    first = Payout.objects.get(pk=backend.initiate(ACCOUNT, (7, 45), "dc-1-0").split(":")[1])
    second = Payout.objects.get(pk=backend.initiate(ACCOUNT, (8, 9), "dc-2-0").split(":")[1])
    second.amounts_sealed = first.amounts_sealed  # copied from another row: refused
    with pytest.raises(crypto.InvalidToken):
        open_amounts(second)
    with override_settings(SECRET_KEY="another-key-" * 5, SECRET_KEY_FALLBACKS=[]), \
            pytest.raises(crypto.InvalidToken):
        open_amounts(first)
    old_key = seal_amounts("dc-1-0", (7, 45))
    with override_settings(SECRET_KEY="rotated-key-" * 5, SECRET_KEY_FALLBACKS=["tests-secret-key-0123456789"
                                                                                 "abcdefghijklmnopqrstuvwxyz"]):
        first.amounts_sealed = old_key
        assert open_amounts(first) == (7, 45)  # sealed before a key rotation


@pytest.mark.django_db
@pytest.mark.parametrize(("account", "amounts"), [
    ({}, (7, 45)), ("DE89370400440532013000", (7, 45)), (ACCOUNT, (7, 7)), (ACCOUNT, (0, 45)),
    (ACCOUNT, (7,)), (ACCOUNT, "7,45"), (ACCOUNT, (True, 45)),
])
def test_the_ledger_refuses_what_is_not_an_account_or_two_amounts(account, amounts):
    with pytest.raises(PermanentChannelError):
        load_backend({}).initiate(account, amounts, "dc-1-0")
    assert not Payout.objects.exists()


@pytest.mark.django_db
def test_a_recipient_that_is_not_an_account_fails_permanently():
    channel = get_channel("microdeposit")
    for recipient in ["ada@example.org", "[1, 2]", "{}", "{"]:
        with pytest.raises(PermanentChannelError, match="not a bank account"):
            channel.send(delivery=SimpleNamespace(recipient_value=recipient, idempotency_key="dc-1-0", pk=1),
                         action=None, secret="7,45")
    assert not Payout.objects.exists()


# --- export_payouts ------------------------------------------------------------------------------------------
def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_export_prints_csv_with_the_amounts_and_marks_the_payouts_exported(stage_eager):
    _profile, iban_action = stage_eager()
    _profile, us_action = stage_eager({**US_ACCOUNT, "bank_holder": "=HYPERLINK(\"http://evil\")"})
    iban_payout, us_payout = Payout.objects.order_by("pk")

    dry = export("--dry-run")
    assert export("--dry-run") == dry  # nothing marked
    rows = rows_of(dry)
    assert [r["reference"] for r in rows] == [iban_payout.idempotency_key, us_payout.idempotency_key]
    assert list(rows[0]) == ["payout_id", "reference", "action_id", "created_at", "currency", "amount_1",
                             "amount_2", "account_number", "country", "holder", "iban", "routing_number"]
    for row, payout, action in ((rows[0], iban_payout, iban_action), (rows[1], us_payout, us_action)):
        a, b = open_amounts(payout)
        assert (row["amount_1"], row["amount_2"]) == (f"0.{a:02d}", f"0.{b:02d}")
        assert (row["payout_id"], row["action_id"], row["currency"]) == (str(payout.pk), str(action.pk), "USD")
    assert (rows[0]["iban"], rows[0]["holder"], rows[0]["routing_number"]) == (
        "DE89370400440532013000", "Ada Lovelace", "")
    assert (rows[1]["routing_number"], rows[1]["account_number"]) == ("111000025", "12345678")
    assert rows[1]["holder"] == "'=HYPERLINK(\"http://evil\")"  # no formula for the spreadsheet to run
    assert set(Payout.objects.values_list("status", flat=True)) == {"initiated"}

    assert export() == dry
    assert set(Payout.objects.values_list("status", flat=True)) == {"exported"}
    assert all(p.exported_at is not None for p in Payout.objects.all())
    assert rows_of(export()) == []  # paid once
    again = rows_of(export("--include-exported"))
    assert [r["reference"] for r in again] == [r["reference"] for r in rows]


def test_export_json_and_a_single_action(stage_eager):
    _profile, action = stage_eager()
    _profile, other = stage_eager(US_ACCOUNT)
    [row] = json.loads(export("--json", "--dry-run", "--action", str(action.pk)))
    payout = Payout.objects.get(delivery__action=action)
    assert row["amounts"] == list(open_amounts(payout))
    assert row["amounts_decimal"] == [f"0.{c:02d}" for c in row["amounts"]]
    assert row["account"] == ACCOUNT
    assert (row["reference"], row["action_id"], row["currency"]) == (payout.idempotency_key, str(action.pk), "USD")
    assert exported_amounts(action) == tuple(row["amounts"])
    assert Payout.objects.get(delivery__action=other).status == "initiated"
    with pytest.raises(CommandError, match="not an action id"):
        export("--action", "nope")


def test_payouts_that_can_no_longer_confirm_anything_are_not_exported(stage_eager, microdeposit_channel,
                                                                      django_capture_on_commit_callbacks):
    microdeposit_channel(RESEND_COOLDOWN=None)
    _profile, cancelled = stage_eager()
    _profile, resent = stage_eager(US_ACCOUNT)
    assert pipeline.cancel(cancelled)
    with django_capture_on_commit_callbacks(execute=True):
        assert pipeline.resend(resent).sent
    stale = Payout.objects.get(delivery__action=resent, idempotency_key__endswith="-0")
    fresh = Payout.objects.get(delivery__action=resent, idempotency_key__endswith="-1")

    err = io.StringIO()
    call_command("export_payouts", "--json", "--dry-run", stdout=io.StringIO(), stderr=err)
    assert "would skip 2 payout(s)" in err.getvalue()
    [row] = json.loads(export("--json"))
    assert (row["reference"], row["action_id"]) == (fresh.idempotency_key, str(resent.pk))
    statuses = dict(Payout.objects.values_list("pk", "status"))
    assert statuses == {Payout.objects.get(delivery__action=cancelled).pk: "failed", stale.pk: "failed",
                        fresh.pk: "exported"}
    assert delivery_of(cancelled).payouts.count() == 1
    assert Payout.objects.get(pk=stale.pk).status == "failed"
    assert cancelled.state == State.CANCELLED


def test_unreadable_payouts_are_reported_and_left_alone(stage_eager):
    stage_eager()
    Payout.objects.update(amounts_sealed="gAAAAAtampered")
    with pytest.raises(CommandError, match="could not be opened"):
        export()
    assert Payout.objects.get().status == "initiated"
