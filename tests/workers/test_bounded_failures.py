"""Every failure ends, and re-sends are bounded (docs/security.md).

A send that keeps failing with an error that is neither transient nor permanent (a template missing after a
deploy), an apply that keeps hitting the database, a form that no longer imports, a channel removed from
settings: each ends the action ``failed`` with a reason a person can read, after at most MAX_REDRIVES re-queues
by the outbox sweep, never sending past a channel's SEND_LIMIT, never keeping an action confirmable past the
``valid_until`` given to ``save()``, and never giving back wrong-code attempts with a new secret.
"""

from __future__ import annotations

import re
import secrets
import textwrap
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core import mail
from django.core.mail import send_mail
from django.template import TemplateDoesNotExist
from django.utils import timezone

from deferred_confirmation import pipeline
from deferred_confirmation.django_integration.models import DeferredAction, Delivery, SendRecord
from deferred_confirmation.pipeline import dispatch, lifecycle
from deferred_confirmation.pipeline.channels.base import BaseChannel
from deferred_confirmation.pipeline.channels.email import EmailChannel
from deferred_confirmation.pipeline.states import DeliveryStatus, State
from tests.conftest import link_token
from tests.testapp.models import Profile
from tests.workers.conftest import messages_lost, stage_change, wait_for
from tests.workers.forms import CreatesNothingForm, DatabaseAwayForm, SignUpForm

pytestmark = pytest.mark.django_db(transaction=True)

HERE = __name__
#: Between two sweeps: past REDRIVE_AFTER and past the broker's redelivery window (a send that called its
#: provider is left for the broker to hand out again until then).
STEP = timedelta(hours=2)


class SendsThenBreaks(EmailChannel):
    """Mails the secret, then fails with an error that is neither transient nor permanent: the receipt template
    rendered after the send is missing (a deploy that forgot a file)."""

    def send(self, **kwargs):
        super().send(**kwargs)
        raise TemplateDoesNotExist("confirmation/receipt.txt")


class MailedCode(BaseChannel):
    """A six-digit code sent by mail: a channel whose secret is typed in, with wrong attempts counted."""

    secret_kind = "code"

    def make_secret(self) -> str:
        return f"{secrets.randbelow(10**6):06d}"

    def normalize(self, raw: object) -> str | None:
        text = raw.strip() if isinstance(raw, str) else ""
        return text if len(text) == 6 and text.isascii() and text.isdigit() else None

    def send(self, *, delivery, action, secret) -> str:
        send_mail("Your code", f"Your code: {secret}", None, [delivery.recipient_value])
        return ""


def mails_to(address: str) -> list:
    return [m for m in mail.outbox if m.to == [address]]


def fresh(action: DeferredAction) -> DeferredAction:
    return DeferredAction.objects.get(pk=action.pk)


def delivery_of(action: DeferredAction) -> Delivery:
    return Delivery.objects.get(action=action)


# --- bounded re-sends -------------------------------------------------------------------------------
def test_a_send_that_keeps_failing_is_resent_at_most_max_redrives_times_then_fails(eager, confirmation_settings):
    confirmation_settings(MAX_REDRIVES=3, CHANNELS={"email": {"BACKEND": f"{HERE}.SendsThenBreaks"}})
    deadline = timezone.now() + timedelta(days=1)
    address = "broken-new@example.org"
    _profile, action = stage_change("broken@example.org", address, valid_until=deadline)
    assert len(mails_to(address)) == 1 and fresh(action).state == State.PENDING

    now = timezone.now()
    for _sweep in range(8):
        now += STEP
        lifecycle.redrive(now=now)
        current, delivery = fresh(action), delivery_of(action)
        assert current.valid_until <= deadline and delivery.expires_at <= deadline

    assert len(mails_to(address)) == 4  # the first send and MAX_REDRIVES re-sends, not one more
    assert SendRecord.objects.filter(channel="email").count() == 4  # each counted against SEND_LIMIT
    action = fresh(action)
    assert action.state == State.FAILED and action.redrives == 3
    assert action.failure_reason.startswith("gave up after 3 redrives: ")
    assert "TemplateDoesNotExist" in action.failure_reason
    assert address not in action.failure_reason
    assert delivery_of(action).status == DeliveryStatus.SUPERSEDED
    assert lifecycle.redrive(now=now + STEP) == 0


