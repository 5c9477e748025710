"""The default payout backend: a ``Payout`` row per delivery generation, for the operator to pay.

Nothing leaves the site: ``initiate`` writes the account and the two amounts to the ``Payout`` table, and
the operator (or a cron job feeding the bank's batch-payment upload) runs ``manage.py export_payouts`` to
read them, as CSV or JSON, and mark them exported.  The amounts are the secret, so they are sealed with
:mod:`deferred_confirmation.pipeline.crypto` (bound to the payout's idempotency key, so a sealed value copied onto
another row does not open there): a database dump does not show them, only the export with the site's key does.  The
bank account is sensitive too: ``Payout.account`` holds it with its numbers masked (last 4, for the admin),
``Payout.account_sealed`` the full account sealed, opened by the export.

Idempotent: the payout's ``idempotency_key`` is unique, so a retried or replayed send task finds the row
it wrote before and never creates a second payout.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction

from deferred_confirmation.pipeline import crypto
from deferred_confirmation.pipeline.amounts import canonical, parse_pair
from deferred_confirmation.pipeline.payouts.base import PayoutBackend, checked_account, checked_amounts

if TYPE_CHECKING:
    from deferred_confirmation.django_integration.models import Delivery, Payout

AMOUNTS_PURPOSE = "payout-amounts"
REF_PREFIX = "ledger:"


def seal_amounts(idempotency_key: str, amounts: tuple[int, int]) -> str:
    return crypto.seal(AMOUNTS_PURPOSE, f"{idempotency_key}|{canonical(amounts)}")


def open_amounts(payout: Payout) -> tuple[int, int]:
    """The two amounts (cents, ascending) of ``payout``; raises ``crypto.InvalidToken`` if they cannot be read
    (sealed under a key no longer configured, tampered with, or moved from another row)."""
    plain = crypto.open_sealed(AMOUNTS_PURPOSE, payout.amounts_sealed)
    key, _, text = plain.rpartition("|")
    pair = parse_pair(text)
    if key != payout.idempotency_key or pair is None:
        raise crypto.InvalidToken
    return pair


class LedgerPayoutBackend(PayoutBackend):
    """OPTIONS: ``CURRENCY`` (default "USD")."""

    def initiate(self, account: dict[str, Any], amounts: tuple[int, int], idempotency_key: str, *,
                 delivery: Delivery | None = None) -> str:
        from deferred_confirmation.django_integration.models import Payout, seal_recipient

        account = checked_account(account)
        pair = checked_amounts(amounts)
        existing = Payout.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:  # a retry of a send whose first try got this far
            return self.reference(existing)
        masked, sealed = seal_recipient(json.dumps(account, sort_keys=True, ensure_ascii=False))
        try:
            with transaction.atomic():
                payout = Payout.objects.create(
                    delivery=delivery,
                    idempotency_key=idempotency_key,
                    account=masked,
                    account_sealed=sealed,
                    amounts_sealed=seal_amounts(idempotency_key, pair),
                    currency=self.currency,
                )
        except IntegrityError:  # the same send running twice at once: the other one wrote it
            payout = Payout.objects.get(idempotency_key=idempotency_key)
        return self.reference(payout)

    def status(self, provider_ref: str) -> str:
        from deferred_confirmation.django_integration.models import Payout

        pk = provider_ref.removeprefix(REF_PREFIX) if isinstance(provider_ref, str) else ""
        payout = Payout.objects.filter(pk=int(pk)).first() if pk.isascii() and pk.isdigit() and len(pk) < 19 else None
        return payout.status if payout is not None else "unknown"

    @staticmethod
    def reference(payout: Payout) -> str:
        return f"{REF_PREFIX}{payout.pk}"
