"""Duplicates and races: each task delivered twice at once to a real worker, 50 simultaneous POSTs of one
link to a real HTTP server, confirm racing the expiry sweep at the edge of ``valid_until``, resend racing
confirm.  Each race runs several (bounded) rounds; the invariant is always "one effect": applied once, one
``change_confirmed``, one mail per generation, never both outcomes of a race.
"""

from __future__ import annotations

import http.client
import re
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from celery.signals import after_task_publish
from django.core import mail
from django.core.handlers.wsgi import WSGIHandler
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.db import connections
from django.utils import timezone

from deferred_confirmation import pipeline, workers
from deferred_confirmation.django_integration.models import DeferredAction, Delivery
from deferred_confirmation.pipeline import dispatch, lifecycle
from deferred_confirmation.pipeline.states import DeliveryStatus, State
from tests.conftest import link_token
from tests.testapp.models import Profile
from tests.workers import conftest as worker_fixtures
from tests.workers.conftest import stage_change, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]

# The worker tests' fixtures, used here too.
clean_queues = worker_fixtures.clean_queues
signal_log = worker_fixtures.signal_log
task_log = worker_fixtures.task_log
worker = worker_fixtures.worker


def _mails_to(address: str) -> list:
    return [m for m in mail.outbox if m.to == [address]]


def _threads(targets, timeout: float = 60.0) -> list:
    """Run each callable in its own thread (database connections closed after); their results, in order."""
    results: list = [None] * len(targets)
    errors: list = []

    def run(index, target):
        try:
            results[index] = target()
        except BaseException as exc:  # re-raised in the test thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, t)) for i, t in enumerate(targets)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.1, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    if errors:
        raise errors[0]
    return results


# --- the same task delivered twice ---------------------------------------------------------------------
@pytest.fixture
def twice():
    """``twice(*names)``: every message of those tasks published from now on (by the test or the worker) is
    published a second time at once, same task id and body: two copies in the queue, run side by side by
    the worker's two threads."""
    copies: Counter = Counter()
    lock = threading.Lock()
    names: set[str] = set()

    def receiver(sender=None, body=None, routing_key=None, headers=None, **kwargs):
        task_id = headers["id"]
        with lock:
            if sender not in names or copies[task_id]:
                return
            copies[task_id] += 1
        args, kwargs_, _embed = body
        workers.app.tasks[sender].apply_async(args, kwargs_, task_id=task_id, queue=routing_key)

    after_task_publish.connect(receiver, weak=False)
    yield lambda *chosen: names.update(chosen)
    after_task_publish.disconnect(receiver)


ACTIONS = 5


def _runs_per_message(task_log, name) -> set[int]:
    return set(Counter(task_id for n, _args, task_id in task_log.calls if n == name).values())


def test_generate_and_apply_delivered_twice_at_once_have_one_effect(worker, task_log, signal_log, twice):
    twice(dispatch.GENERATE_TOKEN, dispatch.APPLY_ACTION)
    staged = [stage_change(f"twin{i}-old@example.org", f"twin{i}-new@example.org") for i in range(ACTIONS)]
    wait_for(lambda: len(task_log.returned(dispatch.GENERATE_TOKEN)) == 2 * ACTIONS, timeout=30,
             what="both copies of every generate")
    wait_for(lambda: len(task_log.returned(dispatch.SEND_NOTIFICATION)) == ACTIONS, timeout=30, what="the sends")
    for i in range(ACTIONS):
        [message] = _mails_to(f"twin{i}-new@example.org")  # one secret, one mail
        assert pipeline.confirm(link_token(message)).status == "confirmed"
    wait_for(lambda: len(task_log.returned(dispatch.APPLY_ACTION)) == 2 * ACTIONS, timeout=30,
             what="both copies of every apply")

    assert Counter(task_log.returned(dispatch.GENERATE_TOKEN)) == {True: ACTIONS, False: ACTIONS}
    assert Counter(task_log.returned(dispatch.APPLY_ACTION)) == {True: ACTIONS, False: ACTIONS}
    assert _runs_per_message(task_log, dispatch.GENERATE_TOKEN) == {2}  # each message really ran twice
    assert _runs_per_message(task_log, dispatch.APPLY_ACTION) == {2}
    wait_for(lambda: signal_log.count("change_confirmed") == ACTIONS, what="change_confirmed")
    for i, (profile, action) in enumerate(staged):
        profile.refresh_from_db()
        assert (profile.email, profile.nickname) == (f"twin{i}-new@example.org", "+")
        assert signal_log.count("change_confirmed", action.pk) == 1
        assert DeferredAction.objects.get(pk=action.pk).state == State.APPLIED
    time.sleep(0.3)
    assert signal_log.count("change_confirmed") == ACTIONS
    assert len(mail.outbox) == ACTIONS


