"""``manage.py expire_actions``: mark open actions past their ``valid_until`` expired now (what the beat task
``confirmation.expire_stale`` does every minute).  ``--dry-run`` counts them and changes nothing."""

from __future__ import annotations

from deferred_confirmation.django_integration.management.commands._sweep import SweepCommand


class Command(SweepCommand):
    help = "Mark open actions past their valid_until expired (--dry-run: only count them)."
    sweep = "expire"
    touches = "stale_actions"
    verbs = ("expired", "would expire")
