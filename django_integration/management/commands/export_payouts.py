"""``manage.py export_payouts``: the micro-deposits the ledger payout backend recorded, with their amounts.

Prints every payout still to be made (status ``initiated``), as CSV (default) or ``--json``, with the two
amounts and the full bank account opened (both are stored sealed; rows written before accounts were sealed
are printed as stored), then marks them ``exported`` so the next run does not print them again (``--dry-run``
leaves them as they are).  This is the only place the amounts and the account numbers are readable: feed the
output to the bank's batch-payment upload, then keep it as safe as the bank details in it.

Payouts that can no longer confirm anything (their action ended, or a resend replaced their amounts) are
not printed but marked ``failed``, so nobody pays deposits that would only confuse the account owner.

Options: ``--json``, ``--dry-run``, ``--action <uuid>`` (only that action's payouts), ``--include-exported``
(print exported ones again, e.g. after a lost file; they are not marked twice).
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from deferred_confirmation.django_integration.models import Payout
from deferred_confirmation.pipeline import crypto
from deferred_confirmation.pipeline.payouts.ledger import open_amounts
from deferred_confirmation.pipeline.states import DeliveryStatus

BASE_COLUMNS = ["payout_id", "reference", "action_id", "created_at", "currency", "amount_1", "amount_2"]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # spreadsheet formula injection


def decimal_text(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def is_live(payout: Payout) -> bool:
    """Could these amounts still confirm their action?  (Same delivery generation, action still open.)"""
    delivery = payout.delivery
    if delivery is None or delivery.idempotency_key != payout.idempotency_key:
        return False
    return delivery.action.is_open and delivery.status not in (DeliveryStatus.FAILED, DeliveryStatus.SUPERSEDED)


class Command(BaseCommand):
    help = ("Print the micro-deposits to pay (CSV, or --json) with their amounts, and mark them exported "
            "(--dry-run: only print).")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", help="print a JSON list instead of CSV")
        parser.add_argument("--dry-run", action="store_true", help="print only; mark nothing")
        parser.add_argument("--action", help="only the payouts of this action (its UUID)")
        parser.add_argument("--include-exported", action="store_true",
                            help="also print payouts exported before (their status does not change)")

    def handle(self, *args: Any, **options: Any) -> None:
        statuses = [Payout.Status.INITIATED]
        if options["include_exported"]:
            statuses.append(Payout.Status.EXPORTED)
        payouts = Payout.objects.filter(status__in=statuses)
        if options["action"]:
            try:
                action_id = uuid.UUID(options["action"])
            except ValueError:
                raise CommandError(f"--action: {options['action']!r} is not an action id (a UUID)") from None
            payouts = payouts.filter(delivery__action_id=action_id)
        now = timezone.now()
        with transaction.atomic():
            rows, printed, dead, unreadable = [], [], [], []
            locked = payouts.select_for_update(of=("self",)).select_related("delivery__action")
            for payout in locked.order_by("created_at", "pk"):
                if payout.status == Payout.Status.INITIATED and not is_live(payout):
                    dead.append(payout.pk)
                    continue
                try:
                    amounts, account = open_amounts(payout), payout.account_value
                except crypto.InvalidToken:
                    unreadable.append(payout.pk)
                    continue
                rows.append(self.row(payout, amounts, account))
                printed.append(payout)
            self.stdout.write(self.as_json(rows) if options["json"] else self.as_csv(rows), ending="")
            if not options["dry_run"]:
                Payout.objects.filter(pk__in=[p.pk for p in printed if p.status == Payout.Status.INITIATED]
                                      ).update(status=Payout.Status.EXPORTED, exported_at=now)
                Payout.objects.filter(pk__in=dead).update(status=Payout.Status.FAILED)
        verb = "would skip" if options["dry_run"] else "skipped"
        if dead:
            self.stderr.write(f"{verb} {len(dead)} payout(s) whose amounts can no longer confirm anything "
                              f"(action ended or amounts resent){'' if options['dry_run'] else '; marked failed'}")
        if unreadable:
            raise CommandError(f"{len(unreadable)} payout(s) could not be opened with this SECRET_KEY or its "
                               f"fallbacks and were left as they are: ids {unreadable}")

    @staticmethod
    def row(payout: Payout, amounts: tuple[int, int], account_text: str) -> dict[str, Any]:
        try:
            account = json.loads(account_text)
        except ValueError:
            account = {"raw": account_text}
        return {
            "payout_id": payout.pk,
            "reference": payout.idempotency_key,
            "action_id": str(payout.delivery.action_id) if payout.delivery else None,
            "created_at": payout.created_at.isoformat(),
            "currency": payout.currency,
            "amounts": list(amounts),
            "account": account if isinstance(account, dict) else {"raw": account},
        }

    @staticmethod
    def as_json(rows: list[dict[str, Any]]) -> str:
        for row in rows:
            row["amounts_decimal"] = [decimal_text(c) for c in row["amounts"]]
        return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"

    @staticmethod
    def as_csv(rows: list[dict[str, Any]]) -> str:
        account_keys = sorted({key for row in rows for key in row["account"]})
        columns = BASE_COLUMNS + [key if key not in BASE_COLUMNS else f"account_{key}" for key in account_keys]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            first, second = row["amounts"]
            values = [row["payout_id"], row["reference"], row["action_id"] or "", row["created_at"],
                      row["currency"], decimal_text(first), decimal_text(second)]
            values += [row["account"].get(key, "") for key in account_keys]
            writer.writerow([_cell(v) for v in values])
        return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        text = ""
    elif isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text
