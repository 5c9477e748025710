"""The email channel keeps its SMTP connection open between mails (OPTIONS["KEEP_ALIVE"]) instead of a
connect, EHLO and QUIT around every one, and never loses a mail to a connection the server has dropped.

Each accepted message records the client port of its connection (``handler.peers``): one port for several
mails is one connection reused."""

from __future__ import annotations

import gc
import os
import threading
import time

import pytest
from django.core.mail.backends import filebased

from deferred_confirmation.django_integration.models import Delivery
from deferred_confirmation.pipeline import tokens
from deferred_confirmation.pipeline.channels import PermanentChannelError, get_channel, mailconn
from deferred_confirmation.pipeline.channels.email import EmailChannel
from deferred_confirmation.pipeline.dispatch import SEND_NOTIFICATION as SEND
from deferred_confirmation.pipeline.states import DeliveryStatus
from tests.conftest import link_token
from tests.workers.conftest import stage_change, wait_for


def _staged(number: int) -> Delivery:
    """A new change's delivery, with what its mail shows (the action, its user) already read."""
    _profile, action = stage_change(f"keep-{number}-old@example.org", f"keep-{number}-new@example.org")
    return Delivery.objects.select_related("action", "action__user").get(action=action)


def _send(delivery: Delivery) -> None:
    get_channel("email").send(delivery=delivery, action=delivery.action, secret=tokens.make_link_token())


def _mail(number: int) -> None:
    """Send one confirmation mail for a new change, in this thread."""
    _send(_staged(number))


def _email_options(confirmation_settings, settings, **options) -> None:
    channels = dict(settings.DEFERRED_CONFIRMATION.get("CHANNELS", {"email": {}}))
    channels["email"] = {**channels.get("email", {}), "OPTIONS": options}
    confirmation_settings(CHANNELS=channels)


@pytest.mark.django_db
@pytest.mark.parametrize(("options", "connections"), [
    ({}, 1),  # the default: one connection for the stream
    ({"KEEP_ALIVE": 0}, 4),  # Django's own way: one per mail
])
def test_consecutive_mails_share_one_connection_unless_keep_alive_is_0(smtp_server, confirmation_settings, settings,
                                                                       options, connections):
    _email_options(confirmation_settings, settings, **options)
    server = smtp_server()
    for number in range(4):
        _mail(number)
    assert len(server.accepted) == 4
    assert len(set(server.peers)) == connections


@pytest.mark.django_db
def test_a_connection_idle_past_keep_alive_is_replaced(smtp_server, confirmation_settings, settings):
    _email_options(confirmation_settings, settings, KEEP_ALIVE=0.2)
    server = smtp_server()
    _mail(0)
    _mail(1)  # at once: the same connection
    time.sleep(0.4)
    _mail(2)
    assert len(server.accepted) == 3
    assert server.peers[0] == server.peers[1] != server.peers[2]


@pytest.mark.django_db
def test_a_connection_the_server_dropped_while_idle_costs_no_mail(smtp_server):
    """The server closes connections idle for 1 s (as real servers do, after minutes): the next mail notices
    (NOOP) and goes out on a new connection, without an error and without a retry."""
    server = smtp_server(idle_timeout=1.0)
    _mail(0)
    time.sleep(1.6)
    _mail(1)
    assert len(server.accepted) == 2
    assert server.peers[0] != server.peers[1]


@pytest.mark.django_db
def test_a_server_that_closes_after_each_message_costs_no_mail(smtp_server):
    """Servers limit messages per connection; this one closes right after accepting each: the next mail, sent
    at once, finds the kept connection dead (NOOP) and goes out on a new one, without an error."""
    server = smtp_server(close_after_message=True)
    for number in range(3):
        _mail(number)
    assert len(server.accepted) == 3
    assert len(set(server.peers)) == 3


