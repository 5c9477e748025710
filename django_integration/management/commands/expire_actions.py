"""``manage.py expire_actions``: mark open actions past their ``valid_until`` expired now (what the beat task
``confirmation.expire_stale`` does every minute).  ``--dry-run`` counts them and changes nothing."""

from __future__ import annotations

from deferred_confirmation.django_integration.management.commands._sweep import SweepCommand
from deferred_confirmation.pipeline.lifecycle import maintenance


class Command(SweepCommand):
    help = "Mark open actions past their valid_until expired (--dry-run: only count them)."
    sweep = "expire"
    done_verb = "expired"
    dry_verb = "would expire"

    def candidates(self, now):
        return maintenance.stale_actions(now)

    def run(self, now, batch_size, progress):
        return maintenance.expire(now=now, batch_size=batch_size, progress=progress)
