"""Bank accounts stored in clear before recipients were sealed: sealed now, with only a masked form left in clear.

Threat answered: a database dump (a backup, a read replica, a leaked snapshot) showing the IBAN or account
number of every micro-deposit recipient and payout.  Each delivery whose recipient is a bank account (the
``microdeposit`` channel, or a JSON recipient with an ``iban``, ``account_number`` or ``routing_number``) and
each payout without a sealed copy gets one (``deferred_confirmation.pipeline.crypto``, under the current SECRET_KEY), and its clear
value is replaced by the masked form (numbers to their last 4).  Reversing opens the sealed copies again.
"""

import json

from django.db import migrations

from deferred_confirmation.django_integration.models import RECIPIENT_PURPOSE, mask_account

ACCOUNT_KEYS = ("iban", "account_number", "routing_number")
BATCH = 500


def holds_bank_account(channel, recipient):
    if channel == "microdeposit":
        return True
    if not recipient.startswith("{"):
        return False
    try:
        data = json.loads(recipient)
    except ValueError:
        return False
    return isinstance(data, dict) and any(key in data for key in ACCOUNT_KEYS)


def seal_in_clear(apps, schema_editor):
    from deferred_confirmation.pipeline import crypto

    alias = schema_editor.connection.alias
    Delivery = apps.get_model("confirmation", "Delivery")
    Payout = apps.get_model("confirmation", "Payout")
    deliveries = Delivery.objects.using(alias).filter(recipient_sealed="").exclude(recipient="")
    for delivery in deliveries.only("pk", "channel", "recipient").iterator(chunk_size=BATCH):
        if holds_bank_account(delivery.channel, delivery.recipient):
            Delivery.objects.using(alias).filter(pk=delivery.pk).update(
                recipient=mask_account(delivery.recipient),
                recipient_sealed=crypto.seal(RECIPIENT_PURPOSE, delivery.recipient))
    payouts = Payout.objects.using(alias).filter(account_sealed="").exclude(account="")
    for payout in payouts.only("pk", "account").iterator(chunk_size=BATCH):
        Payout.objects.using(alias).filter(pk=payout.pk).update(
            account=mask_account(payout.account), account_sealed=crypto.seal(RECIPIENT_PURPOSE, payout.account))


def open_sealed(apps, schema_editor):
    """Back to the clear values, for a site going back to a version that reads only those; a copy that no
    longer opens (a key rotated away since) is left sealed."""
    from deferred_confirmation.pipeline import crypto

    alias = schema_editor.connection.alias
    for model, clear, sealed in (("Delivery", "recipient", "recipient_sealed"),
                                 ("Payout", "account", "account_sealed")):
        rows = apps.get_model("confirmation", model).objects.using(alias)
        for pk, value in rows.exclude(**{sealed: ""}).values_list("pk", sealed):
            try:
                plain = crypto.open_sealed(RECIPIENT_PURPOSE, value)
            except crypto.InvalidToken:
                continue
            rows.filter(pk=pk).update(**{clear: plain, sealed: ""})


class Migration(migrations.Migration):

    dependencies = [
        ("confirmation", "0005_security_fields"),
    ]

    operations = [
        migrations.RunPython(seal_in_clear, open_sealed, elidable=True),
    ]
