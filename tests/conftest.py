"""Shared fixtures: the real Redis broker, eager mode, an in-process Celery worker, mail helpers.

Area-specific fixtures live in each area's own conftest.py (tests/forms, tests/web, tests/workers).
"""

from __future__ import annotations

import email
import email.policy
import re

import pytest
import redis
from django.conf import settings
from django.core import mail

from deferred_confirmation import workers

LINK_RE = re.compile(r"/confirm/([A-Za-z0-9_-]{43})/")


def link_token(message: mail.EmailMessage | str) -> str:
    """The raw token in a confirmation mail (text body or the whole message as a string)."""
    text = message if isinstance(message, str) else message.body
    if isinstance(message, str) and message.startswith(("MIME-Version:", "Content-Type:")):
        # A whole message as a server received it: Django 6 may send the body quoted-printable, so decode it.
        parsed = email.message_from_string(message, policy=email.policy.default)
        text = parsed.get_body(("plain",)).get_content()
    found = LINK_RE.search(text)
    assert found, f"no confirmation link in: {text[:500]}"
    return found.group(1)


def own(client, action) -> None:
    """Make ``client`` belong to ``action`` as a real site's visitor would: signed in as its user, or (an
    anonymous action) holding the browser session that saved it."""
    from deferred_confirmation.django_integration import ownership

    if action.user_id is not None:
        client.force_login(action.user)
        return
    session = client.session
    session[ownership.SAVED_KEY] = [*session.get(ownership.SAVED_KEY, []), str(action.pk)]
    session.save()


@pytest.fixture(scope="session", autouse=True)
def _clean_broker():
    """The tests' Redis database starts empty: no message of an earlier run is delivered to this one."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.flushdb()
    yield
    client.flushdb()


@pytest.fixture
def eager(settings):
    """Tasks run in place when enqueued (after commit), errors propagate."""
    conf = workers.app.conf
    saved = conf.task_always_eager, conf.task_eager_propagates
    conf.task_always_eager = conf.task_eager_propagates = True
    settings.CELERY_TASK_ALWAYS_EAGER = True
    yield
    conf.task_always_eager, conf.task_eager_propagates = saved


@pytest.fixture
def celery_worker_inprocess(transactional_db):
    """A real Celery worker (thread pool) in this process, consuming every queue from the real Redis."""
    from celery.contrib.testing.worker import start_worker
    from kombu import Queue

    from deferred_confirmation.pipeline.conf import app_settings

    app = workers.app
    app.conf.task_always_eager = False
    for name in app_settings.queues():  # channels configured by this test's settings, too
        app.amqp.queues.select_add(Queue(name))
    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False, loglevel="WARNING",
                      shutdown_timeout=10) as worker:
        yield worker


@pytest.fixture
def no_resend_cooldown(settings):
    """Resends allowed at once (the default RESEND_COOLDOWN is 60 s): for tests about what a resend does."""
    conf = dict(settings.DEFERRED_CONFIRMATION)
    conf["CHANNELS"] = {name: {**options, "RESEND_COOLDOWN": None}
                        for name, options in conf.get("CHANNELS", {"email": {}}).items()}
    settings.DEFERRED_CONFIRMATION = conf


@pytest.fixture(autouse=True)
def _fresh_throttle():
    """Each test starts with no failed attempts counted against the test client (the throttle's cache)."""
    from django.core.cache import caches

    caches["default"].clear()
    yield
