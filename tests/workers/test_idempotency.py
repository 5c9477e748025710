"""Running any task twice has the effect of once (docs/operations.md#tasks-and-queues): one mail per generation,
one apply.

Once with the tasks run in place (each recorded call replayed through ``Task.apply``), once with a real
worker that receives every message a second time, under the same task id (a redelivery).
"""

import pytest
from celery.signals import before_task_publish
from django.core import mail

from deferred_confirmation import pipeline, workers
from deferred_confirmation.django_integration.models import Delivery
from deferred_confirmation.pipeline import dispatch
from deferred_confirmation.pipeline.states import DeliveryStatus, State
from tests.conftest import link_token
from tests.testapp.models import Profile
from tests.workers.conftest import stage_change, wait_for


def _mails_to(address):
    return [m for m in mail.outbox if m.to == [address]]


@pytest.mark.django_db(transaction=True)
def test_every_task_replayed_has_no_further_effect(eager, task_log, signal_log, no_resend_cooldown):
    profile, action = stage_change("twice-old@example.org", "twice-new@example.org")
    assert len(_mails_to("twice-new@example.org")) == 1
    delivery = Delivery.objects.get(action=action)
    assert delivery.status == DeliveryStatus.SENT
    [generate_args] = task_log.args_of(dispatch.GENERATE_TOKEN)
    [send_args] = task_log.args_of(dispatch.SEND_NOTIFICATION)

    # generate again: no new secret, no new mail; send again: no second mail
    assert workers.app.tasks[dispatch.GENERATE_TOKEN].apply(args=generate_args).get() is False
    assert workers.app.tasks[dispatch.SEND_NOTIFICATION].apply(args=send_args).get() is False
    refreshed = Delivery.objects.get(pk=delivery.pk)
    assert refreshed.secret_digest == delivery.secret_digest
    assert refreshed.sent_at == delivery.sent_at
    assert len(_mails_to("twice-new@example.org")) == 1
    assert signal_log.count("confirmation_required", action.pk) == 1

    # a resend is a new generation: exactly one more mail; the first generation's tasks stay dead
    assert pipeline.resend(action).sent is True
    assert len(_mails_to("twice-new@example.org")) == 2
    second_generate, second_send = task_log.args_of(dispatch.GENERATE_TOKEN)[-1], task_log.args_of(
        dispatch.SEND_NOTIFICATION)[-1]
    assert workers.app.tasks[dispatch.GENERATE_TOKEN].apply(args=generate_args).get() is False
    assert workers.app.tasks[dispatch.SEND_NOTIFICATION].apply(args=send_args).get() is False
    assert second_generate[1] == generate_args[1] + 1
    assert workers.app.tasks[dispatch.GENERATE_TOKEN].apply(args=second_generate).get() is False
    assert workers.app.tasks[dispatch.SEND_NOTIFICATION].apply(args=second_send).get() is False
    assert len(_mails_to("twice-new@example.org")) == 2
    first, latest = _mails_to("twice-new@example.org")
    assert pipeline.confirm(link_token(first)).status == "invalid"  # the old secret died with the resend

    # apply: the confirm ran it (eager); running it again changes nothing
    assert pipeline.confirm(link_token(latest)).status == "confirmed"
    [apply_args] = task_log.args_of(dispatch.APPLY_ACTION)
    assert task_log.returned(dispatch.APPLY_ACTION) == [True]
    assert workers.app.tasks[dispatch.APPLY_ACTION].apply(args=apply_args).get() is False
    assert workers.app.tasks[dispatch.APPLY_ACTION].apply(args=apply_args).get() is False
    profile.refresh_from_db()
    assert (profile.email, profile.nickname) == ("twice-new@example.org", "+")
    assert signal_log.count("change_confirmed", action.pk) == 1
    action.refresh_from_db()
    assert action.state == State.APPLIED
    # and a second POST of the link is refused, not applied again
    assert pipeline.confirm(link_token(latest)).status == "already_used"
    assert Profile.objects.get(pk=profile.pk).nickname == "+"


@pytest.fixture
def published():
    """Every message the test process publishes: (task name, body args, routing key, task id)."""
    messages = []

    def receiver(sender=None, body=None, headers=None, routing_key=None, **kwargs):
        args = body[0] if isinstance(body, list | tuple) else body.get("args")
        messages.append((sender, tuple(args), routing_key, headers["id"]))

    before_task_publish.connect(receiver, weak=False)
    yield messages
    before_task_publish.disconnect(receiver)


def _redeliver(message):
    name, args, queue, task_id = message
    workers.app.send_task(name, args=args, queue=queue, task_id=task_id)


def test_a_real_worker_given_every_message_twice_acts_once(worker, task_log, published, signal_log):
    profile, action = stage_change("dup-old@example.org", "dup-new@example.org")
    wait_for(lambda: task_log.returned(dispatch.SEND_NOTIFICATION) == [True], what="the mail to go out")
    assert len(_mails_to("dup-new@example.org")) == 1

    # The worker publishes send_notification itself; the test process published generate_token.
    [generate_message] = [m for m in published if m[0] == dispatch.GENERATE_TOKEN]
    [send_message] = task_log.messages_of(dispatch.SEND_NOTIFICATION, "confirmation.email")
    _redeliver(generate_message)
    _redeliver(send_message)
    wait_for(lambda: task_log.returned(dispatch.GENERATE_TOKEN) == [True, False], what="the second generate")
    wait_for(lambda: task_log.returned(dispatch.SEND_NOTIFICATION) == [True, False], what="the second send")
    assert len(_mails_to("dup-new@example.org")) == 1

    assert pipeline.confirm(link_token(_mails_to("dup-new@example.org")[0])).status == "confirmed"
    wait_for(lambda: task_log.returned(dispatch.APPLY_ACTION) == [True], what="the apply")
    [apply_message] = [m for m in published if m[0] == dispatch.APPLY_ACTION]
    _redeliver(apply_message)
    _redeliver(apply_message)
    wait_for(lambda: task_log.returned(dispatch.APPLY_ACTION) == [True, False, False], what="the repeated applies")
    profile.refresh_from_db()
    assert (profile.email, profile.nickname) == ("dup-new@example.org", "+")
    wait_for(lambda: signal_log.count("change_confirmed", action.pk) == 1, what="change_confirmed")
    assert signal_log.count("change_confirmed") == 1
    action.refresh_from_db()
    assert action.state == State.APPLIED