def test_send_delivered_twice_at_once_sends_one_mail(worker, task_log, signal_log, twice):
    twice(dispatch.SEND_NOTIFICATION)
    for i in range(ACTIONS):
        stage_change(f"sendtwin{i}-old@example.org", f"sendtwin{i}-new@example.org")
    wait_for(lambda: len(task_log.returned(dispatch.SEND_NOTIFICATION)) == 2 * ACTIONS, timeout=30,
             what="both copies of every send")
    assert _runs_per_message(task_log, dispatch.SEND_NOTIFICATION) == {2}
    assert Counter(task_log.returned(dispatch.SEND_NOTIFICATION)) == {True: ACTIONS, False: ACTIONS}
    assert signal_log.count("confirmation_required") == ACTIONS
    assert sorted(len(_mails_to(f"sendtwin{i}-new@example.org")) for i in range(ACTIONS)) == [1] * ACTIONS


# --- 50 simultaneous POSTs over real HTTP --------------------------------------------------------------
CLIENTS = 50
DB_SLOTS = 25  # requests using the database at once (PostgreSQL's 100 connections are shared with other runs)


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


class Server(ThreadedWSGIServer):
    request_queue_size = 128  # all 50 clients connect at once


@pytest.fixture
def http_server(transactional_db):
    """The test project served by a threaded WSGI server on 127.0.0.1 (a thread of this process, sharing
    the test database); yields its port."""
    slots = threading.BoundedSemaphore(DB_SLOTS)
    django_app = WSGIHandler()

    def app(environ, start_response):
        with slots:
            return list(django_app(environ, start_response))

    server = Server(("127.0.0.1", 0), QuietHandler, allow_reuse_address=False)
    server.set_app(app)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(10)


CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def _request(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def _client(port, path, barrier):
    """GET the link page (CSRF cookie and token), wait for the others, POST: (status, Location)."""
    status, headers, html = _request(port, "GET", path)
    assert status == 200, (status, html[:300])
    cookie = next(v.split(";")[0] for k, v in headers if k.lower() == "set-cookie" and v.startswith("csrftoken="))
    token = CSRF_INPUT.search(html).group(1)
    barrier.wait()
    status, headers, _html = _request(port, "POST", path, body=f"csrfmiddlewaretoken={token}", headers={
        "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
    return status, dict((k.lower(), v) for k, v in headers).get("location")


ROUNDS_HTTP = 3


def test_fifty_simultaneous_posts_of_one_link_confirm_and_apply_once(worker, http_server, task_log, signal_log,
                                                                     settings):
    # All fifty come from one address: the failure throttle counts every attempt in flight before its check and
    # would refuse some of them (429), which is its job, not what this race is about.
    settings.DEFERRED_CONFIRMATION = {**settings.DEFERRED_CONFIRMATION, "FAILED_ATTEMPTS_LIMIT": 4 * CLIENTS}
    for round_ in range(ROUNDS_HTTP):
        address = f"http{round_}-new@example.org"
        profile, action = stage_change(f"http{round_}-old@example.org", address)
        wait_for(lambda address=address: _mails_to(address), what="the mail")
        path = f"/confirm/{link_token(_mails_to(address)[0])}/"
        barrier = threading.Barrier(CLIENTS, timeout=30)

        results = _threads([lambda path=path, barrier=barrier: _client(http_server, path, barrier)] * CLIENTS)

        statuses = Counter(status for status, _location in results)
        assert statuses == {302: 1, 409: CLIENTS - 1}, statuses
        [location] = [location for status, location in results if status == 302]
        assert location == f"/confirm/status/{action.pk}/"
        wait_for(lambda action=action: signal_log.count("change_confirmed", action.pk) == 1, what="the apply")
        profile.refresh_from_db()
        assert (profile.email, profile.nickname) == (address, "+")
        assert DeferredAction.objects.get(pk=action.pk).state == State.APPLIED
    time.sleep(0.3)
    assert task_log.returned(dispatch.APPLY_ACTION) == [True] * ROUNDS_HTTP
    assert signal_log.count("change_confirmed") == ROUNDS_HTTP


# --- confirm racing the expiry sweep -------------------------------------------------------------------
ROUNDS_EXPIRY, PER_ROUND = 5, 6


def test_confirm_racing_expiry_ends_each_action_applied_or_expired(eager, signal_log):
    outcomes, by_sweep = Counter(), 0
    for round_ in range(ROUNDS_EXPIRY):
        staged = []
        for i in range(PER_ROUND):
            address = f"edge{round_}-{i}-new@example.org"
            profile, action = stage_change(f"edge{round_}-{i}-old@example.org", address)
            staged.append((profile, action, link_token(_mails_to(address)[0])))
        edge = timezone.now() + timedelta(milliseconds=400)
        ids = [action.pk for _p, action, _t in staged]
        DeferredAction.objects.filter(pk__in=ids).update(valid_until=edge)
        Delivery.objects.filter(action_id__in=ids).update(expires_at=edge)

        def confirm_at(token, offset_ms, edge=edge):
            time.sleep(max(0.0, (edge - timezone.now()).total_seconds() + offset_ms / 1000))
            return pipeline.confirm(token).status

        def sweep(edge=edge):
            swept = 0
            while timezone.now() < edge + timedelta(milliseconds=300):
                swept += lifecycle.expire()
                time.sleep(0.005)
            return swept

        offsets = [-50 + 15 * i for i in range(PER_ROUND)]  # -50 … +25 ms around the edge
        results = _threads([lambda t=token, o=o: confirm_at(t, o)
                            for (_p, _a, token), o in zip(staged, offsets, strict=True)] + [sweep] * 2)
        statuses, swept = results[:PER_ROUND], sum(results[PER_ROUND:])
        assert swept <= statuses.count("expired")  # the rest expired by the confirm that found them past due
        by_sweep += swept

        for i, ((profile, action, token), status) in enumerate(zip(staged, statuses, strict=True)):
            action.refresh_from_db()
            profile.refresh_from_db()
            deliveries = list(Delivery.objects.filter(action=action).values_list("status", flat=True))
            if action.state == State.APPLIED:
                assert status == "confirmed"
                assert deliveries == [DeliveryStatus.CONFIRMED]
                assert profile.nickname == "+"
                assert (signal_log.count("change_confirmed", action.pk),
                        signal_log.count("action_expired", action.pk)) == (1, 0)
            else:
                assert action.state == State.EXPIRED, action.state
                assert status == "expired"
                assert deliveries == [DeliveryStatus.SUPERSEDED]
                assert (profile.email, profile.nickname) == (f"edge{round_}-{i}-old@example.org", "")
                assert (signal_log.count("change_confirmed", action.pk),
                        signal_log.count("action_expired", action.pk)) == (0, 1)
            assert pipeline.confirm(token).status in ("already_used", "expired")  # and nothing more happens
            outcomes[action.state] += 1
    assert sum(outcomes.values()) == ROUNDS_EXPIRY * PER_ROUND
    assert signal_log.count("change_confirmed") == outcomes[State.APPLIED]
    assert signal_log.count("action_expired") == outcomes[State.EXPIRED]
    # figures for docs/reliability.md (pytest -s)
    print("confirm racing expiry:", dict(outcomes), "expired by the sweep:", by_sweep)


# --- resend racing confirm -----------------------------------------------------------------------------
ROUNDS_RESEND = 8


def test_resend_racing_confirm_has_one_winner(eager, signal_log, no_resend_cooldown):
    winners = Counter()
    for round_ in range(ROUNDS_RESEND):
        address = f"resend{round_}-new@example.org"
        profile, action = stage_change(f"resend{round_}-old@example.org", address)
        old = link_token(_mails_to(address)[0])
        barrier = threading.Barrier(2, timeout=10)

        def confirm_old(old=old, barrier=barrier):
            barrier.wait()
            return pipeline.confirm(old).status

        def resend(action=action, barrier=barrier, later=round_ % 2):
            barrier.wait()
            if later:
                time.sleep(0.002)  # alternate which side starts a hair earlier
            return pipeline.resend(action).sent

        status, sent = _threads([confirm_old, resend])

        mails = _mails_to(address)
        if status == "confirmed":  # the confirm won: the resend found nothing open, sent nothing
            winners["confirm"] += 1
            assert sent is False and len(mails) == 1
        else:  # the resend won: the old secret died with it, the new one works (once)
            winners["resend"] += 1
            assert (status, sent, len(mails)) == ("invalid", True, 2)
            new = link_token(mails[1])
            assert pipeline.confirm(old).status == "invalid"
            assert pipeline.confirm(new).status == "confirmed"
        action.refresh_from_db()
        profile.refresh_from_db()
        assert action.state == State.APPLIED
        assert (profile.email, profile.nickname) == (address, "+")
        assert signal_log.count("change_confirmed", action.pk) == 1
        # a confirmed action has no live secret: one delivery confirmed, none waiting, a later resend refused
        delivery = Delivery.objects.get(action=action)
        assert delivery.status == DeliveryStatus.CONFIRMED
        assert pipeline.resend(action).sent is False
        for message in _mails_to(address):
            assert pipeline.confirm(link_token(message)).status in ("already_used", "invalid")
        assert len(_mails_to(address)) == len(mails)
        assert Profile.objects.get(pk=profile.pk).nickname == "+"
    assert sum(winners.values()) == ROUNDS_RESEND
    print("resend racing confirm, winners:", dict(winners))  # figures for docs/reliability.md (pytest -s)


# --- generate racing cancel ----------------------------------------------------------------------------
@pytest.mark.skipif(not worker_fixtures.POSTGRES, reason="row locks: PostgreSQL")
@pytest.mark.parametrize("generate_runs", ["between the cancel's two updates", "after the cancel's updates"])
def test_generate_racing_cancel_never_leaves_a_secret_to_send(generate_runs):
    """generate locks the delivery only and reads its action unlocked: a cancel holding the action's lock
    either has not reached the delivery yet (generate makes a secret, the cancel then supersedes it) or has
    (generate waits for the cancel and makes nothing).  Either way nothing is left for the send task."""
    with worker_fixtures.messages_lost():
        _profile, action = stage_change(f"gc-{len(generate_runs)}-old@example.org",
                                        f"gc-{len(generate_runs)}-new@example.org")
        delivery = Delivery.objects.get(action=action)
        early = generate_runs.startswith("between")
        moved, generated = threading.Event(), threading.Event()

        def cancel_in_two_steps():  # what lifecycle.cancel() does, with a pause where the race matters
            from django.db import transaction

            from deferred_confirmation.pipeline.lifecycle.transitions import close_deliveries, lock, move

            with transaction.atomic():
                locked = lock(action.pk)
                move(locked, State.CANCELLED)
                if early:
                    moved.set()
                    assert generated.wait(10)
                close_deliveries(locked)
                if not early:
                    moved.set()
                    time.sleep(0.3)  # generate is waiting for the delivery's row lock meanwhile

        def generate():
            assert moved.wait(10)
            try:
                return lifecycle.generate(delivery.pk, delivery.generation, action_id=action.pk)
            finally:
                generated.set()

        _cancelled, made_a_secret = _threads([cancel_in_two_steps, generate])
    assert made_a_secret is early
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SUPERSEDED
    assert DeferredAction.objects.get(pk=action.pk).state == State.CANCELLED
    # The send task, had its message not been lost, finds nothing to send.
    from deferred_confirmation.pipeline import crypto
    from deferred_confirmation.pipeline.lifecycle.delivery import SECRET_PURPOSE

    sealed = crypto.seal(SECRET_PURPOSE, "a" * 43)
    assert lifecycle.deliver(delivery.pk, delivery.generation, sealed) is False
    assert Delivery.objects.get(pk=delivery.pk).sent_at is None
