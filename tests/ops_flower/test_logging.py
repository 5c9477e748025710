"""Structured logs: one line per lifecycle step with its fields, rendered as JSON by pipeline.logformat, and no
secret (link token, SMS code, sealed secret) nor full recipient in any record.

The tasks run eagerly, so a task's line comes before the line of the step that enqueued it (the enqueued
task runs when that step's transaction commits, inside it): the tests compare steps, not their order.

Records are searched whole (message, arguments, every attribute), with one exception for the sealed secret:
Celery's eager mode keeps a task's real arguments in its "succeeded" record's unrendered ``args`` (a worker
puts the message's ``argsrepr`` there, where it reads ``<sealed>``): for those records only what is
rendered, as text or as JSON, is searched.
"""

from __future__ import annotations

import json
import logging
from collections import Counter

import pytest
from django.core import mail
from django.urls import reverse

from deferred_confirmation import pipeline
from deferred_confirmation.django_integration.models import DeferredAction, Delivery
from deferred_confirmation.pipeline import lifecycle
from deferred_confirmation.pipeline.logformat import JsonFormatter
from deferred_confirmation.pipeline.states import State
from example.fakes.twilio import FakeTwilio
from tests.channels.sms.forms import ProfilePhoneForm
from tests.conftest import link_token, own
from tests.testapp.forms import ProfileEmailForm
from tests.testapp.models import Profile
from tests.web.test_secrets_audit import record_text

LIFECYCLE = "deferred_confirmation.lifecycle"
FIELDS = {"event", "outcome", "action_id", "duration_ms"}


def steps(records: list[logging.LogRecord]) -> list[dict]:
    """The lifecycle's lines, each as the JSON formatter renders it (which also proves it renders)."""
    formatter = JsonFormatter()
    return [json.loads(formatter.format(r)) for r in records if r.name == LIFECYCLE]


def by_event(lines: list[dict]) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for line in lines:
        found.setdefault(line["event"], []).append(line)
    return found


def sealed_secrets(task_args) -> list[str]:
    return [args[2] for name, args, _ in task_args if name == "confirmation.send_notification"]


def rendered(record: logging.LogRecord) -> str:
    return "\n".join([record.getMessage(), record.exc_text or "", JsonFormatter().format(record)])


def leaks(records: list[logging.LogRecord], secrets: list[str], *, sql: bool = True, sealed: bool = False
          ) -> list[str]:
    """Records holding one of ``secrets``; ``sql=False``: not searching the SQL debug log; ``sealed=True``: only
    the rendered text of Celery's eager trace records (see above)."""
    found = []
    for record in records:
        if not sql and record.name == "django.db.backends":
            continue
        text = rendered(record) if sealed and record.name == "celery.app.trace" else record_text(record)
        found += [f"{record.name}: {text[:200]}" for secret in secrets if secret in text]
    return found


@pytest.mark.django_db(transaction=True)
def test_an_email_confirmation_logs_one_line_per_step(eager, client, all_logs, task_args):
    profile = Profile.objects.create(email="steps-old@example.org")
    form = ProfileEmailForm({"email": "steps-new@example.org"}, instance=profile)
    assert form.is_valid()
    action = form.save()
    token = link_token(mail.outbox[0])
    url = reverse("confirmation:link", args=[token])
    assert client.post(url).status_code == 302
    assert client.post(url).status_code == 409  # used: refused
    assert DeferredAction.objects.get(pk=action.pk).state == State.APPLIED
    delivery = Delivery.objects.get(action=action)

    lines = steps(all_logs)
    assert Counter(line["event"] for line in lines) == {
        "stage": 1, "generate": 1, "deliver": 1, "confirm": 2, "apply": 1}
    for line in lines:
        assert set(line) >= FIELDS, line
        assert line["action_id"] == str(action.pk)
        assert line["level"] == "INFO" and line["logger"] == LIFECYCLE
        assert isinstance(line["duration_ms"], int) and line["duration_ms"] >= 0
    events = by_event(lines)
    [stage] = events["stage"]
    assert (stage["outcome"], stage["channel"], stage["to_state"]) == ("staged", "email", "pending")
    assert "from_state" not in stage
    [generate] = events["generate"]
    assert (generate["outcome"], generate["channel"], generate["delivery_id"], generate["generation"]) == (
        "generated", "email", delivery.pk, 0)
    assert "to_state" not in generate  # no state change
    [deliver] = events["deliver"]
    assert (deliver["outcome"], deliver["channel"], deliver["from_state"], deliver["to_state"]) == (
        "sent", "email", "pending", "notified")
    accepted, refused = events["confirm"]
    assert (accepted["outcome"], accepted["status"], accepted["channel"]) == ("accepted", "confirmed", "email")
    assert (accepted["from_state"], accepted["to_state"]) == ("notified", "confirmed")
    assert (refused["outcome"], refused["status"]) == ("refused", "already_used")
    assert "to_state" not in refused
    [apply] = events["apply"]
    assert (apply["outcome"], apply["from_state"], apply["to_state"]) == ("applied", "confirmed", "applied")
    assert accepted["message"] == f"confirm accepted (confirmed) action={action.pk} channel=email notified->confirmed"

    # No secret anywhere (SQL included), and no full recipient outside the SQL debug log.
    assert leaks(all_logs, [token]) == []
    assert len(sealed_secrets(task_args)) == 1
    assert leaks(all_logs, sealed_secrets(task_args), sealed=True) == []
    assert leaks(all_logs, ["steps-new@example.org"], sql=False) == []


