"""The SMS flow with the tasks run eagerly: what Twilio is sent, the code page, locking, expiry, resend,
send limits, Twilio's permanent errors, and no second SMS when a send is retried."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.urls import reverse
from django.utils import timezone

from deferred_confirmation import pipeline
from deferred_confirmation.django_integration.models import DeferredAction, Delivery
from deferred_confirmation.pipeline import dispatch, tokens
from deferred_confirmation.pipeline.channels import TransientChannelError, get_channel
from tests.channels.sms.conftest import FROM, PHONE, code_in, code_url, new_profile, wrong
from tests.channels.sms.forms import ProfilePhoneForm
from tests.conftest import own

SITE = "https://confirm.example.org"


def test_save_texts_a_code_and_a_link_to_the_code_page(stage_sms, fake_twilio):
    staged = stage_sms()
    params = staged.message["params"]
    assert params["To"] == PHONE
    assert params["From"] == FROM
    body = params["Body"]
    assert len(staged.code) == 6 and staged.code.isdigit()
    assert f"{SITE}/confirm/code/{staged.action.pk}/" in body
    assert body.endswith(f"@confirm.example.org #{staged.code}")  # origin-bound code: browser autofill
    assert params["StatusCallback"] == f"{SITE}/confirm/webhooks/twilio/status/"
    assert 590 <= int(params["ValidityPeriod"]) <= 600  # what is left of the 10 minutes
    request = fake_twilio.requests_of("POST")[0]
    assert request.headers["authorization"].startswith("Basic ")
    delivery = staged.delivery
    assert delivery.status == "sent" and delivery.provider_ref == staged.message["sid"]
    assert delivery.recipient == PHONE
    assert staged.code not in delivery.secret_digest and delivery.secret_digest == tokens.code_digest(
        delivery.pk, staged.code)
    assert staged.action.state == "notified"
    assert staged.profile.phone == ""  # nothing changes before confirmation


def test_messaging_service_instead_of_a_from_number(stage_sms, sms_channel):
    sms_channel(options={"FROM": None, "MESSAGING_SERVICE_SID": "MG" + "1" * 32})
    params = stage_sms().message["params"]
    assert params["MessagingServiceSid"] == "MG" + "1" * 32
    assert "From" not in params


def test_the_body_template_is_overridable(stage_sms, settings, tmp_path):
    (tmp_path / "confirmation" / "sms").mkdir(parents=True)
    (tmp_path / "confirmation" / "sms" / "body.txt").write_text(
        "{{ code }} is your confirmation code for <Example & Co> ({{ minutes }} min): {{ code_url }}\n")
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [str(tmp_path)]}]
    staged = stage_sms()
    assert staged.message["body"] == (f"{staged.code} is your confirmation code for <Example & Co> (10 min): "
                                      f"{SITE}{code_url(staged.action)}")


def test_wrong_code_then_right_code_applies(stage_sms, client, run_on_commit):
    staged = stage_sms()
    own(client, staged.action)
    response = client.post(code_url(staged.action), {"code": wrong(staged.code)})
    assert response.status_code == 400
    assert "4 attempts left" in response.content.decode()
    with run_on_commit():
        response = client.post(code_url(staged.action), {"code": f"{staged.code[:3]} {staged.code[3:]}"})
    assert response.status_code == 302
    assert response["Location"] == reverse("confirmation:status", args=[staged.action.pk])
    staged.refresh()
    assert staged.action.state == "applied"
    assert staged.profile.phone == PHONE
    assert client.post(code_url(staged.action), {"code": staged.code}).status_code == 409


def test_attempts_exhausted_locks_the_action(stage_sms, client, run_on_commit):
    staged = stage_sms()
    own(client, staged.action)
    url, bad = code_url(staged.action), wrong(staged.code)
    for left in (4, 3, 2, 1):
        response = client.post(url, {"code": bad})
        assert response.status_code == 400
        assert f"{left} attempt{'s' if left > 1 else ''} left" in response.content.decode()
    locked = client.post(url, {"code": bad})
    assert locked.status_code == 403
    assert staged.refresh().action.state == "locked"
    with run_on_commit():
        assert client.post(url, {"code": staged.code}).status_code == 403
    assert staged.refresh().profile.phone == ""


def test_an_expired_code_is_refused(stage_sms, client):
    staged = stage_sms()
    own(client, staged.action)
    Delivery.objects.filter(pk=staged.delivery.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client.post(code_url(staged.action), {"code": staged.code})
    assert response.status_code == 410
    assert staged.refresh().profile.phone == ""
    DeferredAction.objects.filter(pk=staged.action.pk).update(valid_until=timezone.now() - timedelta(seconds=1))
    assert client.post(code_url(staged.action), {"code": staged.code}).status_code == 410
    assert staged.refresh().action.state == "expired"


CODES = {"10kB": "1" * 10_240, "arabic-indic": "\u0661\u0662\u0663\u0664\u0665\u0666",
         "fullwidth": "\uff11\uff12\uff13\uff14\uff15\uff16", "1e3": "1e3", "exponent-6": "1e3456",
         "seven": "1234567", "null-byte": "123\x00456"}


@pytest.mark.parametrize("typed", CODES.values(), ids=CODES.keys())
def test_malformed_codes_are_400_and_cost_no_attempt(stage_sms, client, typed):
    staged = stage_sms()
    own(client, staged.action)
    response = client.post(code_url(staged.action), {"code": typed})
    assert response.status_code == 400
    assert staged.delivery.attempts == 0
    assert staged.refresh().action.state == "notified"


def test_resend_texts_a_new_code_and_the_old_one_dies(stage_sms, sms_channel, client, run_on_commit, fake_twilio):
    sms_channel(RESEND_COOLDOWN=None)
    staged = stage_sms()
    own(client, staged.action)
    with run_on_commit():
        response = client.post(reverse("confirmation:resend", args=[staged.action.pk]))
    assert response.status_code == 200
    assert len(fake_twilio.messages) == 2
    new_code = code_in(fake_twilio.messages[-1]["body"])
    assert staged.delivery.provider_ref == fake_twilio.messages[-1]["sid"]
    if new_code != staged.code:
        assert client.post(code_url(staged.action), {"code": staged.code}).status_code == 400
    with run_on_commit():
        assert client.post(code_url(staged.action), {"code": new_code}).status_code == 302
    assert staged.refresh().action.state == "applied"


def test_resend_within_the_cooldown_is_429(stage_sms, client, fake_twilio):
    staged = stage_sms()
    own(client, staged.action)
    response = client.post(reverse("confirmation:resend", args=[staged.action.pk]))
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
    assert len(fake_twilio.messages) == 1
    assert client.post(code_url(staged.action), {"code": staged.code}).status_code == 302  # still works


def test_sixth_save_to_one_number_is_a_form_error(stage_sms, fake_twilio):
    profile = new_profile()
    for _ in range(5):
        stage_sms(profile=profile)
    other_spelling = ProfilePhoneForm({"phone": "+1 202 555 0123"}, instance=new_profile())
    assert not other_spelling.is_valid()
    assert "Too many confirmation messages" in " ".join(other_spelling.non_field_errors())
    assert len(fake_twilio.messages) == 5
    assert ProfilePhoneForm({"phone": "+1 202 555 0124"}, instance=profile).is_valid()  # another number


PERMANENT = {
    21211: (400, "The 'To' number +12025550123 is not a valid phone number."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21614: (400, "'To' number +12025550123 is not a valid mobile number"),
    21999: (400, "Some other client error"),
}


@pytest.mark.parametrize("code", PERMANENT, ids=str)
def test_permanent_errors_fail_the_delivery_and_the_action_without_retry(stage_sms, fake_twilio, task_log, code):
    status, message = PERMANENT[code]
    fake_twilio.fail_next(status, code=code, message=message)
    staged = stage_sms(sent=False)
    delivery = staged.delivery
    assert delivery.status == "failed"
    assert delivery.status_detail.startswith(f"{code}: HTTP {status} from Twilio")
    assert delivery.secret_digest == ""
    assert staged.action.state == "failed"
    assert str(code) in staged.action.failure_reason
    for stored in (delivery.status_detail, staged.action.failure_reason):
        assert "2025550123" not in stored
    assert len(fake_twilio.requests_of("POST")) == 1 and not fake_twilio.messages
    assert len(task_log.args_of(dispatch.SEND_NOTIFICATION)) == 1


# --- a retried send does not text twice -------------------------------------------------------------------
def retry_send(staged, fake_twilio):
    """Call the channel as the retried task would: the delivery has one earlier call to the provider."""
    delivery = staged.delivery
    delivery.send_attempts = 1
    return get_channel("sms").send(delivery=delivery, action=staged.action, secret=staged.code)


def test_a_retry_finds_the_message_twilio_already_accepted(stage_sms, fake_twilio):
    staged = stage_sms()
    assert retry_send(staged, fake_twilio) == staged.message["sid"]
    assert len(fake_twilio.requests_of("POST")) == 1 and len(fake_twilio.messages) == 1
    listing = fake_twilio.requests_of("GET")[0]
    assert listing.query["To"] == PHONE and "DateSent>" in listing.query


def test_a_retry_finds_a_message_still_queued_at_twilio(stage_sms, fake_twilio):
    fake_twilio.auto_send = False  # no date_sent yet: invisible to a DateSent filter
    staged = stage_sms()
    assert retry_send(staged, fake_twilio) == staged.message["sid"]
    assert len(fake_twilio.messages) == 1
    assert len(fake_twilio.requests_of("GET")) == 2  # dated list, then the newest page


def test_a_retry_sends_when_the_first_call_never_reached_twilio(stage_sms, fake_twilio):
    staged = stage_sms()
    fake_twilio.reset()  # as if the first POST had been lost on the way
    sid = retry_send(staged, fake_twilio)
    assert [m["sid"] for m in fake_twilio.messages] == [sid]
    assert code_in(fake_twilio.messages[0]["body"]) == staged.code


def test_a_retry_that_cannot_look_is_retried_later_without_sending(stage_sms, fake_twilio):
    staged = stage_sms()
    fake_twilio.fail_next(500, method="GET")
    with pytest.raises(TransientChannelError, match="earlier attempt"):
        retry_send(staged, fake_twilio)
    assert len(fake_twilio.requests_of("POST")) == 1


def test_the_status_callback_is_the_webhook_url(stage_sms):
    params = stage_sms().message["params"]
    assert urlsplit(params["StatusCallback"]).path == reverse("confirmation:twilio_status")


def test_a_retry_minutes_later_still_finds_the_message(stage_sms, fake_twilio):
    """The body's "within N min" has changed since the first attempt; the code and the link have not."""
    staged = stage_sms()
    assert "within 10 min" in staged.message["body"]
    Delivery.objects.filter(pk=staged.delivery.pk).update(expires_at=timezone.now() + timedelta(minutes=6))
    assert retry_send(staged, fake_twilio) == staged.message["sid"]
    assert len(fake_twilio.messages) == 1


def test_a_retry_does_not_take_an_earlier_generations_message(stage_sms, sms_channel, fake_twilio, run_on_commit):
    sms_channel(RESEND_COOLDOWN=None)
    staged = stage_sms()
    with run_on_commit():
        assert pipeline.resend(staged.action)
    first, second = fake_twilio.messages
    staged.code = code_in(second["body"])
    if staged.code == code_in(first["body"]):
        pytest.skip("the two random codes happen to be equal")
    fake_twilio.forget(second["sid"])  # the new code's text never reached Twilio; the old one's did
    sid = retry_send(staged, fake_twilio)
    assert sid != first["sid"]
    assert [code_in(m["body"]) for m in fake_twilio.messages] == [code_in(first["body"]), staged.code]
