"""Pages and messages in the person's language (docs/concepts.md#languages): the status, code and resend pages
follow the request's Accept-Language (LocaleMiddleware), and a change saved during a German request is mailed in German
with ``Content-Language: de`` even though the mail is rendered after the request, in the server's language."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.middleware import SessionMiddleware
from django.core import mail
from django.http import HttpResponse
from django.middleware.locale import LocaleMiddleware
from django.test import RequestFactory
from django.urls import reverse
from django.utils import translation

from deferred_confirmation.django_integration.models import DeferredAction
from tests.conftest import own
from tests.testapp.forms import ProfileEmailForm
from tests.testapp.models import Profile
from tests.web.test_code_view import code_channel, code_url, staged_code, wrong_code  # noqa: F401 - fixtures


@pytest.fixture(autouse=True)
def _servers_language_after():
    """LocaleMiddleware activates the request's language in this thread and leaves it there (a server's next
    request activates its own): the tests after these must not inherit it."""
    yield
    translation.deactivate()


def status_url(action) -> str:
    return reverse("confirmation:status", args=[action.pk])


@pytest.mark.parametrize(("language", "heading", "state", "waiting"), [
    ("fr", "Votre modification", "notifiée", "En attente de confirmation. Cette page se met à jour d'elle-même."),
    ("de", "Ihre Änderung", "benachrichtigt", "Wartet auf Bestätigung. Diese Seite aktualisiert sich von selbst."),
    ("es", "Su cambio", "notificado", "Pendiente de confirmación. Esta página se actualiza sola."),
    ("en", "Your change", "notified", "Waiting for confirmation. This page updates by itself."),
])
def test_the_status_page_speaks_the_requests_language(stage, client, language, heading, state, waiting):
    staged = stage()
    own(client, staged.action)
    response = client.get(status_url(staged.action), HTTP_ACCEPT_LANGUAGE=f"{language},en;q=0.5")
    assert response.status_code == 200
    assert response["Content-Language"] == language
    body = response.content.decode()
    assert f'<html lang="{language}">' in body
    assert f"<h1>{heading}</h1>" in body
    assert f'data-state="notified">{state}</span>' in body
    assert waiting in body


def test_without_accept_language_the_pages_are_english(stage, client):
    staged = stage()
    own(client, staged.action)
    body = client.get(status_url(staged.action)).content.decode()
    assert '<html lang="en">' in body and "<h1>Your change</h1>" in body


def test_the_code_page_and_its_errors_in_spanish(staged_code, client):  # noqa: F811 - the fixture
    url = code_url(staged_code.action.pk)
    page = client.get(url, HTTP_ACCEPT_LANGUAGE="es").content.decode()
    assert "<h1>Introduzca su código de confirmación</h1>" in page
    assert "Código de confirmación" in page and ">Confirmar</button>" in page and "Enviar uno nuevo" in page
    response = client.post(url, {"code": wrong_code(staged_code.code)}, HTTP_ACCEPT_LANGUAGE="es")
    assert response.status_code == 400
    body = response.content.decode()
    assert "Ese código es incorrecto o ha caducado." in body and "Le quedan 2 intentos." in body
    response = client.post(url, {"code": wrong_code(staged_code.code)}, HTTP_ACCEPT_LANGUAGE="es")
    assert "Le queda 1 intento." in response.content.decode()


def test_the_resend_page_in_french(stage, client, no_resend_cooldown, run_on_commit):
    staged = stage()
    own(client, staged.action)
    with run_on_commit():
        response = client.post(reverse("confirmation:resend", args=[staged.action.pk]), HTTP_ACCEPT_LANGUAGE="fr")
    assert response.status_code == 200
    body = response.content.decode()
    assert "<h1>Envoyé à nouveau</h1>" in body
    assert "Un nouveau code secret est en route\u00a0; le précédent ne fonctionne plus." in body


def test_the_resend_refusal_in_german(stage, client):
    staged = stage()  # the default RESEND_COOLDOWN: asking again at once is refused
    own(client, staged.action)
    response = client.post(reverse("confirmation:resend", args=[staged.action.pk]), HTTP_ACCEPT_LANGUAGE="de")
    assert response.status_code == 429
    body = response.content.decode()
    assert "<h1>Bitte warten</h1>" in body
    assert "Vor wenigen Augenblicken wurde ein neues Geheimnis gesendet." in body


def test_a_change_saved_during_a_german_request_is_mailed_in_german(db, eager, run_on_commit):
    profile = Profile.objects.create(email="sprache-alt@example.org")
    saved: list[DeferredAction] = []

    def view(request):
        form = ProfileEmailForm({"email": "sprache-neu@example.org"}, instance=profile, request=request)
        assert form.is_valid(), form.errors
        saved.append(form.save())
        return HttpResponse(translation.get_language())

    request = RequestFactory().post("/change/", HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9,en;q=0.5")
    request.user = AnonymousUser()
    SessionMiddleware(lambda request: HttpResponse()).process_request(request)
    with translation.override("en"):
        with run_on_commit():
            assert LocaleMiddleware(view)(request).content == b"de"
            translation.activate("en")  # the request is over: the delivery task runs in the server's language
        [action] = saved
        assert DeferredAction.objects.get(pk=action.pk).language == "de"
        message = mail.outbox[-1]
        assert message.to == ["sprache-neu@example.org"]
        assert message.extra_headers["Content-Language"] == "de"
        assert message.subject.startswith("Bitte bestätigen Sie: ")
        assert message.body.startswith("Guten Tag,\n")
        assert "Der Link ist gültig bis " in message.body
        html = message.alternatives[0][0]
        assert '<html lang="de">' in html and "Prüfen und bestätigen" in html
