"""PDF letters end to end, with the real (in-process) worker on the real Redis: an address change is saved,
the worker stores the letter as a PDF, the code is read back from the PDF's text and typed into the code
page (wrong, then right in lower case with spaces and dashes), and the change is applied.  Also: the lock
after MAX_ATTEMPTS wrong codes, expiry, and a resend that kills the first letter's code."""

from __future__ import annotations

import re
from datetime import timedelta

from deferred_confirmation import pipeline
from deferred_confirmation.django_integration.models import DeferredAction, Delivery
from deferred_confirmation.pipeline.channels import get_channel
from deferred_confirmation.pipeline.channels.letter import ALPHABET
from deferred_confirmation.pipeline.dispatch import APPLY_ACTION as APPLY
from deferred_confirmation.pipeline.dispatch import SEND_NOTIFICATION as SEND
from deferred_confirmation.pipeline.states import DeliveryStatus, State
from tests.channels.letter.conftest import (
    SENDER,
    code_in,
    code_url,
    delivery_of,
    letter_storage,
    read_letter,
    stage_address_change,
    wait_for,
    within,
)
from tests.conftest import own
from tests.testapp.models import Profile

WRONG = "That code is wrong or has expired."


def typed_like_a_person(code: str) -> str:
    """"ACEF-3479" as someone might type it: lower case, a space and a dash in odd places."""
    plain = code.replace("-", "")
    return f" {plain[:2].lower()} {plain[2:5].lower()}-{plain[5:].lower()} "


def wrong_code(code: str) -> str:
    """A well-formed code that is not ``code``."""
    plain = code.replace("-", "")
    first = ALPHABET[(ALPHABET.index(plain[0]) + 1) % len(ALPHABET)]
    return f"{first}{plain[1:4]}-{plain[4:]}"


def sent_letter(settings, task_log, action: DeferredAction, sends: int = 1) -> tuple[Delivery, str]:
    wait_for(lambda: task_log.returned(SEND).count(True) >= sends, what="the letter to be stored")
    delivery = delivery_of(action)
    assert delivery.status == DeliveryStatus.SENT
    return delivery, read_letter(settings, delivery)


def test_letter_is_stored_as_pdf_and_its_code_confirms_the_change(worker, task_log, signal_log, settings, client):
    profile, action = stage_address_change()
    own(client, action)
    delivery, text = sent_letter(settings, task_log, action)

    # The letter: the new address in the window (normalised by the form), the code, the code page's URL
    # built from SITE_URL, and the date the code expires.
    code = code_in(text)
    for line in ("Erika Mustermann", "Heidestraße 17", "51147 Köln", "GERMANY", "Example Ltd"):
        assert line in text
    url = f"https://confirm.example.org/confirm/code/{action.pk}/"
    assert url in text.replace("\n", "")
    assert within(delivery.expires_at, action.created_at + timedelta(days=30))
    assert f"{delivery.expires_at.day} {delivery.expires_at:%B %Y}" in text
    # What is stored: only the digest, the PDF's name (no personal data in it) as the provider reference.
    assert re.fullmatch(r"letter-[0-9a-f]{32}\.pdf", delivery.provider_ref)
    assert code.replace("-", "") not in delivery.secret_digest
    assert "Mustermann" not in delivery.provider_ref
    action.refresh_from_db()
    assert action.state == State.NOTIFIED
    assert signal_log.count("confirmation_required", action.pk) == 1

    response = client.post(code_url(action), {"code": wrong_code(code)})
    assert response.status_code == 400
    assert WRONG in response.content.decode() and "4 attempts left" in response.content.decode()
    assert delivery_of(action).attempts == 1

    response = client.post(code_url(action), {"code": typed_like_a_person(code)})
    assert response.status_code == 302
    assert response["Location"] == f"/confirm/status/{action.pk}/"
    wait_for(lambda: task_log.returned(APPLY) == [True], what="the change to be applied")
    profile.refresh_from_db()
    assert (profile.address_line1, profile.address_city, profile.address_postal_code,
            profile.address_country) == ("Heidestraße 17", "Köln", "51147", "DE")
    action.refresh_from_db()
    assert action.state == State.APPLIED
    # Used once: typing it again is refused, and the PDF is still there for the print batch until purge.
    assert client.post(code_url(action), {"code": code}).status_code in (409, 410)
    assert letter_storage(settings).exists(delivery.provider_ref)


