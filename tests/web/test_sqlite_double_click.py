"""A double-clicked Confirm on SQLite in its default (deferred) transaction mode: no 500, one confirmation."""

import threading
from collections import Counter

import pytest
from django.core import checks, mail
from django.db import connection, connections

from deferred_confirmation import pipeline
from tests.conftest import link_token
from tests.testapp.forms import ProfileEmailForm
from tests.testapp.models import Profile

pytestmark = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's locking only")


@pytest.mark.django_db(transaction=True)
def test_simultaneous_confirms_in_deferred_mode_give_one_confirmation_and_no_error(eager):
    options = connection.settings_dict.setdefault("OPTIONS", {})
    saved = options.get("transaction_mode")
    options["transaction_mode"] = "DEFERRED"  # new connections (the threads') use Django's default mode
    try:
        outcomes = []
        for round_ in range(5):
            profile = Profile.objects.create(email=f"dc{round_}@example.org")
            form = ProfileEmailForm({"email": f"dc{round_}-new@example.org"}, instance=profile)
            assert form.is_valid()
            form.save()
            token = link_token(mail.outbox[-1])
            barrier = threading.Barrier(2)
            results = []

            def click(token=token, barrier=barrier, results=results):
                barrier.wait()
                try:
                    results.append(pipeline.confirm(token).status)
                except Exception as exc:  # a 500 in a view
                    results.append(type(exc).__name__)
                finally:
                    connections.close_all()

            threads = [threading.Thread(target=click) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            outcomes.append(Counter(results))
    finally:
        if saved is None:
            options.pop("transaction_mode", None)
        else:
            options["transaction_mode"] = saved
    assert all(outcome == {"confirmed": 1, "already_used": 1} for outcome in outcomes), outcomes


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_sqlite_without_immediate_transactions_is_warned_about(settings):
    settings.DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "x.sqlite3"}}
    ids = [m.id for m in checks.run_checks() if m.id.startswith("confirmation.")]
    assert "confirmation.W001" in ids
