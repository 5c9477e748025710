"""What task events (and so Flower) show of a task's arguments: ids, never the sealed secret, on every publish
(the first, a retry's, redrive's), and the action's id on the delivery tasks."""

from __future__ import annotations

import threading
import uuid

import pytest
from celery.signals import before_task_publish
from django.db import transaction

from deferred_confirmation import workers
from deferred_confirmation.django_integration.models import Delivery
from deferred_confirmation.pipeline import crypto, dispatch
from deferred_confirmation.pipeline.lifecycle.delivery import SECRET_PURPOSE
from deferred_confirmation.pipeline.states import DeliveryStatus
from tests.workers.conftest import purge_queues, stage_change, wait_for


class Published:
    """Headers of every message this process publishes: (task name, argsrepr, kwargsrepr, retries, body)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str, str, int, object]] = []
        self._lock = threading.Lock()

    def __call__(self, sender=None, body=None, headers=None, **kwargs) -> None:
        with self._lock:
            self.messages.append((sender, headers.get("argsrepr"), headers.get("kwargsrepr"),
                                  headers.get("retries") or 0, body))

    def of(self, name: str) -> list[tuple[str, str, int, object]]:
        with self._lock:
            return [(a, k, r, b) for n, a, k, r, b in self.messages if n == name]


@pytest.fixture
def published():
    seen = Published()
    before_task_publish.connect(seen, weak=False)
    yield seen
    before_task_publish.disconnect(seen)


def test_describe_shows_ids_and_numbers_and_hides_everything_else():
    action_id = uuid.uuid4()
    sealed = crypto.seal(SECRET_PURPOSE, "raw-token")
    assert dispatch.task_reprs((12, 3, sealed), {"action_id": str(action_id)}) == (
        "(12, 3, <sealed>)", repr({"action_id": str(action_id)}))
    assert dispatch.task_reprs((str(action_id),), None) == (repr((str(action_id),)), "{}")
    assert dispatch.task_reprs((action_id, None, True, "123456", "+12025550123"), {}) == (
        f"('{action_id}', None, True, <sealed>, <sealed>)", "{}")
    assert dispatch.task_reprs(None, {"x": ["a"]}) == ("()", "{'x': <sealed>}")


def test_a_retried_send_is_published_with_the_secret_hidden(worker, smtp_server, fast_retries, published):
    server = smtp_server("data", script=["451 4.3.0 try again"])
    _profile, action = stage_change("repr-old@example.org", "repr-new@example.org")
    wait_for(lambda: server.accepted, what="the mail to go out after a retry")
    sends = published.of(dispatch.SEND_NOTIFICATION)
    assert sorted(retries for *_, retries, _ in sends) == [0, 1]  # the first publish and the retry's
    delivery = Delivery.objects.get(action=action)
    for argsrepr, kwargsrepr, _retries, body in sends:
        assert argsrepr == f"({delivery.pk}, {delivery.generation}, <sealed>)"
        assert kwargsrepr == repr({"action_id": str(action.pk)})
        args, kwargs = body[0], body[1]
        assert crypto.open_sealed(SECRET_PURPOSE, args[2])  # the body still carries it, sealed
        assert kwargs == {"action_id": str(action.pk)}
    [(argsrepr, kwargsrepr, _, _)] = published.of(dispatch.GENERATE_TOKEN)
    assert (argsrepr, kwargsrepr) == (f"({delivery.pk}, 0)", repr({"action_id": str(action.pk)}))


@pytest.mark.django_db(transaction=True)
def test_an_enqueue_without_the_action_id_looks_it_up(published):
    """maintenance's redrive calls enqueue(GENERATE_TOKEN, delivery id, generation): the message still names
    the action; and a task called the old way (no action_id) still runs."""
    workers.app.conf.task_always_eager = False
    _profile, action = stage_change("lookup-old@example.org", "lookup-new@example.org")
    delivery = Delivery.objects.get(action=action)
    try:
        with transaction.atomic():
            dispatch.enqueue(dispatch.GENERATE_TOKEN, delivery.pk, delivery.generation, queue="confirmation.email")
        _argsrepr, kwargsrepr, _, body = published.of(dispatch.GENERATE_TOKEN)[-1]
    finally:
        purge_queues()
    assert kwargsrepr == repr({"action_id": str(action.pk)})
    assert body[1] == {"action_id": str(action.pk)}
    assert workers.app.tasks[dispatch.GENERATE_TOKEN].apply(args=[delivery.pk, delivery.generation]).get()
    assert Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.GENERATED
    purge_queues()
