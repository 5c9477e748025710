"""A key rotation strands no letter: PDFs named under a key now in SECRET_KEY_FALLBACKS are still found and deleted
by a resend, a retried send and the purge, so no file with a live code is left behind in the letter storage.

Letter file names are a keyed hash (SECRET_KEY); after ``SECRET_KEY = new``, ``SECRET_KEY_FALLBACKS = [old]`` the
names computed for old letters differ from the names they were stored under."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from deferred_confirmation import pipeline
from deferred_confirmation.django_integration.models import DeferredAction
from deferred_confirmation.pipeline import lifecycle
from deferred_confirmation.pipeline.channels import get_channel
from tests.channels.letter.conftest import (
    code_in,
    delivery_of,
    letter_storage,
    read_letter,
    stage_address_change,
)

OLD_KEY = "letters-old-key-" + "o" * 40
NEW_KEY = "letters-new-key-" + "n" * 40


def stored_letters(settings) -> list[str]:
    return sorted(letter_storage(settings).listdir("")[1])


def rotate(settings) -> None:
    settings.SECRET_KEY = NEW_KEY
    settings.SECRET_KEY_FALLBACKS = [OLD_KEY]


@pytest.mark.django_db(transaction=True)
def test_a_resend_after_a_rotation_deletes_the_letter_named_under_the_old_key(eager, settings, letter_conf):
    letter_conf(RESEND_COOLDOWN=None)
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = OLD_KEY, []
    _profile, action = stage_address_change()
    first = delivery_of(action)
    old_code = code_in(read_letter(settings, first))
    assert stored_letters(settings) == [first.provider_ref]

    rotate(settings)
    assert pipeline.resend(action).sent
    second = delivery_of(action)
    assert second.generation == 1 and second.provider_ref != first.provider_ref
    assert code_in(read_letter(settings, second)) != old_code
    assert stored_letters(settings) == [second.provider_ref]  # the old-key letter and its code are gone
    assert second.provider_ref == get_channel("letter").file_name(second)  # new letters: the current key


@pytest.mark.django_db
def test_a_retry_after_a_rotation_replaces_the_letter_stored_under_the_old_key(settings):
    """The worker stored the PDF and died before recording it; the key is rotated before the retry."""
    _profile, action = stage_address_change()  # not committed: the queued tasks never run
    delivery = delivery_of(action)
    channel = get_channel("letter")
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = OLD_KEY, []
    old_name = channel.send(delivery=delivery, action=action, secret="ACEF3479")
    assert stored_letters(settings) == [old_name]

    rotate(settings)
    new_name = channel.send(delivery=delivery, action=action, secret="ACEF3479")
    assert new_name != old_name
    assert stored_letters(settings) == [new_name]  # one letter per code, whatever key named it


@pytest.mark.django_db
def test_purge_after_a_rotation_deletes_letters_named_under_the_old_key(settings):
    _profile, action = stage_address_change()
    delivery = delivery_of(action)
    channel = get_channel("letter")
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = OLD_KEY, []
    channel.send(delivery=delivery, action=action, secret="ACEF3479")  # stored; its reference never recorded
    assert len(stored_letters(settings)) == 1

    rotate(settings)
    assert pipeline.cancel(action)
    DeferredAction.objects.filter(pk=action.pk).update(updated_at=timezone.now() - timedelta(days=31))
    assert lifecycle.purge() == 1
    assert stored_letters(settings) == []
    assert not DeferredAction.objects.filter(pk=action.pk).exists()


@pytest.mark.django_db
def test_discard_after_a_rotation_deletes_only_its_own_letters(settings):
    """A letter of another delivery (or another site sharing the storage) is never deleted."""
    _profile, action = stage_address_change()
    _profile, other = stage_address_change()
    channel = get_channel("letter")
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = OLD_KEY, []
    channel.send(delivery=delivery_of(action), action=action, secret="ACEF3479")
    kept = channel.send(delivery=delivery_of(other), action=other, secret="ACEF3479")
    rotate(settings)
    assert channel.discard(delivery_of(action)) == 1
    assert stored_letters(settings) == [kept]
