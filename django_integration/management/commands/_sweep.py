"""What ``expire_actions``, ``purge_actions`` and ``redrive_actions`` share: run one of the periodic sweeps of
:mod:`deferred_confirmation.pipeline.lifecycle.maintenance` now, or with ``--dry-run`` only count what it would touch
(through the same queryset the sweep uses), with a progress line on stderr and ``--json`` for scripts.

Not a command itself (the leading underscore keeps Django from listing it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count, QuerySet
from django.utils import timezone

from deferred_confirmation.pipeline.conf import app_settings
from deferred_confirmation.pipeline.lifecycle import maintenance

SAMPLE_SIZE = 20  # ids listed by a dry run


class Progress:
    """``\\rexpired 1500/12000`` on stderr, rewritten after each batch; a newline at the end."""

    def __init__(self, stream: Any, verb: str, total: int) -> None:
        self.stream, self.verb, self.total = stream, verb, total
        self.open_line = False

    def __call__(self, done: int) -> None:
        total = max(self.total, done)  # rows that turned up during the run
        percent = f" ({100 * done // total}%)" if total else ""
        # At 100% the line ends at once, so the sweep's own log line (often on stderr too) starts on a new one.
        ending = "\n" if done >= total else ""
        self.stream.write(f"\r{self.verb} {done}/{total}{percent}", style_func=str, ending=ending)
        self.stream.flush()
        self.open_line = not ending

    def finish(self) -> None:
        if self.open_line:
            self.stream.write("", style_func=str)
            self.open_line = False


class SweepCommand(BaseCommand):
    #: the sweep: a function of :mod:`~deferred_confirmation.pipeline.lifecycle.maintenance` (the log line's
    #: ``event``, the JSON's ``sweep``)
    sweep = ""
    #: the maintenance function giving the queryset the sweep itself uses
    touches = ""
    #: past tense and conditional, for the report: ("expired", "would expire")
    verbs = ("", "")
    #: what it touches, for the report
    noun = "actions"

    @property
    def done_verb(self) -> str:
        return self.verbs[0]

    @property
    def dry_verb(self) -> str:
        return self.verbs[1]

    def candidates(self, now) -> QuerySet:
        return getattr(maintenance, self.touches)(now)

    def run(self, now, batch_size: int | None, progress: Callable[[int], None] | None) -> int:
        return getattr(maintenance, self.sweep)(now=now, batch_size=batch_size, progress=progress)

    def more(self, now) -> dict[str, Any]:
        """More for the report, counted before the run (e.g. purge's orphaned payouts)."""
        return {}

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true",
                            help="only report what would be done; change nothing, enqueue nothing")
        parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        parser.add_argument("--progress", action="store_true",
                            help="show progress on stderr (the default when stderr is a terminal)")
        parser.add_argument("--batch-size", type=int, default=None,
                            help=f"rows per transaction (default: BATCH_SIZE, {app_settings.BATCH_SIZE})")

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size = options["batch_size"]
        if batch_size is not None and batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        now = timezone.now()
        started = time.monotonic()
        candidates = self.candidates(now)
        report: dict[str, Any] = {"sweep": self.sweep, "dry_run": options["dry_run"], "now": now.isoformat(),
                                  **self.more(now)}
        if options["dry_run"]:
            by_state = dict(candidates.order_by().values_list("state").annotate(n=Count("pk")))
            report["count"] = sum(by_state.values())
            report["by_state"] = dict(sorted(by_state.items()))
            report["sample_ids"] = [str(pk) for pk in
                                    candidates.order_by("created_at", "pk").values_list("pk", flat=True)[:SAMPLE_SIZE]]
        else:
            bar = None
            if options["progress"] or self.stderr.isatty():
                bar = Progress(self.stderr, self.done_verb, candidates.count())
            try:
                report["count"] = self.run(now, batch_size, bar)
            finally:
                if bar is not None:
                    bar.finish()
        report["duration_ms"] = round((time.monotonic() - started) * 1000)
        if options["json"]:
            self.stdout.write(json.dumps(report, sort_keys=True))
        else:
            self.stdout.write(self.describe(report))

    def describe(self, report: dict[str, Any]) -> str:
        count = report["count"]
        if not report["dry_run"]:
            return f"{self.done_verb} {count} {self.noun} in {report['duration_ms']} ms"
        lines = [f"{self.dry_verb} {count} {self.noun} (dry run: nothing changed)"]
        if report["by_state"]:
            lines.append("  by state: " + ", ".join(f"{state} {n}" for state, n in report["by_state"].items()))
        if report["sample_ids"]:
            more = f" (first {SAMPLE_SIZE})" if count > SAMPLE_SIZE else ""
            lines.append(f"  ids{more}: " + ", ".join(report["sample_ids"]))
        return "\n".join(lines)
