"""``manage.py confirmation_status``: how the pipeline is doing, for a person or (``--json``) a script.

- actions by state, deliveries by channel (and delivery status);
- the oldest action waiting in ``pending`` (since it was created) and in ``confirmed`` (since it was
  confirmed), with its age: an old one means no worker is taking that work;
- what the periodic sweeps would pick up now (overdue to expire, stuck to redrive, old enough to purge);
- the number of messages waiting in every configured queue, read from the broker (on Redis: the length of
  each queue's lists).  If the broker cannot be reached the queues are reported as unavailable; the
  command still prints the rest and exits 0.

``--json`` prints one object: ``{"now", "states": {state: n}, "channels": {channel: {"total": n, "statuses":
{status: n}}}, "oldest": {"pending": {"id", "since", "age_seconds"} | null, "confirmed": ... | null},
"due": {"expire": n, "redrive": n, "purge": n}, "broker": {"url", "available", "error"},
"queues": {queue: n | null}}``.  The broker URL is shown without its password.
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count, F
from django.utils import timezone

from deferred_confirmation.django_integration.models import DeferredAction, Delivery
from deferred_confirmation.pipeline import dispatch
from deferred_confirmation.pipeline.conf import app_settings
from deferred_confirmation.pipeline.lifecycle import maintenance
from deferred_confirmation.pipeline.states import State

BROKER_TIMEOUT = 3.0  # seconds; a status command must not hang on a broker that does not answer


def queue_names(app: Any) -> list[str]:
    """Every queue the app declares, and every queue this library sends to."""
    declared = [queue.name for queue in (app.conf.task_queues or [])]
    return list(dict.fromkeys([app.conf.task_default_queue or "celery", *declared, *app_settings.queues()]))


def broker_queue_lengths(app: Any, names: list[str], timeout: float = BROKER_TIMEOUT) -> dict[str, Any]:
    """``{"url", "available", "error", "queues": {name: n | None}}``; never raises.

    A passive ``queue_declare`` returns the message count without creating anything: on Redis kombu sums
    the LLEN of the queue's lists (one per priority step).  A queue the broker does not know is empty."""
    from kombu.exceptions import ChannelError

    result: dict[str, Any] = {"url": None, "available": False, "error": None, "queues": dict.fromkeys(names)}
    try:
        conn = app.connection_for_read(connect_timeout=timeout, transport_options={
            "socket_connect_timeout": timeout, "socket_timeout": timeout, "max_retries": 1})
        result["url"] = conn.as_uri()  # password masked
        with conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, interval_max=0,
                                   timeout=timeout)
            lengths = {}
            for name in names:
                channel = conn.channel()
                try:
                    lengths[name] = channel.queue_declare(queue=name, passive=True).message_count
                except ChannelError:  # not declared: nothing waiting (the channel may be closed now)
                    lengths[name] = 0
                finally:
                    _close(channel)
    except Exception as exc:  # a status report must survive any broker problem
        result["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        return result
    result["available"] = True
    result["queues"] = lengths
    return result


def _close(channel: Any) -> None:
    with contextlib.suppress(Exception):  # already closed by the broker after a refused passive declare
        channel.close()


def _oldest(state: str, since_field: str, now: datetime) -> dict[str, Any] | None:
    oldest = (DeferredAction.objects.filter(state=state)
              .order_by(F(since_field).asc(nulls_first=True), "created_at").first())
    if oldest is None:
        return None
    since = getattr(oldest, since_field) or oldest.created_at
    return {"id": str(oldest.pk), "since": since.isoformat(), "age_seconds": int((now - since).total_seconds())}


def collect(now: datetime, timeout: float = BROKER_TIMEOUT) -> dict[str, Any]:
    states = dict.fromkeys(State.values, 0)
    states.update(DeferredAction.objects.order_by().values_list("state").annotate(n=Count("pk")))
    channels: dict[str, dict[str, Any]] = {name: {"total": 0, "statuses": {}} for name in app_settings.CHANNELS}
    rows = Delivery.objects.order_by().values_list("channel", "status").annotate(n=Count("pk"))
    for channel, status, n in sorted(rows):
        entry = channels.setdefault(channel, {"total": 0, "statuses": {}})
        entry["total"] += n
        entry["statuses"][status] = n
    app = dispatch.celery_app()
    broker = broker_queue_lengths(app, queue_names(app), timeout)
    return {
        "now": now.isoformat(),
        "states": states,
        "channels": channels,
        "oldest": {State.PENDING.value: _oldest(State.PENDING, "created_at", now),
                   State.CONFIRMED.value: _oldest(State.CONFIRMED, "confirmed_at", now)},
        "due": {"expire": maintenance.stale_actions(now).count(),
                "redrive": maintenance.stuck_actions(now).count(),
                "purge": maintenance.purgeable_actions(now).count()},
        "broker": {key: broker[key] for key in ("url", "available", "error")},
        "queues": broker["queues"],
    }


def age_text(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


class Command(BaseCommand):
    help = ("Actions by state, deliveries by channel, the oldest waiting actions, and the length of every queue "
            "on the broker (--json for scripts).")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        parser.add_argument("--timeout", type=float, default=BROKER_TIMEOUT,
                            help=f"seconds to wait for the broker (default {BROKER_TIMEOUT:g})")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["timeout"] <= 0:
            raise CommandError("--timeout must be positive")
        status = collect(timezone.now(), options["timeout"])
        if options["json"]:
            self.stdout.write(json.dumps(status, sort_keys=True))
        else:
            self.stdout.write(self.describe(status))

    def describe(self, status: dict[str, Any]) -> str:
        lines = ["Actions by state:"]
        lines += [f"  {state:<10} {n:>8}" for state, n in status["states"].items()]
        lines.append("Deliveries by channel:")
        if not status["channels"]:
            lines.append("  (none)")
        for channel, entry in status["channels"].items():
            detail = ", ".join(f"{s} {n}" for s, n in entry["statuses"].items())
            lines.append(f"  {channel:<14} {entry['total']:>6}" + (f"  ({detail})" if detail else ""))
        lines.append("Oldest waiting:")
        redrive_after = app_settings.REDRIVE_AFTER
        for state, what in (("pending", "created"), ("confirmed", "confirmed")):
            oldest = status["oldest"][state]
            if oldest is None:
                lines.append(f"  {state:<10} none")
                continue
            hint = ""
            if timedelta(seconds=oldest["age_seconds"]) > redrive_after:
                hint = "  <- longer than REDRIVE_AFTER: is a worker consuming its queue?"
            lines.append(f"  {state:<10} {oldest['id']}, {what} {age_text(oldest['age_seconds'])} ago "
                         f"({oldest['since']}){hint}")
        due = status["due"]
        lines.append(f"Due now: {due['expire']} to expire, {due['redrive']} to redrive, {due['purge']} to purge")
        broker = status["broker"]
        if broker["available"]:
            lines.append(f"Queues ({broker['url']}):")
            lines += [f"  {name:<28} {n:>8}" for name, n in status["queues"].items()]
        else:
            lines.append(f"Queues: unavailable (broker {broker['url'] or '?'}: {broker['error']})")
        return "\n".join(lines)
