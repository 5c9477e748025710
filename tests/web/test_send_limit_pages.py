"""A send limit reached by a client is a form error on the page, never a server error.

Threat: per-client and per-user limits (SEND_LIMIT_PER_CLIENT) used to be checked only inside ``save()``, which then
raised.  A view written like the quickstart's answered 500, and Django's error report (mailed to the site's
admins) carried the POST in clear: a new account's password, a new bank account's number.  A form given the
request checks every limit while validating, so ``is_valid()`` is False with a message that says when to try
again; and any crash after the form was bound leaves its sensitive fields out of the error report.  Through the
Django test client and the real middleware stack.
"""

from __future__ import annotations

import sys

import pytest
from django.core.signals import got_request_exception
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.test import Client
from django.urls import path, reverse
from django.views.debug import ExceptionReporter

from deferred_confirmation.django_integration.models import DeferredAction, SendRecord
from deferred_confirmation.pipeline import limits
from deferred_confirmation.pipeline.lifecycle.staging import recipients_for
from tests.channels.microdeposit.forms import BankAccountForm
from tests.testapp.forms import ProfileEmailForm
from tests.testapp.models import Profile
from tests.urls import urlpatterns as project_urls
from tests.web.signup import SignUpForm

pytestmark = pytest.mark.urls(__name__)

ATTACKER, OTHER = "203.0.113.5", "198.51.100.7"
PASSWORD = "correct horse battery staple 42"


def change_email(request: HttpRequest, pk: int) -> HttpResponse:
    """A project's page written as the quickstart shows: the form given the request, no try/except."""
    form = ProfileEmailForm(request.POST, instance=get_object_or_404(Profile, pk=pk), request=request)
    if form.is_valid():
        action = form.save()
        return redirect("confirmation:status", action_id=action.pk)
    response = HttpResponse(" ".join(form.non_field_errors()) or str(form.errors),
                            status=429 if form.send_refusal else 400)
    if form.send_refusal:
        response["Retry-After"] = str(form.send_refusal.retry_after)
    return response


def sign_up_then_break(request: HttpRequest) -> HttpResponse:
    """A sign-up page with a bug after the form was bound (a template, a signal receiver, the view itself)."""
    form = SignUpForm(request.POST, request=request)
    form.is_valid()
    raise RuntimeError("a bug in the project's view")


def change_bank_account_in_a_race(request: HttpRequest, pk: int) -> HttpResponse:
    """A bank account change whose save() meets a limit reached by a parallel request since validation, in a
    view that does not catch SendLimitExceeded: a server error, reported."""
    form = BankAccountForm(request.POST, instance=get_object_or_404(Profile, pk=pk), request=request)
    assert form.is_valid(), form.errors
    requester = limits.requester_keys(ATTACKER)
    for _ in range(2):  # the micro-deposit channel's SEND_LIMIT, used up meanwhile
        limits.record_send("microdeposit", recipients_for(form, ["microdeposit"])["microdeposit"],
                           requester=requester)
    form.save()
    return HttpResponse(status=202)


urlpatterns = [*project_urls, path("change-email/<int:pk>/", change_email, name="change_email"),
               path("sign-up/", sign_up_then_break, name="sign_up"),
               path("bank/<int:pk>/", change_bank_account_in_a_race, name="bank")]

_profiles = iter(range(1_000_000))


def save_from(client: Client, email: str) -> HttpResponse:
    profile = Profile.objects.create(email=f"page-own{next(_profiles)}@example.org")
    return client.post(reverse("change_email", args=[profile.pk]), {"email": email})


def test_the_client_limit_is_a_form_error_with_retry_after_not_a_500(db):
    attacker = Client(REMOTE_ADDR=ATTACKER, raise_request_exception=False)
    assert [save_from(attacker, f"page-victim{n}@example.org").status_code for n in range(10)] == [302] * 10
    refused = save_from(attacker, "page-victim10@example.org")
    assert refused.status_code == 429, refused.content[:300]
    assert "Too many confirmation messages were requested from here" in refused.content.decode()
    assert int(refused["Retry-After"]) > 0
    assert DeferredAction.objects.count() == 10  # nothing stored, nothing counted for the refused save
    assert SendRecord.objects.filter(channel=limits.CLIENT_SCOPE).count() == 10
    assert save_from(Client(REMOTE_ADDR=OTHER), "page-victim10@example.org").status_code == 302


def test_a_crash_after_binding_the_form_keeps_the_password_out_of_the_error_report(db):
    reports: list[str] = []

    def report(sender, request=None, **kwargs):
        reports.append(ExceptionReporter(request, *sys.exc_info(), is_email=True).get_traceback_text())

    got_request_exception.connect(report)
    try:
        response = Client(raise_request_exception=False).post(
            reverse("sign_up"), {"username": "crash-report", "email": "crash@example.org", "password": PASSWORD})
    finally:
        got_request_exception.disconnect(report)
    assert response.status_code == 500
    [text] = reports
    assert "a bug in the project's view" in text and "crash-report" in text  # the report is useful...
    assert PASSWORD not in text  # ...and holds no password


def test_a_crash_inside_save_keeps_the_account_number_out_of_every_frame_of_the_report(db, settings):
    """The HTML report (DEBUG pages, AdminEmailHandler(include_html=True), reporters using Django's filter) shows
    each frame's local variables: the functions holding a recipient show stars instead."""
    settings.DEFERRED_CONFIRMATION = {**settings.DEFERRED_CONFIRMATION, "CHANNELS": {"email": {}, "microdeposit": {}}}
    digits = "370400440532013000"
    reports: list[str] = []

    def report(sender, request=None, **kwargs):
        reporter = ExceptionReporter(request, *sys.exc_info(), is_email=True)
        reports.append(reporter.get_traceback_text() + reporter.get_traceback_html())

    got_request_exception.connect(report)
    try:
        response = Client(REMOTE_ADDR=ATTACKER, raise_request_exception=False).post(
            reverse("bank", args=[Profile.objects.create(email="bank-crash@example.org").pk]),
            {"bank_holder": "Ada Lovelace", "bank_iban": "DE89 3704 0044 0532 0130 00"})
    finally:
        got_request_exception.disconnect(report)
    assert response.status_code == 500
    [text] = reports
    assert "SendLimitExceeded" in text and "stage" in text  # the report still says what happened, and where
    assert digits not in "".join(text.split())
