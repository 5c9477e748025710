"""The Twilio delivery-status webhook: signed reports update the delivery, anything else is refused."""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

import pytest
from django.test import Client
from django.urls import reverse

from deferred_confirmation import pipeline
from deferred_confirmation.django_integration.models import Delivery
from example.fakes.twilio import signature
from tests.channels.sms.conftest import new_profile
from tests.channels.sms.forms import ProfilePhoneForm
from tests.conftest import own

WEBHOOK = "/confirm/webhooks/twilio/status/"


@pytest.fixture
def csrf_client() -> Client:
    return Client(enforce_csrf_checks=True)  # Twilio sends no CSRF token


def report(client: Client, fake, sid: str, status: str | None = None, error_code: int | None = None, **changes):
    """POST the report the fake Twilio would send; ``changes`` alter it after signing (a forgery)."""
    url, params, signed = fake.status_callback(sid, status, error_code)
    params.update(changes)
    return client.post(urlsplit(url).path, params, HTTP_X_TWILIO_SIGNATURE=signed)


def test_the_url_is_stable():
    assert reverse("confirmation:twilio_status") == WEBHOOK


def test_delivered(stage_sms, fake_twilio, csrf_client):
    staged = stage_sms()
    response = report(csrf_client, fake_twilio, staged.message["sid"], "delivered")
    assert response.status_code == 200
    assert staged.delivery.status == "delivered"
    assert response["Cache-Control"].startswith("max-age=0")
    assert staged.refresh().action.state == "notified"  # still waiting for the code
    assert report(csrf_client, fake_twilio, staged.message["sid"], "undelivered", 30003).status_code == 200
    assert staged.delivery.status == "delivered"  # delivered is final


def test_intermediate_statuses_change_nothing(stage_sms, fake_twilio, csrf_client):
    staged = stage_sms()
    for status in ("queued", "sending", "sent", "accepted", "bogus"):
        assert report(csrf_client, fake_twilio, staged.message["sid"], status).status_code == 200
    assert staged.delivery.status == "sent"


@pytest.mark.parametrize(("status", "code"), [("undelivered", 30003), ("failed", 30006), ("failed", None)])
def test_failed_marks_the_delivery_and_the_action_failed(stage_sms, fake_twilio, csrf_client, client, status, code):
    staged = stage_sms()
    assert report(csrf_client, fake_twilio, staged.message["sid"], status, code).status_code == 200
    delivery = staged.delivery
    assert delivery.status == "failed"
    assert delivery.status_detail.startswith(f"{code}: {status}" if code else status)
    assert delivery.secret_digest == ""
    staged.refresh()
    assert staged.action.state == "failed"
    assert (str(code) if code else status) in staged.action.failure_reason
    own(client, staged.action)
    assert client.post(reverse("confirmation:code", args=[staged.action.pk]),
                       {"code": staged.code}).status_code == 410


def test_forged_signature_is_403(stage_sms, fake_twilio, csrf_client):
    staged = stage_sms()
    url, params, _signed = fake_twilio.status_callback(staged.message["sid"], "undelivered", 30003)
    forged = signature("not-the-auth-token", url, params)
    response = csrf_client.post(urlsplit(url).path, params, HTTP_X_TWILIO_SIGNATURE=forged)
    assert response.status_code == 403
    assert staged.delivery.status == "sent"


def test_tampered_report_is_403(stage_sms, fake_twilio, csrf_client):
    staged = stage_sms()
    response = report(csrf_client, fake_twilio, staged.message["sid"], "delivered", MessageStatus="failed")
    assert response.status_code == 403
    assert staged.delivery.status == "sent"


def test_missing_signature_is_403(stage_sms, fake_twilio, csrf_client):
    staged = stage_sms()
    url, params, _signed = fake_twilio.status_callback(staged.message["sid"], "failed", 30006)
    assert csrf_client.post(urlsplit(url).path, params).status_code == 403
    assert csrf_client.post(urlsplit(url).path, params, HTTP_X_TWILIO_SIGNATURE="").status_code == 403
    assert csrf_client.post(urlsplit(url).path, params, HTTP_X_TWILIO_SIGNATURE="x" * 10_000).status_code == 403
    assert staged.delivery.status == "sent"


def test_signature_is_checked_against_site_url_not_the_host_header(stage_sms, fake_twilio, csrf_client):
    """A report signed for the URL an attacker's Host header would make is refused."""
    staged = stage_sms()
    _url, params, _signed = fake_twilio.status_callback(staged.message["sid"], "failed", 30006)
    as_host = signature(fake_twilio.auth_token, f"http://localhost{WEBHOOK}", params)
    response = csrf_client.post(WEBHOOK, params, HTTP_HOST="localhost", HTTP_X_TWILIO_SIGNATURE=as_host)
    assert response.status_code == 403
    assert staged.delivery.status == "sent"


def test_unknown_message_is_200_and_ignored(db, fake_twilio, csrf_client):
    params = {"MessageSid": "SM" + "f" * 32, "MessageStatus": "delivered", "AccountSid": fake_twilio.account_sid}
    url = f"https://confirm.example.org{WEBHOOK}"
    response = csrf_client.post(WEBHOOK, params, HTTP_X_TWILIO_SIGNATURE=signature(fake_twilio.auth_token, url,
                                                                                    params))
    assert response.status_code == 200
    assert not Delivery.objects.exists()


def test_only_post(db, csrf_client):
    assert csrf_client.get(WEBHOOK).status_code == 405


def test_a_late_report_about_the_message_before_a_resend_changes_nothing(stage_sms, sms_channel, fake_twilio,
                                                                         csrf_client):
    sms_channel(RESEND_COOLDOWN=None)
    staged = stage_sms()
    old_sid = staged.message["sid"]
    assert pipeline.resend(staged.action)  # its tasks are not run: the new code is not sent yet
    delivery = staged.delivery
    assert delivery.status == "queued" and delivery.provider_ref == old_sid
    assert report(csrf_client, fake_twilio, old_sid, "undelivered", 30003).status_code == 200
    assert staged.delivery.status == "queued"
    assert staged.refresh().action.state == "notified"


@pytest.fixture
def site(transactional_db, settings):
    """This Django project served over HTTP on loopback (as the demo's web process), SITE_URL pointing at it."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from django.core.wsgi import get_wsgi_application

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", 0, get_wsgi_application(), handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    settings.DEFERRED_CONFIRMATION = {**settings.DEFERRED_CONFIRMATION, "SITE_URL": url}
    yield url
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_the_fake_posts_signed_reports_over_http(site, eager, fake_twilio):
    """What the demo does: the fake Twilio POSTs the report to the running site's StatusCallback."""
    form = ProfilePhoneForm({"phone": "+1 202 555 0199"}, instance=new_profile())
    assert form.is_valid(), form.errors
    action = form.save()  # autocommit: the eager tasks run at once
    message = fake_twilio.wait_for_messages(1)[0]
    assert message["params"]["StatusCallback"] == site + WEBHOOK
    assert fake_twilio.send_status_callback(message["sid"], "delivered") == 200
    assert Delivery.objects.get(action=action).status == "delivered"
    assert fake_twilio.send_status_callback(message["sid"], "failed", 30006, url=site + WEBHOOK + "?x=1") == 200
    assert Delivery.objects.get(action=action).status == "delivered"  # signed for its URL, but delivered is final
    url = fake_twilio.status_callback(message["sid"])[0]
    assert fake_twilio.send_status_callback(message["sid"], url=url.replace("127.0.0.1", "localhost")) == 403
