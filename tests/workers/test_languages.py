"""The language a change was saved in is the language of its message (DESIGN §11): a real worker process, whose
own LANGUAGE_CODE is English, mails, texts (the real twilio SDK against the fake Twilio on loopback) and prints
(a PDF letter) a change saved under French in French; the mail says ``Content-Language: fr``.  A change saved
in the server's language stays English."""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.utils import translation

from deferred_confirmation.django_integration.models import DeferredAction, Delivery
from deferred_confirmation.pipeline.states import DeliveryStatus
from example.fakes.twilio import FakeTwilio
from tests.channels.letter.conftest import SENDER, read_letter, stage_address_change
from tests.channels.sms.conftest import FROM, PHONE, PHONE_TYPED, new_profile
from tests.channels.sms.forms import ProfilePhoneForm
from tests.workers.conftest import stage_change, wait_for
from tests.workers.test_subprocess_worker import WorkerProcess, running_worker, shared_db  # noqa: F401 - shared_db: a fixture

pytestmark = [pytest.mark.subprocess, pytest.mark.usefixtures("shared_db")]


def channels(twilio: FakeTwilio) -> dict:
    return {
        "email": {},
        "sms": {"OPTIONS": {"ACCOUNT_SID": twilio.account_sid, "AUTH_TOKEN": twilio.auth_token, "FROM": FROM,
                            "BASE_URL": twilio.url, "TIMEOUT": 5}},
        "letter": {"BACKEND": "deferred_confirmation.pipeline.channels.letter.PDFLetterChannel",
                   "OPTIONS": {"FROM": SENDER}},
    }


@pytest.fixture(scope="module")
def twilio():
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture(scope="module")
def media_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def english_worker(django_db_setup, tmp_path_factory, twilio, media_root):
    """``celery worker`` with the test settings (LANGUAGE_CODE "en"), sending email, SMS and PDF letters."""
    extra_env = {"DC_TEST_CHANNELS": json.dumps(channels(twilio)), "DC_TEST_MEDIA_ROOT": str(media_root)}
    with running_worker(tmp_path_factory.mktemp("worker"), extra_env) as process:
        yield process


@pytest.fixture
def same_channels(settings, twilio, media_root, english_worker):
    """This process routes and records sends with the worker's channels."""
    assert django_settings.LANGUAGE_CODE == "en" and "LANGUAGE_CODE" not in english_worker.env
    settings.DEFERRED_CONFIRMATION = {**settings.DEFERRED_CONFIRMATION, "CHANNELS": channels(twilio)}
    settings.MEDIA_ROOT = str(media_root)
    twilio.reset()
    return english_worker


def mail_to(worker: WorkerProcess, address: str) -> email.message.EmailMessage:
    [message] = wait_for(lambda: worker.mails_to(address), timeout=30,
                         what=f"the worker to write the mail\n{worker.output()}")
    return email.message_from_bytes(message.encode(), policy=email.policy.default)


def text_of(mail: email.message.EmailMessage, kind: str) -> str:
    return mail.get_body(preferencelist=(kind,)).get_content()


def sent_delivery(action: DeferredAction, channel: str, worker: WorkerProcess) -> Delivery:
    return wait_for(lambda: Delivery.objects.filter(action=action, channel=channel,
                                                    status=DeliveryStatus.SENT).first(),
                    timeout=60, what=f"the {channel} delivery to be sent\n{worker.output()}")


@pytest.mark.django_db(transaction=True)
def test_a_change_saved_in_french_is_mailed_texted_and_printed_in_french(same_channels, twilio,
                                                                        settings):
    worker = same_channels
    with translation.override("fr"):
        _profile, mailed = stage_change("langue-avant@example.org", "langue-fr@example.org")
        form = ProfilePhoneForm({"phone": PHONE_TYPED}, instance=new_profile())
        assert form.is_valid(), form.errors
        texted = form.save()
        _profile, printed = stage_address_change()
    assert {a.language for a in DeferredAction.objects.filter(pk__in=[mailed.pk, texted.pk, printed.pk])} == {"fr"}

    mail = mail_to(worker, "langue-fr@example.org")
    assert mail["Content-Language"] == "fr"
    assert mail["Subject"].strip().startswith("Veuillez confirmer")
    text, html = text_of(mail, "plain"), text_of(mail, "html")
    assert text.startswith("Bonjour,\n") and "Ouvrez ce lien et cliquez sur «\u00a0Confirmer\u00a0»" in text
    assert "Le lien est valable jusqu'au " in text and "waiting for your confirmation" not in text
    assert '<html lang="fr">' in html and "Vérifier et confirmer" in html

    [sms] = twilio.wait_for_messages(1, timeout=60)
    assert sms["params"]["To"] == PHONE
    assert " est votre code de confirmation. Saisissez-le sur https://confirm.example.org/" in sms["params"]["Body"]
    assert "Ignorez ce SMS." in sms["params"]["Body"]

    letter = read_letter(settings, sent_delivery(printed, "letter", worker))
    assert "Votre code de confirmation" in letter
    assert "Gardez ce code pour vous" in letter
    assert "Your confirmation code" not in letter


@pytest.mark.django_db(transaction=True)
def test_a_change_saved_in_the_servers_language_stays_english(same_channels):
    worker = same_channels
    _profile, action = stage_change("lang-before@example.org", "lang-en@example.org")
    assert action.language == "en"
    mail = mail_to(worker, "lang-en@example.org")
    assert mail["Content-Language"] == "en"
    assert mail["Subject"].strip().startswith("Please confirm: ")
    assert "Open this link and press Confirm to make it:" in text_of(mail, "plain")
    assert '<html lang="en">' in text_of(mail, "html")
