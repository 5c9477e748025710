"""Send limits are counted when the change is saved, atomically per recipient, by what identifies it."""

import json
import threading

import pytest
from django.db import connection, connections

from deferred_confirmation.django_integration.models import DeferredAction, SendRecord
from deferred_confirmation.pipeline import limits
from deferred_confirmation.pipeline.channels import get_channel
from tests.testapp.forms import ProfileEmailForm
from tests.testapp.models import Profile


@pytest.fixture
def one_send(settings):
    settings.DEFERRED_CONFIRMATION = {**settings.DEFERRED_CONFIRMATION,
                                      "CHANNELS": {"email": {"SEND_LIMIT": 1}}}


def _form(n: int, email: str = "limited@example.org") -> ProfileEmailForm:
    return ProfileEmailForm({"email": email}, instance=Profile.objects.create(email=f"p{n}@example.org"))


def test_a_save_counts_at_once_even_before_any_worker_ran(db, one_send):
    first = _form(1)
    assert first.is_valid()
    first.save()  # no worker, no eager: generate_token has not run
    assert SendRecord.objects.count() == 1
    second = _form(2)
    assert not second.is_valid()
    assert "Too many" in second.non_field_errors()[0]


def test_names_do_not_make_a_fresh_allowance(settings):
    settings.DEFERRED_CONFIRMATION = {**settings.DEFERRED_CONFIRMATION, "CHANNELS": {"email": {}}}
    channel = get_channel("email")
    account = {"holder": "Ada Lovelace", "iban": "DE89370400440532013000", "country": "DE"}
    variants = [{**account, "holder": name} for name in ("Ada", "ADA.", "  ada  lovelace ")]
    identities = {channel.limit_identity(json.dumps(v)) for v in [account, *variants]}
    assert len(identities) == 1
    assert channel.limit_identity(json.dumps({**account, "iban": "GB82WEST12345698765432"})) not in identities
    assert channel.limit_identity("Bob@Example.org ") == channel.limit_identity("bob@example.org")


def test_spellings_of_one_inbox_or_one_phone_share_its_allowance(settings):
    """Plus-addresses reach one inbox and a number written with spaces, dashes or 00 reaches one phone: each
    spelling must not start a fresh allowance (mail bombing, SMS pumping of one victim)."""
    settings.DEFERRED_CONFIRMATION = {**settings.DEFERRED_CONFIRMATION, "CHANNELS": {
        "email": {}, "sms": {"OPTIONS": {"ACCOUNT_SID": "AC" + "0" * 32, "AUTH_TOKEN": "t", "FROM": "+15005550006"}}}}
    email, sms = get_channel("email"), get_channel("sms")
    assert len({email.limit_identity(v) for v in ("victim@example.org", "Victim+1@Example.org",
                                                  "victim+bomb@example.org ")}) == 1
    assert email.limit_identity("other@example.org") != email.limit_identity("victim@example.org")
    assert len({sms.limit_identity(v) for v in ("+44 7700 900123", "+447700900123", "0044-7700-900-123",
                                                "+44 (7700) 900 123")}) == 1
    assert sms.limit_identity("+447700900124") != sms.limit_identity("+447700900123")


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="parallel writers: PostgreSQL")
def test_parallel_saves_to_one_recipient_cannot_all_pass_the_limit(one_send):
    forms = [_form(n) for n in range(6)]
    for form in forms:
        assert form.is_valid()
    barrier = threading.Barrier(len(forms))
    outcomes = []

    def save(form):
        barrier.wait()
        try:
            form.save()
            outcomes.append("saved")
        except limits.SendLimitExceeded:
            outcomes.append("refused")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=save, args=(form,)) for form in forms]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["refused"] * 5 + ["saved"]
    assert DeferredAction.objects.count() == 1 and SendRecord.objects.count() == 1


def test_recipients_are_locked_in_one_order_whatever_the_route(db):
    """Two saves (or resends) for the same email and phone, one routed email-then-sms and the other
    sms-then-email, take the recipients' locks in the same order: neither can deadlock the other."""
    pairs = [("email", "same@example.org"), ("sms", "+15005550006"), ("letter", '{"line1": "1 Main St"}')]
    orders = {tuple(limits.lock_order(p)) for p in (pairs, pairs[::-1], [pairs[1], pairs[0], pairs[2]])}
    assert len(orders) == 1
    assert sorted(next(iter(orders))) == sorted(pairs)