@pytest.fixture
def fake_twilio(settings):
    with FakeTwilio() as fake:
        settings.DEFERRED_CONFIRMATION = {**settings.DEFERRED_CONFIRMATION, "CHANNELS": {
            "email": {}, "sms": {"RESEND_COOLDOWN": None, "OPTIONS": {
                "ACCOUNT_SID": fake.account_sid, "AUTH_TOKEN": fake.auth_token, "FROM": "+15005550006",
                "BASE_URL": fake.url, "TIMEOUT": 2}}}}
        yield fake


@pytest.mark.django_db(transaction=True)
def test_an_sms_confirmation_logs_its_steps_and_no_code_or_number(eager, client, fake_twilio, all_logs,
                                                                  task_args):
    phone = "+12025550187"
    profile = Profile.objects.create(email="sms-steps@example.org")
    form = ProfilePhoneForm({"phone": phone}, instance=profile)
    assert form.is_valid(), form.errors
    action = form.save()
    first = fake_twilio.messages[-1]["body"].split()[0]
    wrong = f"{(int(first) + 1) % 10 ** len(first):0{len(first)}d}"
    assert pipeline.confirm(wrong, action=action.pk).status == "invalid"
    assert pipeline.resend(action)
    second = fake_twilio.messages[-1]["body"].split()[0]
    assert second != first
    own(client, action)
    assert client.post(reverse("confirmation:code", args=[action.pk]), {"code": second}).status_code == 302
    assert DeferredAction.objects.get(pk=action.pk).state == State.APPLIED

    lines = steps(all_logs)
    assert Counter(line["event"] for line in lines) == {
        "stage": 1, "generate": 2, "deliver": 2, "confirm": 2, "resend": 1, "apply": 1}
    events = by_event(lines)
    assert all(line["action_id"] == str(action.pk) for line in lines)
    assert [(line["outcome"], line["status"]) for line in events["confirm"]] == [
        ("refused", "invalid"), ("accepted", "confirmed")]
    assert events["confirm"][0]["channel"] == "sms"
    assert [line["generation"] for line in events["deliver"]] == [0, 1]
    assert [line.get("to_state") for line in events["deliver"]] == ["notified", None]  # the resend: no change
    [resend] = events["resend"]
    assert (resend["outcome"], resend["channel"]) == ("resent", "sms")
    assert lifecycle.cancel(action) is False  # applied: nothing to cancel, logged at DEBUG only
    [cancel] = by_event(steps(all_logs))["cancel"]
    assert (cancel["outcome"], cancel["level"]) == ("skipped", "DEBUG")

    # No code or full number in any record but the SQL debug log (where a 6-digit code could match a
    # timestamp's microseconds by chance; it holds only digests of the codes anyway); no sealed secret.
    assert leaks(all_logs, [first, second, phone], sql=False) == []
    assert len(sealed_secrets(task_args)) == 2
    assert leaks(all_logs, sealed_secrets(task_args), sealed=True) == []


@pytest.mark.django_db(transaction=True)
def test_a_cancelled_action_logs_the_cancel_step(eager, all_logs):
    profile = Profile.objects.create(email="cancel-old@example.org")
    form = ProfileEmailForm({"email": "cancel-new@example.org"}, instance=profile)
    assert form.is_valid()
    action = form.save()
    assert lifecycle.cancel(action)
    [cancel] = by_event(steps(all_logs))["cancel"]
    assert (cancel["outcome"], cancel["from_state"], cancel["to_state"]) == ("cancelled", "notified", "cancelled")


def test_the_json_formatter_renders_the_librarys_plain_extras_and_only_named_ones_of_others():
    record = logging.LogRecord(LIFECYCLE, logging.WARNING, __file__, 1, "hello %s", ("world",), None)
    record.action_id = "a1"
    record.count = 3
    record.request = object()  # Django's request: its repr can hold a link token
    record.to_state = State.APPLIED
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "hello world" and line["level"] == "WARNING" and line["logger"] == LIFECYCLE
    assert (line["action_id"], line["count"], line["to_state"]) == ("a1", 3, "applied")
    assert "request" not in line and "args" not in line and "msg" not in line

    other = logging.LogRecord("celery.app.trace", logging.INFO, __file__, 1, "Task done", (), None)
    other.data = {"args": "('gAAAAA…',)", "id": "x"}
    other.status_code = 409
    assert set(json.loads(JsonFormatter().format(other))) == {"time", "level", "logger", "message"}
    assert json.loads(JsonFormatter(fields=["status_code"]).format(other))["status_code"] == 409