@pytest.mark.django_db
def test_an_error_closes_the_connection_it_happened_on(smtp_server):
    """After a refusal the next mail starts on a new connection (smtplib would have reset the old one, but a
    connection that just failed is not trusted with the next mail)."""
    server = smtp_server("data", script=["554 5.7.1 Message rejected"])
    with pytest.raises(PermanentChannelError):
        _mail(0)
    _mail(1)
    _mail(2)
    assert len(server.accepted) == 2
    assert server.attempts == 3
    assert server.peers[0] == server.peers[1]
    assert len(server.sessions) == 2  # the refused mail's connection, then one for the two accepted


@pytest.mark.django_db
def test_a_refused_recipient_does_not_poison_the_next_mail(smtp_server):
    server = smtp_server("rcpt", script=["550 5.1.1 No such mailbox"])
    with pytest.raises(PermanentChannelError):
        _mail(0)
    _mail(1)
    assert len(server.accepted) == 1
    assert "keep-1-new@example.org" in server.accepted[0]


@pytest.mark.django_db
def test_changed_mail_settings_reach_the_next_mail(smtp_server):
    first = smtp_server()
    _mail(0)
    second = smtp_server()  # a new server, EMAIL_PORT changed: the connection to the first is not reused
    _mail(1)
    assert len(first.accepted) == 1
    assert len(second.accepted) == 1


@pytest.mark.django_db
def test_connections_of_a_thread_that_ended_are_not_kept(smtp_server):
    """A thread that sent (a web request sending eagerly, a greenlet) takes its connection with it."""
    server = smtp_server()
    threads = [threading.Thread(target=_send, args=(_staged(number),)) for number in range(3)]
    for thread in threads:
        thread.start()
        thread.join()
    gc.collect()
    assert len(server.accepted) == 3
    assert len(mailconn._idle) == 0


@pytest.mark.django_db
def test_a_forked_child_neither_uses_nor_closes_the_parents_connection(smtp_server):
    """A prefork pool forks the worker: the child starts with no kept connection, and closing its own (a
    settings change) must not send QUIT down the parent's socket."""
    server = smtp_server()
    _mail(0)
    child = os.fork()
    if child == 0:  # the child: no database, no pytest, just the check
        inherited = bool(mailconn._local.by_backend) or len(mailconn._idle) > 0
        mailconn.close_all()
        os._exit(1 if inherited else 0)
    _pid, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    _mail(1)
    assert len(server.accepted) == 2
    assert server.peers[0] == server.peers[1]


class HeldFileBackend(filebased.EmailBackend):
    """Django's file backend, each instance held for the test: its file is named after the instance's id(), which
    a new instance could reuse once an old one is freed, and then write to the same file."""

    made: list[filebased.EmailBackend] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        HeldFileBackend.made.append(self)


@pytest.mark.django_db
def test_backends_without_a_connection_are_not_kept(settings, tmp_path):
    """The file backend writes one file per backend instance: still one file per mail."""
    settings.EMAIL_BACKEND = "tests.workers.test_smtp_keepalive.HeldFileBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path)
    for number in range(3):
        _mail(number)
    assert len(list(tmp_path.iterdir())) == 3


def test_keep_alive_must_be_seconds():
    assert EmailChannel.check_options({}) == []
    assert EmailChannel.check_options({"KEEP_ALIVE": 0}) == []
    assert EmailChannel.check_options({"KEEP_ALIVE": 2.5}) == []
    for wrong in (-1, "30", True, None):
        assert EmailChannel.check_options({"KEEP_ALIVE": wrong}) == [
            "OPTIONS['KEEP_ALIVE'] must be a number of seconds, 0 or more."]


def test_a_worker_sends_a_stream_of_mails_over_its_kept_connections(worker, smtp_server, task_log):
    """Through the real pipeline: each of the in-process worker's two threads keeps its own connection."""
    server = smtp_server()
    staged = [stage_change(f"stream-{n}-old@example.org", f"stream-{n}-new@example.org") for n in range(6)]
    wait_for(lambda: task_log.returned(SEND).count(True) == 6, what="six mails")
    assert len(server.accepted) == 6
    assert len(set(server.peers)) <= 2
    assert {Delivery.objects.get(action=action).status for _profile, action in staged} == {DeliveryStatus.SENT}
    assert len({link_token(mail) for mail in server.accepted}) == 6
