"""Migration 0006 on a database filled at the previous migration state: bank accounts stored in clear by earlier
versions (on deliveries and payouts) end up sealed, with only their last 4 digits in clear, while the sender and
the operator's export still read the full account; other recipients are left as they are.

The database is migrated back to 0005, rows are written with the historical models, then migrated forward (and
once back and forth again, the reverse opening the sealed copies); it ends at the latest migration."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from deferred_confirmation.django_integration.models import Delivery, Payout
from deferred_confirmation.pipeline import crypto
from deferred_confirmation.pipeline.payouts.ledger import seal_amounts
from tests.web.test_secrets_audit import dump_database

APP = "confirmation"
BEFORE = [(APP, "0005_security_fields")]
def latest() -> list[tuple[str, str]]:
    """Every migration, through 0006 (the later ones leave recipients and payouts alone): the state the
    current models read."""
    return MigrationExecutor(connection).loader.graph.leaf_nodes()

IBAN_ACCOUNT = {"holder": "Ada Lovelace", "iban": "DE89370400440532013000", "country": "DE"}
US_ACCOUNT = {"holder": "Grace Hopper", "routing_number": "111000025", "account_number": "98765432101",
              "country": "US"}
ADDRESS = {"name": "Erika Mustermann", "line1": "Heidestraße 17", "city": "Köln", "postal_code": "51147",
           "country": "DE"}
NUMBERS = ["DE89370400440532013000", "0532013000", "98765432101", "111000025"]


def as_text(value: dict) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def migrate(targets: list[tuple[str, str]]):
    """Migrate to ``targets``; the historical apps of that state."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return MigrationExecutor(connection).loader.project_state(targets).apps


@pytest.fixture
def at_0005(transactional_db):
    """The database at migration 0005 for the test; back at the latest migrations afterwards."""
    apps = migrate(BEFORE)
    yield apps
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def fill(apps) -> dict[str, int]:
    """Rows as an earlier version wrote them: bank accounts in clear."""
    DeferredAction = apps.get_model(APP, "DeferredAction")
    Delivery = apps.get_model(APP, "Delivery")
    Payout = apps.get_model(APP, "Payout")
    now = timezone.now()
    action = DeferredAction.objects.create(form_class="tests.channels.microdeposit.forms.BankAccountForm",
                                           valid_until=now + timedelta(days=3))
    other = DeferredAction.objects.create(form_class="tests.testapp.forms.ProfileEmailForm",
                                          valid_until=now + timedelta(days=3))
    bank = Delivery.objects.create(action=action, channel="microdeposit", recipient=as_text(IBAN_ACCOUNT),
                                   status="sent")
    # A bank account under another channel name, found by its keys.
    us = Delivery.objects.create(action=other, channel="bank", recipient=as_text(US_ACCOUNT), status="sent")
    email = Delivery.objects.create(action=other, channel="email", recipient="carol@example.org")
    letter = Delivery.objects.create(action=other, channel="letter", recipient=as_text(ADDRESS))
    key = f"dc-{action.pk}-{bank.pk}-0"
    payout = Payout.objects.create(delivery=bank, idempotency_key=key, account=as_text(IBAN_ACCOUNT),
                                   amounts_sealed=seal_amounts(key, (7, 45)))
    us_key = f"dc-{other.pk}-{us.pk}-0"
    us_payout = Payout.objects.create(delivery=us, idempotency_key=us_key, account=as_text(US_ACCOUNT),
                                      amounts_sealed=seal_amounts(us_key, (8, 9)))
    return {"bank": bank.pk, "us": us.pk, "email": email.pk, "letter": letter.pk, "payout": payout.pk,
            "us_payout": us_payout.pk}


def in_clear() -> list[str]:
    dump = dump_database()
    return [number for number in NUMBERS if number in dump]


@pytest.mark.django_db(transaction=True)
def test_bank_accounts_in_clear_are_sealed_and_masked_by_the_migration(at_0005):
    ids = fill(at_0005)
    assert in_clear() == NUMBERS  # the control: the previous version's rows hold them

    migrate(latest())

    assert in_clear() == []
    bank, us = Delivery.objects.get(pk=ids["bank"]), Delivery.objects.get(pk=ids["us"])
    assert json.loads(bank.recipient) == {"holder": "Ada Lovelace", "iban": "••••3000", "country": "DE"}
    assert json.loads(us.recipient) == {"holder": "Grace Hopper", "routing_number": "••••0025",
                                        "account_number": "••••2101", "country": "US"}
    assert json.loads(bank.recipient_value) == IBAN_ACCOUNT  # what the sender pays into
    assert json.loads(us.recipient_value) == US_ACCOUNT
    # Other recipients stay as they were.
    email, letter = Delivery.objects.get(pk=ids["email"]), Delivery.objects.get(pk=ids["letter"])
    assert (email.recipient, email.recipient_sealed) == ("carol@example.org", "")
    assert (json.loads(letter.recipient), letter.recipient_sealed) == (ADDRESS, "")

    payout = Payout.objects.get(pk=ids["payout"])
    assert payout.account == bank.recipient and payout.account_sealed
    assert json.loads(payout.account_value) == IBAN_ACCOUNT

    # The operator's export still pays the full accounts.
    out = io.StringIO()
    call_command("export_payouts", "--json", "--dry-run", stdout=out, stderr=io.StringIO())
    rows = {row["payout_id"]: row for row in json.loads(out.getvalue())}
    assert rows[ids["payout"]]["account"] == IBAN_ACCOUNT and rows[ids["payout"]]["amounts"] == [7, 45]
    assert rows[ids["us_payout"]]["account"] == US_ACCOUNT

    # Back to 0005: the reverse opens the sealed copies; forward again seals them again (once).
    migrate(BEFORE)
    assert in_clear() == NUMBERS
    assert Delivery.objects.filter(recipient_sealed="").count() == 4
    migrate(latest())
    assert in_clear() == []
    sealed = Delivery.objects.get(pk=ids["bank"]).recipient_sealed
    assert json.loads(crypto.open_sealed("recipient", sealed)) == IBAN_ACCOUNT


@pytest.mark.django_db(transaction=True)
def test_rows_already_sealed_are_left_alone(at_0005):
    ids = fill(at_0005)
    Delivery_ = at_0005.get_model(APP, "Delivery")
    sealed = crypto.seal("recipient", as_text(IBAN_ACCOUNT))
    Delivery_.objects.filter(pk=ids["bank"]).update(recipient="masked elsewhere", recipient_sealed=sealed)

    migrate(latest())

    bank = Delivery.objects.get(pk=ids["bank"])
    assert (bank.recipient, bank.recipient_sealed) == ("masked elsewhere", sealed)
