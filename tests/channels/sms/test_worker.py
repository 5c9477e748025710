"""End to end with a real Celery worker (threads of this process) on the real Redis, the real twilio SDK and
the fake Twilio on loopback: the code is texted, typed back and applied; Twilio's hiccups are retried;
a retry after Twilio accepted the message texts nobody twice."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from deferred_confirmation.django_integration.models import DeferredAction, Delivery
from deferred_confirmation.pipeline import dispatch
from tests.channels.sms.conftest import FROM, PHONE, PHONE_TYPED, code_in, code_url, new_profile, wrong
from tests.channels.sms.forms import ProfilePhoneForm
from tests.conftest import own
from tests.testapp.models import Profile
from tests.workers.conftest import wait_for


def save_change(phone: str = PHONE_TYPED) -> DeferredAction:
    form = ProfilePhoneForm({"phone": phone}, instance=new_profile())
    assert form.is_valid(), form.errors
    return form.save()  # autocommit: the tasks are published at once


def delivery_in(action: DeferredAction, *statuses: str) -> Delivery | None:
    return Delivery.objects.filter(action=action, status__in=statuses).first()


def test_end_to_end(worker, fake_twilio):
    action = save_change()
    message = fake_twilio.wait_for_messages(1)[0]
    params = message["params"]
    assert params["To"] == PHONE and params["From"] == FROM
    code = code_in(params["Body"])
    assert f"https://confirm.example.org{code_url(action)}" in params["Body"]
    assert params["StatusCallback"] == "https://confirm.example.org" + reverse("confirmation:twilio_status")
    assert 0 < int(params["ValidityPeriod"]) <= 600
    delivery = wait_for(lambda: delivery_in(action, "sent"), what="the delivery recorded as sent")
    assert delivery.provider_ref == message["sid"]

    client = Client()
    own(client, action)
    response = client.post(code_url(action), {"code": wrong(code)})
    assert response.status_code == 400
    assert "4 attempts left" in response.content.decode()
    response = client.post(code_url(action), {"code": code})
    assert response.status_code == 302
    wait_for(lambda: DeferredAction.objects.filter(pk=action.pk, state="applied").exists(), what="the apply")
    assert Profile.objects.get(pk=action.object_pk).phone == PHONE
    assert len(fake_twilio.messages) == 1


TRANSIENT = {
    "429": lambda fake: fake.fail_next(429, code=20429, message="Too Many Requests"),
    "500": lambda fake: fake.fail_next(500),
    "timeout": lambda fake: fake.hang_next(3.0),
}


@pytest.mark.parametrize("hiccup", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_transient_errors_are_retried_then_delivered(worker, fake_twilio, sms_channel, fast_retries, task_log,
                                                     hiccup):
    sms_channel(options={"TIMEOUT": 0.5})
    hiccup(fake_twilio)
    action = save_change()
    delivery = wait_for(lambda: delivery_in(action, "sent"), what="the delivery after a retry")
    assert [m["sid"] for m in fake_twilio.messages] == [delivery.provider_ref]
    assert len(fake_twilio.requests_of("POST")) == 2
    assert len(task_log.args_of(dispatch.SEND_NOTIFICATION)) == 2
    assert DeferredAction.objects.get(pk=action.pk).state == "notified"


LOST_ANSWER = {
    "dropped": lambda fake: fake.drop_next(accept=True),
    "too-late": lambda fake: fake.hang_next(3.0, accept=True),
}


@pytest.mark.parametrize("lose", LOST_ANSWER.values(), ids=LOST_ANSWER.keys())
def test_a_retry_after_twilio_accepted_texts_only_once(worker, fake_twilio, sms_channel, fast_retries, task_log,
                                                       lose):
    sms_channel(options={"TIMEOUT": 0.5})
    lose(fake_twilio)
    action = save_change()
    delivery = wait_for(lambda: delivery_in(action, "sent"), what="the delivery after a retry")
    assert len(fake_twilio.messages) == 1, "one SMS only"
    assert delivery.provider_ref == fake_twilio.messages[0]["sid"]
    assert len(fake_twilio.requests_of("POST")) == 1
    assert fake_twilio.requests_of("GET"), "the retry looked for the earlier message"
    assert len(task_log.args_of(dispatch.SEND_NOTIFICATION)) == 2


def test_a_permanent_error_is_not_retried(worker, fake_twilio, task_log):
    fake_twilio.fail_next(400, code=21211, message=f"The 'To' number {PHONE} is not a valid phone number.")
    action = save_change()
    wait_for(lambda: DeferredAction.objects.filter(pk=action.pk, state="failed").exists(), what="the failure")
    delivery = Delivery.objects.get(action=action)
    assert delivery.status == "failed" and delivery.status_detail.startswith("21211:")
    assert PHONE not in delivery.status_detail
    assert len(fake_twilio.requests_of("POST")) == 1
    assert len(task_log.args_of(dispatch.SEND_NOTIFICATION)) == 1
