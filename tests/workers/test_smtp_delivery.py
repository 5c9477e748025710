"""Mail through a real SMTP server on loopback and a real (in-process) worker: transient errors are retried
with backoff until the mail goes out; a permanent refusal fails the delivery and the action with the
server's reason."""

from datetime import timedelta

import pytest
from celery.signals import task_retry

from deferred_confirmation import pipeline
from deferred_confirmation.django_integration.models import Delivery
from deferred_confirmation.pipeline.dispatch import APPLY_ACTION as APPLY
from deferred_confirmation.pipeline.dispatch import SEND_NOTIFICATION as SEND
from deferred_confirmation.pipeline.states import DeliveryStatus, State
from tests.conftest import link_token
from tests.testapp.models import Profile
from tests.workers.conftest import stage_change, wait_for


@pytest.fixture
def retries():
    """The send_notification retries Celery scheduled (in the worker threads)."""
    seen = []

    def receiver(sender=None, request=None, reason=None, **kwargs):
        if sender is not None and sender.name == "confirmation.send_notification":
            seen.append(str(reason))

    task_retry.connect(receiver, weak=False)
    yield seen
    task_retry.disconnect(receiver)


def _delivery(action):
    return Delivery.objects.get(action=action)


@pytest.mark.parametrize(("stage", "reply"), [
    ("data", "451 4.3.0 Temporary local problem, try again"),
    ("rcpt", "450 4.2.0 Greylisted, please try again later"),
])
def test_transient_smtp_errors_are_retried_then_delivered(worker, smtp_server, fast_retries, retries, task_log,
                                                          stage, reply):
    server = smtp_server(stage, script=[reply, reply])
    profile, action = stage_change("grey-old@example.org", "grey-new@example.org")

    wait_for(lambda: True in task_log.returned(SEND), what="the mail to be delivered")
    assert _delivery(action).status == DeliveryStatus.SENT
    assert server.attempts == 3
    assert len(server.accepted) == 1
    assert len(retries) == 2 and all(reply[:3] in reason for reason in retries)
    delivery = _delivery(action)
    assert delivery.status_detail == ""
    assert delivery.provider_ref
    action.refresh_from_db()
    assert action.state == State.NOTIFIED

    assert pipeline.confirm(link_token(server.accepted[0])).status == "confirmed"
    wait_for(lambda: task_log.returned(APPLY) == [True], what="the apply")
    assert Profile.objects.get(pk=profile.pk).email == "grey-new@example.org"


def test_transient_errors_give_up_after_max_retries(worker, smtp_server, confirmation_settings, signal_log,
                                                    task_log):
    confirmation_settings(RETRY_BACKOFF_MAX=timedelta(0))
    server = smtp_server("data", then="421 4.3.2 Service shutting down")
    _profile, action = stage_change("down-old@example.org", "down-new@example.org")

    wait_for(lambda: False in task_log.returned(SEND), what="the delivery to give up")
    assert _delivery(action).status == DeliveryStatus.FAILED
    delivery = _delivery(action)
    assert delivery.status_detail.startswith("gave up after 8 retries")
    assert "421" in delivery.status_detail
    assert server.attempts == 9 and server.accepted == []
    action.refresh_from_db()
    assert action.state == State.FAILED
    assert "421" in action.failure_reason
    wait_for(lambda: signal_log.count("confirmation_failed", action.pk) == 1, what="confirmation_failed")


@pytest.mark.parametrize(("stage", "reply"), [
    ("rcpt", "550 5.1.1 No such user here"),
    ("data", "554 5.7.1 Message rejected as spam"),
])
def test_a_permanent_smtp_error_fails_the_delivery_with_the_reason(worker, smtp_server, fast_retries, retries,
                                                                   signal_log, task_log, stage, reply):
    server = smtp_server(stage, then=reply)
    profile, action = stage_change("gone-old@example.org", "nobody@example.org")

    wait_for(lambda: task_log.returned(SEND) == [False], what="the delivery to fail")
    assert _delivery(action).status == DeliveryStatus.FAILED
    delivery = _delivery(action)
    code, text = reply.split(" ", 1)
    assert code in delivery.status_detail and text.split(" ", 1)[1] in delivery.status_detail
    assert "nobody@example.org" not in delivery.status_detail  # the address is on the row, not in the reason
    assert delivery.secret_digest == ""
    assert delivery.sent_at is None
    action.refresh_from_db()
    assert action.state == State.FAILED
    assert code in action.failure_reason and "email delivery failed" in action.failure_reason
    assert server.attempts == 1 and server.accepted == []
    assert retries == []  # never retried
    wait_for(lambda: signal_log.count("confirmation_failed", action.pk) == 1, what="confirmation_failed")
    assert Profile.objects.get(pk=profile.pk).email == "gone-old@example.org"
