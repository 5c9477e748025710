"""The email channel sends with the mailer the running Django provides: an entry of settings.MAILERS
(OPTIONS["MAILER"], else "default") where the project sets MAILERS on Django 6.1+, otherwise the backend path in
OPTIONS["EMAIL_BACKEND"] or the project's default backend.  The system check refuses an option that cannot work
on the running Django (confirmation.E025) and warns about one Django deprecates (confirmation.W004); no send
makes a deprecated call of its own."""

from __future__ import annotations

import os
import re
import warnings

import django
import pytest
from django.core import checks, mail
from django.core.mail.backends import locmem

from deferred_confirmation.django_integration.models import Delivery
from deferred_confirmation.pipeline import tokens
from deferred_confirmation.pipeline.channels import ChannelConfigurationError, get_channel
from deferred_confirmation.pipeline.channels import email as email_channel
from deferred_confirmation.pipeline.states import DeliveryStatus, State
from tests.workers.conftest import stage_change

HAS_MAILERS = django.VERSION >= (6, 1)
needs_mailers = pytest.mark.skipif(not HAS_MAILERS, reason="settings.MAILERS is Django 6.1's")
before_mailers = pytest.mark.skipif(HAS_MAILERS, reason="Django 6.1 has settings.MAILERS")
LOCMEM = "django.core.mail.backends.locmem.EmailBackend"
RECORDING = "tests.workers.test_mailers.RecordingBackend"
OUR_CODE = os.path.dirname(os.path.dirname(email_channel.__file__))  # the pipeline package's folder


class RecordingBackend(locmem.EmailBackend):
    """Django's memory backend, which also notes each mail it sent (and the MAILERS entry it was made for)."""

    sent: list[tuple[str | None, list[str]]] = []

    def send_messages(self, messages):
        RecordingBackend.sent += [(getattr(self, "alias", None), message.to) for message in messages]
        return super().send_messages(messages)


@pytest.fixture(autouse=True)
def _recording():
    RecordingBackend.sent = []


@pytest.fixture
def email_options(settings):
    """``email_options(**OPTIONS)``: the email channel's OPTIONS for one test."""

    def update(**options) -> None:
        conf = dict(settings.DEFERRED_CONFIRMATION)
        conf["CHANNELS"] = {"email": {"OPTIONS": options}}
        settings.DEFERRED_CONFIRMATION = conf

    return update


def _send(number: int = 0) -> Delivery:
    """One confirmation mail of a new change, sent by the channel in this thread."""
    _profile, action = stage_change(f"mailer-{number}-old@example.org", f"mailer-{number}-new@example.org")
    delivery = Delivery.objects.select_related("action", "action__user").get(action=action)
    get_channel("email").send(delivery=delivery, action=delivery.action, secret=tokens.make_link_token())
    return delivery


def _ours() -> list[checks.CheckMessage]:
    """What the system check says about channel OPTIONS (the test settings' own warnings, W002, aside)."""
    return [message for message in checks.run_checks() if message.id in ("confirmation.E025", "confirmation.W004")]


def _warnings_from_our_code(caught: list[warnings.WarningMessage]) -> list[str]:
    deprecations = DeprecationWarning | PendingDeprecationWarning  # Django's RemovedInDjango2028Warning is pending
    return [f"{w.category.__name__}: {w.message}" for w in caught
            if w.filename.startswith(OUR_CODE) and issubclass(w.category, deprecations)]


# --- without MAILERS (every Django; 5.2 the default) ------------------------------------------------------------
@pytest.mark.django_db
def test_by_default_the_projects_mail_backend_sends_without_a_deprecated_call(email_options):
    email_options()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        delivery = _send()
    assert [message.to for message in mail.outbox] == [[delivery.recipient_value]]
    assert _warnings_from_our_code(caught) == []
    assert _ours() == []


@pytest.mark.django_db
def test_the_email_backend_option_sends_with_that_backend(email_options):
    email_options(EMAIL_BACKEND=RECORDING)
    delivery = _send()
    assert [to for _alias, to in RecordingBackend.sent] == [[delivery.recipient_value]]
    warned = [message.id for message in _ours()]
    # Django 6.1 deprecates choosing a backend by path (with the EMAIL_* settings): a warning, not an error.
    assert warned == (["confirmation.W004"] if HAS_MAILERS else [])


@before_mailers
@pytest.mark.django_db
def test_before_django_6_1_the_mailer_option_is_refused(email_options):
    email_options(MAILER="transactional")
    [error] = _ours()
    assert error.id == "confirmation.E025" and "needs Django 6.1" in error.msg
    with pytest.raises(ChannelConfigurationError, match=r"needs Django 6\.1"):
        _send()
    assert mail.outbox == []


