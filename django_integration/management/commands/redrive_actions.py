"""``manage.py redrive_actions``: queue again the actions stuck in ``pending`` or ``confirmed`` for longer than
``REDRIVE_AFTER`` (what the beat task ``confirmation.redrive`` does every 5 minutes).  ``--dry-run`` counts
them and enqueues nothing."""

from __future__ import annotations

from deferred_confirmation.django_integration.management.commands._sweep import SweepCommand


class Command(SweepCommand):
    help = "Queue again actions stuck in pending/confirmed longer than REDRIVE_AFTER (--dry-run: only count them)."
    sweep = "redrive"
    touches = "stuck_actions"
    verbs = ("redrove", "would redrive")