def test_redrive_never_sends_past_the_send_limit(eager, confirmation_settings):
    confirmation_settings(MAX_REDRIVES=3, CHANNELS={"email": {
        "BACKEND": f"{HERE}.SendsThenBreaks", "SEND_LIMIT": 2, "SEND_WINDOW": timedelta(days=1)}})
    address = "limited-new@example.org"
    _profile, action = stage_change("limited@example.org", address)

    now = timezone.now()
    for _sweep in range(6):
        now += STEP
        lifecycle.redrive(now=now)

    assert len(mails_to(address)) == 2  # SEND_LIMIT: the save's send and one re-send
    assert SendRecord.objects.filter(channel="email").count() == 2
    action = fresh(action)
    assert action.redrives == 1  # a refused re-send is no redrive
    assert action.state == State.PENDING  # nothing sent, nothing given up: it ends at its expiry
    assert lifecycle.expire(now=action.valid_until + timedelta(seconds=1)) == 1
    assert fresh(action).state == State.EXPIRED


def test_resend_keeps_the_deadline_given_to_save_and_the_wrong_attempts(eager, confirmation_settings):
    confirmation_settings(CHANNELS={"email": {"BACKEND": f"{HERE}.MailedCode", "MAX_ATTEMPTS": 3,
                                              "RESEND_COOLDOWN": None, "EXPIRES": timedelta(days=3)}})
    address = "code-new@example.org"
    deadline = timezone.now() + timedelta(minutes=5)
    profile, action = stage_change("code@example.org", address, valid_until=deadline)

    def newest_code() -> str:
        return re.search(r"Your code: (\d{6})", mails_to(address)[-1].body).group(1)

    def wrong() -> str:
        return f"{(int(newest_code()) + 1) % 10**6:06d}"

    assert pipeline.confirm(wrong(), action=action.pk).attempts_left == 2
    for _resend in range(3):
        assert pipeline.resend(action).sent
    assert len(mails_to(address)) == 4

    action, delivery = fresh(action), delivery_of(action)
    assert action.valid_until <= deadline and delivery.expires_at <= deadline
    assert delivery.attempts == 1  # a new secret, not new tries
    assert pipeline.confirm(wrong(), action=action.pk).attempts_left == 1
    assert pipeline.confirm(wrong(), action=action.pk).status == "locked"
    assert pipeline.confirm(newest_code(), action=action.pk).status == "locked"
    assert Profile.objects.get(pk=profile.pk).email == "code@example.org"


def test_a_resent_change_still_expires_at_its_deadline(eager, confirmation_settings, no_resend_cooldown):
    address = "deadline-new@example.org"
    deadline = timezone.now() + timedelta(minutes=5)
    _profile, action = stage_change("deadline@example.org", address, valid_until=deadline)
    assert pipeline.resend(action).sent
    assert lifecycle.expire(now=deadline + timedelta(seconds=1)) == 1
    assert pipeline.confirm(link_token(mails_to(address)[-1])).status == "expired"


def test_without_valid_until_resends_never_keep_a_change_open_past_three_times_its_expiry(
        eager, confirmation_settings, no_resend_cooldown):
    """A change saved without ``valid_until`` may be resent (a lost mail, a returned letter) and each new secret
    gets the channel's EXPIRES again, but never past three times EXPIRES after the save: resending every so
    often never makes a change confirmable forever."""
    confirmation_settings(CHANNELS={"email": {"EXPIRES": timedelta(hours=1), "RESEND_COOLDOWN": None}})
    address = "no-deadline-new@example.org"
    _profile, action = stage_change("no-deadline@example.org", address)
    saved = fresh(action)
    assert saved.deadline == saved.created_at + timedelta(hours=3)
    assert pipeline.resend(action).sent  # early: a full hour again
    assert fresh(action).valid_until > saved.valid_until

    # Two and a half hours after the save (resent in between), half an hour of the lifetime is left.
    now = timezone.now()
    back = saved.created_at - (now - timedelta(hours=2, minutes=30))
    DeferredAction.objects.filter(pk=action.pk).update(
        created_at=saved.created_at - back, deadline=saved.deadline - back, valid_until=now + timedelta(minutes=10))
    Delivery.objects.filter(action=action).update(expires_at=now + timedelta(minutes=10))
    assert pipeline.resend(action).sent
    action, delivery = fresh(action), delivery_of(action)
    assert action.valid_until == action.deadline == delivery.expires_at  # cut at the deadline, not an hour
    assert action.deadline - now < timedelta(minutes=31)
    assert lifecycle.expire(now=action.deadline + timedelta(milliseconds=1)) == 1
    assert pipeline.confirm(link_token(mails_to(address)[-1])).status == "expired"