@pytest.mark.django_db
@pytest.mark.parametrize(("options", "why"), [
    ({"MAILER": "a", "EMAIL_BACKEND": LOCMEM}, "not both"),
    ({"EMAIL_BACKEND": ""}, "dotted path"),
    ({"MAILER": 3}, "name of an entry"),
])
def test_options_that_never_work_are_refused_by_the_check(email_options, options, why):
    email_options(**options)
    errors = [message for message in _ours() if message.id == "confirmation.E025"]
    assert len(errors) == 1 and why in errors[0].msg


# --- with MAILERS (Django 6.1+) ---------------------------------------------------------------------------------
@needs_mailers
@pytest.mark.django_db
def test_the_mailer_option_sends_with_that_mailers_entry(email_options, settings):
    settings.MAILERS = {"default": {"BACKEND": LOCMEM}, "transactional": {"BACKEND": RECORDING}}
    email_options(MAILER="transactional")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        delivery = _send()
    assert RecordingBackend.sent == [("transactional", [delivery.recipient_value])]
    assert _warnings_from_our_code(caught) == []
    assert _ours() == []


@needs_mailers
@pytest.mark.django_db
def test_without_the_mailer_option_the_default_entry_sends(email_options, settings):
    settings.MAILERS = {"default": {"BACKEND": RECORDING}, "bulk": {"BACKEND": LOCMEM}}
    email_options()
    delivery = _send()
    assert RecordingBackend.sent == [("default", [delivery.recipient_value])]


@needs_mailers
@pytest.mark.django_db
@pytest.mark.parametrize(("mailers", "options", "why"), [
    ({"default": {"BACKEND": LOCMEM}}, {"EMAIL_BACKEND": RECORDING}, "cannot be used with settings.MAILERS"),
    ({"default": {"BACKEND": LOCMEM}}, {"MAILER": "transactional"}, "'transactional' is not in settings.MAILERS"),
    ({"bulk": {"BACKEND": LOCMEM}}, {}, "'default' is not in settings.MAILERS"),
])
def test_with_mailers_an_option_that_cannot_work_is_refused(email_options, settings, mailers, options, why):
    settings.MAILERS = mailers
    email_options(**options)
    errors = [message for message in _ours() if message.id == "confirmation.E025"]
    assert len(errors) == 1 and why in errors[0].msg
    with pytest.raises(ChannelConfigurationError, match=re.escape(why)):
        _send()
    assert RecordingBackend.sent == []


@needs_mailers
@pytest.mark.django_db
def test_with_mailers_the_old_email_backend_option_fails_the_send_not_the_worker(
        email_options, settings, eager, django_capture_on_commit_callbacks):
    """What the release notes' RuntimeError ("get_connection(backend, ...) is not supported with MAILERS") was:
    now the send fails with the channel's configuration error, the delivery says so, and the action waits for
    redrive once the setting is fixed."""
    settings.MAILERS = {"default": {"BACKEND": LOCMEM}}
    email_options(EMAIL_BACKEND=RECORDING)
    with django_capture_on_commit_callbacks(execute=True):
        _profile, action = stage_change("mailer-crash-old@example.org", "mailer-crash-new@example.org")
    delivery = Delivery.objects.get(action=action)
    assert delivery.status != DeliveryStatus.SENT
    assert "ChannelConfigurationError" in delivery.status_detail
    action.refresh_from_db()
    assert action.state == State.PENDING
    assert mail.outbox == [] and RecordingBackend.sent == []


@needs_mailers
@pytest.mark.django_db
def test_smtp_through_a_mailers_entry_keeps_its_connection_open(email_options, settings, smtp_server):
    server = smtp_server()
    settings.MAILERS = {"default": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend", "OPTIONS": {
        "host": "127.0.0.1", "port": settings.EMAIL_PORT, "use_tls": False, "timeout": 5}}}
    email_options()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        deliveries = [_send(number) for number in range(3)]
    assert len(server.accepted) == 3
    assert len(set(server.peers)) == 1  # one connection for the three mails
    assert _warnings_from_our_code(caught) == []
    for delivery, message in zip(deliveries, server.accepted, strict=True):
        assert delivery.recipient_value in message



@needs_mailers
@pytest.mark.django_db
@pytest.mark.parametrize(("backend", "warned"), [(LOCMEM, True), ("django.core.mail.backends.smtp.EmailBackend",
                                                                  False)])
def test_check_deploy_reads_the_mailers_entry_the_channel_sends_with(email_options, settings, backend, warned):
    settings.MAILERS = {"default": {"BACKEND": LOCMEM}, "transactional": {"BACKEND": backend}}
    email_options(MAILER="transactional")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = [m for m in checks.run_checks(include_deployment_checks=True) if m.id == "confirmation.W006"]
    assert _warnings_from_our_code(caught) == []
    assert bool(found) is warned
    assert not found or backend in found[0].msg
