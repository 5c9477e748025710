"""What an SMTP refusal leaves behind: no address in stored reasons, and our own mis-configuration (sender
refused) never fails a user's action."""

import pytest
from aiosmtpd.controller import Controller
from django.core import mail

from deferred_confirmation.django_integration.models import Delivery
from deferred_confirmation.pipeline.dispatch import SEND_NOTIFICATION as SEND
from deferred_confirmation.pipeline.states import DeliveryStatus, State
from tests.workers.conftest import free_port, stage_change, wait_for


class SenderRefused:
    """A server that refuses our MAIL FROM, as one does with a sender domain it will not relay for."""

    def __init__(self):
        self.attempts = 0

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.attempts += 1
        return "553 5.7.1 Sender address rejected: not owned by user"


@pytest.fixture
def refusing_sender(settings):
    handler = SenderRefused()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 5
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    yield handler
    controller.stop()


def test_a_refused_sender_is_retried_and_never_fails_the_action(worker, refusing_sender, fast_retries, task_log):
    _profile, action = stage_change("cfg-old@example.org", "cfg-new@example.org")
    wait_for(lambda: refusing_sender.attempts >= 2, what="a retry after the sender was refused")
    action.refresh_from_db()
    assert action.state == State.PENDING  # still waiting for the settings to be fixed
    assert Delivery.objects.get(action=action).status == DeliveryStatus.GENERATED


def test_an_address_echoed_by_the_server_is_masked_in_stored_reasons(worker, smtp_server, fast_retries, task_log):
    smtp_server("rcpt", then="550 5.1.1 <nobody.here@example.org>: Recipient address rejected")
    _profile, action = stage_change("echo-old@example.org", "nobody.here@example.org")
    wait_for(lambda: task_log.returned(SEND) == [False], what="the delivery to fail")
    delivery = Delivery.objects.get(action=action)
    action.refresh_from_db()
    assert "550" in delivery.status_detail and "Recipient address rejected" in delivery.status_detail
    for stored in (delivery.status_detail, action.failure_reason):
        assert "nobody.here@example.org" not in stored
        assert "n***@example.org" in stored


@pytest.mark.django_db(transaction=True)
def test_the_subject_is_plain_text_not_html_escaped(eager):
    stage_change("subj-old@example.org", "subj-new@example.org", description="Tom & Jerry's <new> address")
    assert mail.outbox[-1].subject == "Please confirm: Tom & Jerry's <new> address"
