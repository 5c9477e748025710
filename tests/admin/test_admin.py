"""The admin, through the Django test client as an operator uses it: filters and search, the detail page with
recipients masked and form data redacted, the three actions and their permission, deliveries and payouts."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from deferred_confirmation.django_integration.models import DeferredAction, Delivery, Payout, mask_recipient
from deferred_confirmation.pipeline import formdata
from deferred_confirmation.pipeline.payouts.ledger import open_amounts
from deferred_confirmation.pipeline.redaction import REDACTED, redact_contacts, redacted_form_data
from deferred_confirmation.pipeline.states import State
from tests.admin.conftest import overdue, save_change, unique_email
from tests.admin.forms import NicknameIsSensitiveForm, ProfileSecretsForm
from tests.channels.microdeposit.forms import BankAccountForm
from tests.testapp.models import Profile

CHANGELIST = "admin:confirmation_deferredaction_changelist"
PASSWORD = "Tr0ub4dor&3-horse-staple"
IBAN_TYPED = "GB29 NWBK 6016 1331 9268 19"
IBAN = IBAN_TYPED.replace(" ", "")


def changelist(client, **params):
    response = client.get(reverse(CHANGELIST), params)
    assert response.status_code == 200, response.content[:500]
    return {a.pk for a in response.context["cl"].result_list}


def detail(client, action) -> str:
    response = client.get(reverse("admin:confirmation_deferredaction_change", args=[action.pk]))
    assert response.status_code == 200
    return response.content.decode()


def run_action(client, name, actions, capture=None):
    data = {"action": name, "_selected_action": [str(a.pk) for a in actions], "index": 0}
    if capture is None:
        response = client.post(reverse(CHANGELIST), data, follow=True)
    else:
        with capture(execute=True):
            response = client.post(reverse(CHANGELIST), data, follow=True)
    assert response.status_code == 200
    return [str(m) for m in response.context["messages"]]


def state(action) -> str:
    return DeferredAction.objects.get(pk=action.pk).state


# --- the list -----------------------------------------------------------------------------------------------
def test_changelist_loads_with_each_filter_and_search(admin_client, stage_sent, settings):
    alice = User.objects.create_user("alice-admin", email="alice.admin@example.org")
    bob = User.objects.create_user("bob-admin", email="bob.admin@example.net")
    mine = stage_sent(user=alice)
    theirs = stage_sent(user=bob)
    late = save_change(user=bob)  # pending, and past its time
    overdue([late])
    gone = save_change()
    DeferredAction.objects.filter(pk=gone.pk).update(state=State.CANCELLED)
    everyone = {mine.pk, theirs.pk, late.pk, gone.pk}

    assert changelist(admin_client) == everyone
    assert changelist(admin_client, state="notified") == {mine.pk, theirs.pk}
    assert changelist(admin_client, state="cancelled") == {gone.pk}
    assert changelist(admin_client, deliveries__channel="email") == everyone
    assert changelist(admin_client, deliveries__channel="sms") == set()
    # The date filters' own links ("Today", ...) carry aware datetimes.
    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    tomorrow = today + timedelta(days=1)
    assert changelist(admin_client, created_at__gte=str(today), created_at__lt=str(tomorrow)) == everyone
    assert changelist(admin_client, created_at__gte=str(tomorrow)) == set()
    assert changelist(admin_client, valid_until__lt=str(tomorrow)) == {late.pk}
    assert changelist(admin_client, created_at__year=today.year) == everyone  # date hierarchy
    # Overdue: open but past valid_until (not yet swept by expire).
    assert changelist(admin_client, overdue="yes") == {late.pk}
    assert changelist(admin_client, overdue="no") == everyone - {late.pk}

    # Search: the exact id, with or without dashes, upper case too; the user's name or email.
    assert changelist(admin_client, q=str(mine.pk)) == {mine.pk}
    assert changelist(admin_client, q=str(mine.pk).upper()) == {mine.pk}
    assert changelist(admin_client, q=mine.pk.hex) == {mine.pk}
    assert changelist(admin_client, q=f" {mine.pk} ") == {mine.pk}
    assert changelist(admin_client, q=str(mine.pk)[:8]) == set()  # exact only
    assert changelist(admin_client, q="alice-admin") == {mine.pk}
    assert changelist(admin_client, q="bob.admin@example.net") == {theirs.pk, late.pk}
    assert changelist(admin_client, q="example.net") == {theirs.pk, late.pk}
    assert changelist(admin_client, q="nobody-at-all") == set()


def test_changelist_shows_recipients_masked(admin_client, stage_sent):
    address = unique_email("listed")
    stage_sent(data={"email": address})
    response = admin_client.get(reverse(CHANGELIST))
    content = response.content.decode()
    assert address not in content
    assert mask_recipient(address) in content


# --- the detail page ----------------------------------------------------------------------------------------
def test_detail_shows_masked_recipient_and_redacted_form_data_and_never_a_secret(admin_client, stage_sent):
    address = unique_email("detail")
    action = stage_sent(ProfileSecretsForm, {"email": address, "nickname": "harmless-nick",
                                             "bank_iban": IBAN_TYPED, "password": PASSWORD},
                        description=f"Change your email address to {address}")
    delivery = action.deliveries.get()
    assert delivery.secret_digest
    sealed = action.form_data["password"][0][formdata.SEALED]
    assert action.form_data["bank_iban"] == [IBAN_TYPED]  # the form did not mark it sensitive: stored as typed

    content = detail(admin_client, action)

    assert mask_recipient(address) in content
    assert "harmless-nick" in content  # what is not sensitive stays readable
    assert content.count(REDACTED) >= 2  # the password and the IBAN
    for secret in (address, delivery.secret_digest, sealed, formdata.SEALED, PASSWORD, IBAN_TYPED, IBAN,
                   IBAN_TYPED.lower()):
        assert secret not in content, secret
    # The description (the page's title and breadcrumbs) has the address masked too.
    assert f"Change your email address to {mask_recipient(address)}" in content
    # Provider status of the delivery.
    assert "sent" in content


def test_form_sensitive_fields_are_redacted_even_when_stored_unsealed(admin_client, db):
    action = save_change(NicknameIsSensitiveForm, {"email": unique_email("legacy"), "nickname": "x"})
    # A row written before `nickname` was declared sensitive: the value is there in clear.
    DeferredAction.objects.filter(pk=action.pk).update(
        form_data={"email": [action.deliveries.get().recipient], "nickname": ["plain-old-secret"],
                   "account_holder_pin": ["0000"], "note": ["call me at +1 202 555 0188"]})
    content = detail(admin_client, action)
    assert "plain-old-secret" not in content and "0000" not in content
    assert "202 555 0188" not in content and "2025550188" not in content
    assert action.deliveries.get().recipient not in content


def test_redaction_rules(db):
    action = save_change(ProfileSecretsForm, {"email": "carol@example.org", "nickname": "n", "password": "pw",
                                              "bank_iban": ""}, instance=Profile.objects.create(email="c@x.org"))
    action.form_data.update({
        "card_number": ["4111 1111 1111 1111"], "routing": ["111000025"], "api_token": ["t"], "my_secret": ["s"],
        "user_password2": ["p"], "nested": [{"inner": {formdata.SEALED: "gAAAA-ciphertext"}}],
        "nul": [{formdata.NUL_SAFE: "YQBi"}], "when": ["2025-01-31"], "count": [3],
    })
    shown = dict(redacted_form_data(action))
    for key in ("password", "bank_iban", "card_number", "routing", "api_token", "my_secret", "user_password2",
                "nested"):
        assert shown[key] == REDACTED, key
    assert shown["email"] == mask_recipient("carol@example.org")
    assert shown["nickname"] == "n"
    assert shown["nul"] == "a\ufffdb"
    assert shown["when"] == "2025-01-31"
    assert shown["count"] == "3"
    assert redact_contacts("to bob@example.org, +44 7700 900123, IBAN DE89 3704 0044 0532 0130 00 on 2025-01-31") == \
        "to b***@example.org, +44***23, IBAN DE8***00 on 2025-01-31"


# --- actions ------------------------------------------------------------------------------------------------
def test_resend_action_sends_new_secrets_and_reports_refusals(admin_client, stage_sent,
                                                               django_capture_on_commit_callbacks, settings):
    first, second = stage_sent(), stage_sent()
    finished = stage_sent()
    DeferredAction.objects.filter(pk=finished.pk).update(state=State.APPLIED)

    # Just sent: the resend cooldown refuses, with its message; the finished one is not open.
    sent = len(mail.outbox)
    found = run_action(admin_client, "resend_secrets", [first, finished], django_capture_on_commit_callbacks)
    assert len(mail.outbox) == sent
    assert len(found) == 1
    assert found[0].startswith("Not resent: 2 of 2: ")
    assert "1 refused (cooldown): A new secret was sent moments ago." in found[0]
    assert f"1 no longer open (applied) [{str(finished.pk)[:8]}]" in found[0]
    assert first.deliveries.get().generation == 0

    conf = dict(settings.DEFERRED_CONFIRMATION)
    conf["CHANNELS"] = {"email": {"RESEND_COOLDOWN": None}}
    settings.DEFERRED_CONFIRMATION = conf
    found = run_action(admin_client, "resend_secrets", [first, second, finished], django_capture_on_commit_callbacks)
    assert found[0] == "Resent 2 of 3 selected actions."
    assert "Not resent: 1 of 3: 1 no longer open (applied)" in found[1]
    assert len(mail.outbox) == sent + 2  # new secrets, sent through the workers' tasks (eager)
    assert first.deliveries.get().generation == second.deliveries.get().generation == 1
    assert state(first) == state(second) == State.NOTIFIED


def test_cancel_and_expire_now_actions_change_the_state_and_say_why_not(admin_client, stage_sent):
    one, two, three = stage_sent(), stage_sent(), stage_sent()

    found = run_action(admin_client, "cancel_actions", [one])
    assert found == ["Cancelled 1 of 1 selected action."]
    assert state(one) == State.CANCELLED
    assert set(one.deliveries.values_list("status", flat=True)) == {"superseded"}

    found = run_action(admin_client, "expire_now", [one, two, three])
    assert found[0] == "Expired 2 of 3 selected actions."
    assert found[1] == f"Not expired: 1 of 3: 1 no longer open (cancelled) [{str(one.pk)[:8]}]"
    assert (state(one), state(two), state(three)) == (State.CANCELLED, State.EXPIRED, State.EXPIRED)

    found = run_action(admin_client, "cancel_actions", [two])
    assert found == [f"Not cancelled: 1 of 1: 1 no longer open (expired) [{str(two.pk)[:8]}]"]


@pytest.mark.parametrize("name", ["resend_secrets", "cancel_actions", "expire_now"])
def test_actions_are_refused_without_the_change_permission(staff_client, stage_sent, name, no_resend_cooldown):
    action = stage_sent()
    client = staff_client()  # view permission only
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    assert action.pk in {a.pk for a in response.context["cl"].result_list}
    assert name not in response.content.decode()  # not offered

    sent = len(mail.outbox)
    run_action(client, name, [action])
    assert state(action) == State.NOTIFIED
    assert action.deliveries.get().generation == 0 and len(mail.outbox) == sent


def test_actions_work_with_the_change_permission_alone(staff_client, stage_sent):
    action = stage_sent()
    client = staff_client("change_deferredaction")
    assert "cancel_actions" in client.get(reverse(CHANGELIST)).content.decode()
    assert run_action(client, "cancel_actions", [action]) == ["Cancelled 1 of 1 selected action."]
    assert state(action) == State.CANCELLED


def test_nothing_can_be_edited_added_or_deleted(admin_client, stage_sent):
    action = stage_sent()
    url = reverse("admin:confirmation_deferredaction_change", args=[action.pk])
    assert admin_client.post(url, {"state": "applied"}).status_code == 403
    assert admin_client.get(reverse("admin:confirmation_deferredaction_add")).status_code == 403
    assert admin_client.get(reverse("admin:confirmation_deferredaction_delete", args=[action.pk])).status_code \
        == 403
    assert "delete_selected" not in admin_client.get(reverse(CHANGELIST)).content.decode()
    assert state(action) == State.NOTIFIED


# --- deliveries and payouts ---------------------------------------------------------------------------------
@pytest.fixture
def microdeposit_channel(settings):
    settings.DEFERRED_CONFIRMATION = {**settings.DEFERRED_CONFIRMATION,
                                      "CHANNELS": {"email": {}, "microdeposit": {}}}


def _amount_texts(amounts):
    return [f"0.{cents:02d}" for cents in amounts]


def _shows_amount(content: str, text: str) -> bool:
    return re.search(rf"(?<![\d.]){re.escape(text)}(?!\d)", content) is not None


@pytest.mark.parametrize("account", [
    {"bank_holder": "Ada Lovelace", "bank_iban": "DE89 3704 0044 0532 0130 00"},
    {"bank_holder": "Grace Hopper", "bank_routing_number": "111000025", "bank_account_number": "987654321"},
], ids=["iban", "us"])
def test_delivery_and_payout_pages_never_show_amounts_or_account_numbers(admin_client, stage_sent,
                                                                         microdeposit_channel, account):
    action = stage_sent(BankAccountForm, dict(account))
    delivery = action.deliveries.get()
    [payout] = Payout.objects.filter(delivery=delivery)
    amounts = open_amounts(payout)
    numbers = [v for k, v in account.items() if k != "bank_holder"]
    numbers += [v.replace(" ", "") for v in numbers] + [account["bank_holder"]]
    numbers += [str(v) for v in json.loads(delivery.recipient_value).values() if len(str(v)) > 2]

    pages = {
        "deliveries": reverse("admin:confirmation_delivery_changelist"),
        "deliveries (filtered)":
            reverse("admin:confirmation_delivery_changelist") + "?channel=microdeposit&status=sent",
        "delivery": reverse("admin:confirmation_delivery_change", args=[delivery.pk]),
        "payouts": reverse("admin:confirmation_payout_changelist"),
        "payouts (filtered)": reverse("admin:confirmation_payout_changelist") + "?status=initiated",
        "payout": reverse("admin:confirmation_payout_change", args=[payout.pk]),
        "action": reverse("admin:confirmation_deferredaction_change", args=[action.pk]),
    }
    for page, url in pages.items():
        response = admin_client.get(url)
        assert response.status_code == 200, page
        content = response.content.decode()
        assert delivery.masked_recipient in content or page.startswith("payout"), page
        for number in numbers:
            assert number not in content, (page, number)
        for text in _amount_texts(amounts):
            assert not _shows_amount(content, text), (page, text)
        for secret in (payout.amounts_sealed, delivery.secret_digest, formdata.SEALED):
            assert secret not in content, page
    payouts = admin_client.get(pages["payouts"]).content.decode()
    assert mask_recipient(payout.account) in payouts
    assert str(action.pk) in payouts


def test_delivery_list_filters_by_channel_and_status(admin_client, stage_sent):
    sent = stage_sent()
    waiting = save_change()
    url = reverse("admin:confirmation_delivery_changelist")

    def listed(**params):
        response = admin_client.get(url, params)
        assert response.status_code == 200
        return {d.action_id for d in response.context["cl"].result_list}

    assert listed() == {sent.pk, waiting.pk}
    assert listed(channel="email") == {sent.pk, waiting.pk}
    assert listed(status="sent") == {sent.pk}
    assert listed(status="queued") == {waiting.pk}
    assert listed(q=str(sent.pk)) == {sent.pk}  # the action's id
    provider_ref = Delivery.objects.get(action=sent).provider_ref
    assert listed(q=provider_ref) == {sent.pk}
    assert Delivery.objects.get(action=waiting).recipient not in admin_client.get(url).content.decode()
