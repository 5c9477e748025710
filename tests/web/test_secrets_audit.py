"""The raw secret lives in the mail only: not in any database row, log record or task argument.

A full save -> mail -> confirm cycle runs with real commits, eager Celery, every logger at DEBUG and
every SQL statement logged, then every table is dumped and searched for the token.
"""

from __future__ import annotations

import logging

import pytest
from celery.signals import task_prerun
from django.apps import apps
from django.core import mail
from django.db import connection
from django.urls import reverse

from deferred_confirmation.django_integration.models import Delivery
from deferred_confirmation.pipeline import crypto, tokens
from deferred_confirmation.pipeline.lifecycle.delivery import SECRET_PURPOSE
from tests.conftest import link_token
from tests.testapp.forms import ProfileEmailForm
from tests.testapp.models import Profile


class Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        if any(seen is record for seen in self.records[-20:]):
            return  # attached to every logger: a propagated record arrives once per ancestor
        self.format(record)  # fills exc_text and message
        self.records.append(record)


@pytest.fixture
def all_logs(caplog):
    """Every record of every logger, at DEBUG, including loggers that do not propagate; SQL included."""
    caplog.set_level(logging.DEBUG)
    handler = Collect()
    saved = []
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    for logger in [logging.root, *loggers]:
        saved.append((logger, logger.level, logger.disabled))
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
        logger.addHandler(handler)
    forced = connection.force_debug_cursor
    connection.force_debug_cursor = True  # django.db.backends logs every query at DEBUG
    yield handler.records
    connection.force_debug_cursor = forced
    for logger, level, disabled in saved:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.disabled = disabled


@pytest.fixture
def task_args():
    """(task name, args, kwargs) of every task run, as the worker receives them."""
    seen: list[tuple[str, tuple, dict]] = []

    def record(sender=None, task=None, args=None, kwargs=None, **_):
        seen.append((task.name, tuple(args or ()), dict(kwargs or {})))

    task_prerun.connect(record, weak=False)
    yield seen
    task_prerun.disconnect(record)


def record_text(record: logging.LogRecord) -> str:
    parts = [record.getMessage(), repr(record.args), str(record.msg), record.exc_text or ""]
    parts += [repr(value) for value in vars(record).values()]
    return "\n".join(parts)


def dump_database() -> str:
    """Every value of every row of every table, as text (bytes both decoded and in hex)."""
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608 - introspected name
            for row in cursor.fetchall():
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        raw = bytes(value)
                        chunks += [raw.hex(), raw.decode("latin-1")]
                    else:
                        chunks.append(str(value))
    return "\n".join(chunks)


def dump_models() -> str:
    chunks = []
    for model in apps.get_models():
        for row in model._default_manager.values():
            chunks.append(repr(row))
    return "\n".join(chunks)


@pytest.mark.django_db(transaction=True)
def test_raw_token_is_never_stored_logged_or_passed_in_clear(eager, client, all_logs, task_args):
    profile = Profile.objects.create(email="audit-old@example.org")
    form = ProfileEmailForm({"email": "audit-new@example.org"}, instance=profile)
    assert form.is_valid()
    action = form.save(description="Audit")
    assert len(mail.outbox) == 1
    token = link_token(mail.outbox[0])
    url = reverse("confirmation:link", args=[token])

    assert client.get(url).status_code == 200
    response = client.post(url)
    assert response.status_code in (302, 303)
    status = client.get(response["Location"], HTTP_ACCEPT="application/json")
    assert status.json()["state"] == "applied"
    profile.refresh_from_db()
    assert profile.email == "audit-new@example.org"

    # Only the digest is stored.
    delivery = Delivery.objects.get(action=action)
    assert delivery.secret_digest == tokens.stored_link_digest(token)
    assert token not in delivery.secret_digest

    # Nowhere in the database.
    database = dump_database()
    assert delivery.secret_digest in database  # the dump really covers the deliveries table
    assert "audit-new@example.org" in database
    assert token not in database
    assert token not in dump_models()

    # Nowhere in the logs (which did see the SQL and the lifecycle).
    assert any(r.name == "django.db.backends" for r in all_logs)
    assert any(r.name.startswith("deferred_confirmation") for r in all_logs)
    leaks = [record_text(r)[:300] for r in all_logs if token in record_text(r)]
    assert leaks == []

    # The task that sends it got it sealed, not readable.
    sends = [args for name, args, _ in task_args if name == "confirmation.send_notification"]
    assert len(sends) == 1
    for name, args, kwargs in task_args:
        assert token not in repr(args) + repr(kwargs), name
    sealed = sends[0][2]
    assert crypto.open_sealed(SECRET_PURPOSE, sealed) == token
    assert {name for name, _, _ in task_args} >= {
        "confirmation.generate_token", "confirmation.send_notification", "confirmation.apply_action"}


@pytest.mark.django_db(transaction=True)
def test_refused_link_requests_do_not_log_the_token(eager, client, all_logs):
    """Django logs the path of 4xx responses and CSRF refusals; on the link view that path is the secret."""
    from django.test import Client

    profile = Profile.objects.create(email="audit2-old@example.org")
    form = ProfileEmailForm({"email": "audit2-new@example.org"}, instance=profile)
    assert form.is_valid()
    form.save()
    token = link_token(mail.outbox[0])
    url = reverse("confirmation:link", args=[token])
    # A browser that blocks cookies: the CSRF check fails while the token is still live.
    assert Client(enforce_csrf_checks=True).post(url).status_code == 403
    assert client.post(url).status_code in (302, 303)
    assert client.post(url).status_code == 409
    assert client.get(url).status_code == 409
    leaks = [record_text(r)[:300] for r in all_logs if token in record_text(r)]
    assert leaks == []
    # The refusals are still logged, with the token cut out.
    logged = [r.getMessage() for r in all_logs if r.name in ("django.request", "django.security.csrf")]
    assert "Forbidden (CSRF cookie not set.): /confirm/<token>/" in logged
    assert logged.count("Conflict: /confirm/<token>/") == 2


@pytest.mark.django_db
def test_redaction_is_limited_to_the_link_view(client, all_logs):
    import uuid

    missing = uuid.uuid4()
    assert client.get(reverse("confirmation:status", kwargs={"action_id": missing})).status_code == 404
    logged = [r for r in all_logs if r.name == "django.request"]
    assert [r.getMessage() for r in logged] == [f"Not Found: /confirm/status/{missing}/"]
    assert logged[0].request is not None