def test_five_wrong_codes_lock_the_action(worker, task_log, settings, client):
    profile, action = stage_address_change()
    own(client, action)
    _delivery, text = sent_letter(settings, task_log, action)
    code = code_in(text)

    for left in (4, 3, 2, 1):
        response = client.post(code_url(action), {"code": wrong_code(code)})
        assert response.status_code == 400
        assert f"{left} attempt{'s' if left > 1 else ''} left" in response.content.decode()
    assert client.post(code_url(action), {"code": wrong_code(code)}).status_code == 403
    action.refresh_from_db()
    assert action.state == State.LOCKED
    # Locked: even the right code does nothing now.
    assert client.post(code_url(action), {"code": code}).status_code == 403
    assert Profile.objects.get(pk=profile.pk).address_city == "Bonn"


def test_expired_letter_code_is_refused_with_410(worker, task_log, settings, client):
    profile, action = stage_address_change()
    own(client, action)
    delivery, text = sent_letter(settings, task_log, action)
    code = code_in(text)
    past = action.created_at - timedelta(days=1)
    Delivery.objects.filter(pk=delivery.pk).update(expires_at=past)
    DeferredAction.objects.filter(pk=action.pk).update(valid_until=past)

    response = client.post(code_url(action), {"code": code})
    assert response.status_code == 410
    action.refresh_from_db()
    assert action.state == State.EXPIRED
    assert Profile.objects.get(pk=profile.pk).address_city == "Bonn"


def test_a_new_letter_replaces_the_code_and_the_old_pdf(worker, task_log, settings, letter_conf, client):
    letter_conf(RESEND_COOLDOWN=None)
    profile, action = stage_address_change()
    own(client, action)
    first, text = sent_letter(settings, task_log, action)
    old_code = code_in(text)

    assert pipeline.resend(action).sent
    wait_for(lambda: delivery_of(action).generation == 1 and delivery_of(action).status == DeliveryStatus.SENT,
             what="the second letter")
    second = delivery_of(action)
    new_code = code_in(read_letter(settings, second))
    assert new_code != old_code
    assert second.provider_ref != first.provider_ref
    storage = letter_storage(settings)
    assert not storage.exists(first.provider_ref)  # the first letter's PDF is gone
    assert second.attempts == 0 and within(second.expires_at, second.updated_at + timedelta(days=30))

    response = client.post(code_url(action), {"code": old_code})
    assert response.status_code == 400 and WRONG in response.content.decode()
    assert client.post(code_url(action), {"code": new_code.lower()}).status_code == 302
    wait_for(lambda: task_log.returned(APPLY) == [True], what="the change to be applied")
    assert Profile.objects.get(pk=profile.pk).address_city == "Köln"


def test_a_retried_send_replaces_its_own_pdf_and_discard_deletes_it(worker, task_log, settings):
    """One file per secret however often the send runs; discard (the purge task's hook) deletes it."""
    _profile, action = stage_address_change()
    first, text = sent_letter(settings, task_log, action)
    storage = letter_storage(settings)
    _dirs, files = storage.listdir("")
    assert files == [first.provider_ref]
    channel = get_channel("letter")
    code = code_in(text).replace("-", "")

    # As if the worker died after storing the PDF and the task ran again: same name, still one file.
    assert channel.send(delivery=first, action=first.action, secret=code) == first.provider_ref
    assert storage.listdir("")[1] == [first.provider_ref]
    assert code_in(read_letter(settings, first)) == code_in(text)

    assert channel.discard(first) == 1
    assert not storage.exists(first.provider_ref) and storage.listdir("")[1] == []
    assert channel.discard(first) == 0  # twice is harmless
    assert SENDER["name"] not in first.provider_ref
