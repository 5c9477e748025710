"""Exactly once under real concurrency (PostgreSQL row locks): eight threads confirm one token at the same
moment and then apply; one wins, the others see "already_used", and the change is written once."""

import threading
from collections import Counter

import pytest
from django.core import mail
from django.db import connection

from deferred_confirmation import pipeline
from deferred_confirmation.pipeline import lifecycle
from deferred_confirmation.pipeline.states import State
from tests.conftest import link_token
from tests.testapp.models import Profile
from tests.workers.conftest import messages_lost, requires_postgres, stage_change

THREADS = 8
pytestmark = [pytest.mark.postgres, requires_postgres, pytest.mark.django_db(transaction=True)]


def _race(target):
    """Run ``target()`` in THREADS threads released at once; returns their results (errors re-raised)."""
    barrier = threading.Barrier(THREADS, timeout=30)
    results, errors = [], []

    def run():
        try:
            barrier.wait()
            results.append(target())
        except BaseException as exc:  # re-raised below, in the test thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    if errors:
        raise errors[0]
    return results


def _staged(address):
    profile, action = stage_change(f"race-old-{address}", f"race-new-{address}")
    [message] = [m for m in mail.outbox if m.to == [f"race-new-{address}"]]
    return profile, action, link_token(message)


def test_eight_simultaneous_confirms_then_applies_write_once(eager, signal_log):
    profile, action, token = _staged("a@example.org")

    def confirm_then_apply():
        return pipeline.confirm(token).status, lifecycle.apply(action.pk)

    with messages_lost():  # the winner's apply_action message is dropped: each thread applies itself
        results = _race(confirm_then_apply)

    statuses = Counter(status for status, _applied in results)
    assert statuses == {"confirmed": 1, "already_used": THREADS - 1}
    assert sum(applied for _status, applied in results) == 1
    profile.refresh_from_db()
    assert (profile.email, profile.nickname) == ("race-new-a@example.org", "+")
    assert signal_log.count("change_confirmed", action.pk) == 1
    action.refresh_from_db()
    assert action.state == State.APPLIED


def test_eight_simultaneous_confirms_with_eager_apply_write_once(eager, signal_log):
    profile, action, token = _staged("b@example.org")

    results = _race(lambda: pipeline.confirm(token).status)

    assert Counter(results) == {"confirmed": 1, "already_used": THREADS - 1}
    profile.refresh_from_db()
    assert (profile.email, profile.nickname) == ("race-new-b@example.org", "+")
    assert signal_log.count("change_confirmed", action.pk) == 1
    action.refresh_from_db()
    assert action.state == State.APPLIED
    # and eight racing applies afterwards find nothing to do
    assert _race(lambda: lifecycle.apply(action.pk)) == [False] * THREADS
    assert Profile.objects.get(pk=profile.pk).nickname == "+"