# --- a stuck apply ----------------------------------------------------------------------------------
def test_an_apply_that_keeps_hitting_the_database_ends_failed_after_max_redrives(eager, confirmation_settings,
                                                                                 task_log):
    confirmation_settings(MAX_REDRIVES=2)
    profile, action = stage_change("db-away@example.org", "db-away-new@example.org", form_class=DatabaseAwayForm)
    with messages_lost():
        assert pipeline.confirm(link_token(mails_to("db-away-new@example.org")[0])).ok
    assert fresh(action).state == State.CONFIRMED

    now = timezone.now()
    for _sweep in range(5):
        now += STEP
        lifecycle.redrive(now=now)
    assert len(task_log.args_of(dispatch.APPLY_ACTION)) == 2  # MAX_REDRIVES re-queued applies, each raising
    action = fresh(action)
    assert action.state == State.FAILED
    assert action.failure_reason == "gave up after 2 redrives: the change was never applied"
    assert Profile.objects.get(pk=profile.pk).email == "db-away@example.org"


# --- a channel removed from settings ----------------------------------------------------------------
def test_a_channel_removed_from_settings_ends_its_actions_and_no_sweep_raises(eager, confirmation_settings):
    confirmation_settings(CHANNELS={"email": {},
                                    "pager": {"BACKEND": "deferred_confirmation.pipeline.channels.email.EmailChannel"}},
                          DEFAULT_CHANNELS=["pager"])
    with messages_lost():  # queued: its generate_token lost
        _p, queued = stage_change("pager-q@example.org", "pager-q-new@example.org")
    _p, sent = stage_change("pager-s@example.org", "pager-s-new@example.org")  # notified, waiting
    _p, overdue = stage_change("pager-o@example.org", "pager-o-new@example.org")
    _p, done = stage_change("pager-d@example.org", "pager-d-new@example.org")
    assert pipeline.cancel(done)
    assert fresh(sent).state == State.NOTIFIED and fresh(queued).state == State.PENDING

    confirmation_settings(CHANNELS={"email": {}}, DEFAULT_CHANNELS=["email"])  # the operator removes "pager"

    result = pipeline.resend(sent)
    assert not result.sent and result.refusal is None  # the page answers 410, not 500
    DeferredAction.objects.filter(pk=overdue.pk).update(valid_until=timezone.now())
    assert lifecycle.expire() == 1
    now = timezone.now() + STEP
    assert lifecycle.redrive(now=now) == 2
    for action in (queued, sent):
        action = fresh(action)
        assert action.state == State.FAILED
        assert action.failure_reason == "the pager channel is no longer configured"
        assert delivery_of(action).status == DeliveryStatus.FAILED
    assert fresh(overdue).state == State.EXPIRED
    assert lifecycle.redrive(now=now + STEP) == 0
    DeferredAction.objects.update(updated_at=timezone.now() - timedelta(days=31))
    assert lifecycle.purge() == 4
    assert not Delivery.objects.exists()


# --- apply: every failure ends ----------------------------------------------------------------------
BROKEN_MODULES = {
    "syntax-error": ("def broken(:\n", "SyntaxError"),
    "raises-at-import": ("raise RuntimeError('a setting this module needs is missing')\n", "RuntimeError"),
    "name-error": ("ProfileEmailForm = NoSuchBaseForm\n", "NameError"),
}


def _confirmed(old: str, new: str, form_class=None):
    kwargs = {"form_class": form_class} if form_class else {}
    profile, action = stage_change(old, new, **kwargs)
    with messages_lost():
        assert pipeline.confirm(link_token(mails_to(new)[0])).ok
    return profile, fresh(action)


def _assert_failed_and_left_alone(action, reason_part):
    action = fresh(action)
    assert action.state == State.FAILED
    assert reason_part in action.failure_reason
    assert lifecycle.redrive(now=timezone.now() + STEP) == 0


@pytest.mark.parametrize("source,error", BROKEN_MODULES.values(), ids=BROKEN_MODULES.keys())
def test_a_form_module_that_no_longer_imports_fails_the_action(eager, signal_log, tmp_path, monkeypatch, source,
                                                              error):
    module = f"dc_broken_{uuid.uuid4().hex}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    profile, action = _confirmed("import@example.org", "import-new@example.org")
    DeferredAction.objects.filter(pk=action.pk).update(form_class=f"{module}.ProfileEmailForm")

    assert lifecycle.apply(action.pk) is False

    _assert_failed_and_left_alone(action, f"{module}.ProfileEmailForm can no longer be imported ({error})")
    assert signal_log.count("confirmation_failed", action.pk) == 1
    assert Profile.objects.get(pk=profile.pk).email == "import@example.org"


