"""``manage.py purge_actions``: delete finished actions older than ``RETENTION``, with their deliveries, the
recipients in them and what their channels stored elsewhere (what the beat task ``confirmation.purge`` does
daily).  ``--dry-run`` counts them and deletes nothing."""

from __future__ import annotations

from deferred_confirmation.django_integration.management.commands._sweep import SweepCommand
from deferred_confirmation.pipeline.lifecycle import maintenance


class Command(SweepCommand):
    help = "Delete finished actions older than RETENTION, with their deliveries (--dry-run: only count them)."
    sweep = "purge"
    touches = "purgeable_actions"
    verbs = ("purged", "would purge")

    def more(self, now):
        return {"orphaned_payouts": maintenance.orphaned_payouts(now).count()}

    def describe(self, report):
        text = super().describe(report)
        if report["orphaned_payouts"]:
            verb = "would delete" if report["dry_run"] else "deleted"
            text += f"\n  and {verb} {report['orphaned_payouts']} payout(s) whose delivery was already gone"
        return text
