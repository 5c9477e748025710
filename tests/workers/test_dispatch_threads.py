"""Dispatch from a thread that did not create the Celery app (a threaded web server's request thread).

Celery's ``current_app`` is per thread; in such a thread it is Celery's unconfigured fallback app whenever
another app became the default first.  Dispatch must still publish through the configured app.
"""

import threading

import pytest
from celery import Celery, _state
from django.core import mail
from django.db import connection

from deferred_confirmation import pipeline
from tests.conftest import link_token
from tests.workers.conftest import stage_change


@pytest.mark.django_db(transaction=True)
def test_a_confirm_in_another_thread_is_applied_through_the_configured_app(eager):
    profile, _action = stage_change("thread-old@example.org", "thread-new@example.org")
    token = link_token(mail.outbox[-1])
    stray = Celery("stray", broker="memory://", set_as_current=False)  # an app that is not ours
    saved = _state.default_app
    _state.set_default_app(stray)
    results = []

    def request_thread():
        try:
            results.append(pipeline.confirm(token).status)
        finally:
            connection.close()

    try:
        thread = threading.Thread(target=request_thread)
        thread.start()
        thread.join(30)
    finally:
        _state.set_default_app(saved)

    assert results == ["confirmed"]
    profile.refresh_from_db()
    assert profile.email == "thread-new@example.org"  # applied in place (eager): our app was used