def test_a_create_whose_form_no_longer_imports_fails_and_is_signalled(eager, signal_log, tmp_path, monkeypatch):
    """A create has no target row: the model its receivers are told of comes from the form, which is broken."""
    module = f"dc_broken_{uuid.uuid4().hex}"
    (tmp_path / f"{module}.py").write_text("def broken(:\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    form = CreatesNothingForm({"email": "create-import@example.org", "nickname": "n"})
    assert form.is_valid(), form.errors
    action = form.save()
    with messages_lost():
        assert pipeline.confirm(link_token(mails_to("create-import@example.org")[0])).ok
    DeferredAction.objects.filter(pk=action.pk).update(form_class=f"{module}.ProfileForm")

    assert lifecycle.apply(action.pk) is False

    _assert_failed_and_left_alone(action, "can no longer be imported (SyntaxError)")
    assert signal_log.count("confirmation_failed", action.pk) == 1


def test_a_form_class_without_a_model_fails_the_action(eager):
    profile, action = _confirmed("nomodel@example.org", "nomodel-new@example.org")
    DeferredAction.objects.filter(pk=action.pk).update(form_class="django.forms.Form")
    assert lifecycle.apply(action.pk) is False
    _assert_failed_and_left_alone(action, "django.forms.Form is not a form of a model")
    assert Profile.objects.get(pk=profile.pk).email == "nomodel@example.org"


def test_a_target_key_that_cannot_be_read_fails_the_action(eager):
    profile, action = _confirmed("badpk@example.org", "badpk-new@example.org")
    DeferredAction.objects.filter(pk=action.pk).update(object_pk="not-a-number")
    assert lifecycle.apply(action.pk) is False
    _assert_failed_and_left_alone(action, "The profile this change was for cannot be read")
    assert Profile.objects.get(pk=profile.pk).email == "badpk@example.org"


def test_a_create_whose_save_confirmed_returns_nothing_fails_the_action(eager, signal_log):
    form = CreatesNothingForm({"email": "nothing@example.org", "nickname": "n"})
    assert form.is_valid(), form.errors
    action = form.save()
    with messages_lost():
        assert pipeline.confirm(link_token(mails_to("nothing@example.org")[0])).ok
    assert lifecycle.apply(action.pk) is False
    _assert_failed_and_left_alone(action, "save_confirmed() returned no saved object")
    assert not Profile.objects.filter(email="nothing@example.org").exists()  # rolled back
    assert signal_log.count("confirmation_failed", action.pk) == 1


# --- sign-up takeover: the apply side ---------------------------------------------------------------
@pytest.mark.parametrize("elsewhere", [True, False], ids=["confirmed-elsewhere", "confirmed-by-the-saver"])
def test_a_sign_up_confirmed_elsewhere_gets_no_password_from_whoever_saved_it(eager, elsewhere):
    typed = "attacker-knows-this-1"
    form = SignUpForm({"username": "victim", "email": "victim@example.org", "password": typed})
    assert form.is_valid(), form.errors
    action = form.save()
    with messages_lost():
        assert pipeline.confirm(link_token(mails_to("victim@example.org")[0])).ok
    DeferredAction.objects.filter(pk=action.pk).update(confirmed_elsewhere=elsewhere)

    assert lifecycle.apply(action.pk) is True

    user = get_user_model().objects.get(username="victim")
    assert fresh(action).state == State.APPLIED
    assert user.has_usable_password() is not elsewhere
    assert (authenticate(username="victim", password=typed) is not None) is not elsewhere


# --- through a real worker --------------------------------------------------------------------------
def test_a_real_worker_ends_a_failing_send_failed_after_bounded_redrives(confirmation_settings, worker, task_log):
    confirmation_settings(MAX_REDRIVES=2, CHANNELS={"email": {"BACKEND": f"{HERE}.SendsThenBreaks"}})
    address = "worker-broken-new@example.org"
    _profile, action = stage_change("worker-broken@example.org", address)

    def sends_finished(count: int):
        return len(task_log.returned(dispatch.SEND_NOTIFICATION)) >= count

    wait_for(lambda: sends_finished(1), what="the first send")
    now = timezone.now()
    for sweep in range(1, 5):
        now += STEP
        lifecycle.redrive(now=now)
        if sweep <= 2:
            wait_for(lambda sweep=sweep: sends_finished(sweep + 1), what=f"the re-send of sweep {sweep}")
        wait_for(lambda: Delivery.objects.filter(action=action, sending_until__isnull=True).exists(),
                 what="the send to let go of its delivery")

    assert len(mails_to(address)) == 3
    action = fresh(action)
    assert action.state == State.FAILED and action.redrives == 2
    assert action.failure_reason.startswith("gave up after 2 redrives: ")
    assert len(task_log.args_of(dispatch.SEND_NOTIFICATION)) == 3
