"""A stored letter holds a live code: purge deletes the PDF together with its action."""

from datetime import timedelta

import pytest
from django.utils import timezone

from deferred_confirmation import pipeline
from deferred_confirmation.django_integration.models import DeferredAction
from deferred_confirmation.pipeline import lifecycle
from tests.channels.letter.conftest import delivery_of, letter_storage, stage_address_change


@pytest.mark.django_db(transaction=True)
def test_purge_deletes_the_letter_pdf_with_its_action(eager, settings):
    _profile, finished = stage_address_change()
    _profile, still_open = stage_address_change()
    storage = letter_storage(settings)
    finished_pdf, open_pdf = delivery_of(finished).provider_ref, delivery_of(still_open).provider_ref
    assert storage.exists(finished_pdf) and storage.exists(open_pdf)
    assert pipeline.cancel(finished)
    DeferredAction.objects.filter(pk=finished.pk).update(updated_at=timezone.now() - timedelta(days=31))

    assert lifecycle.purge() == 1

    assert not storage.exists(finished_pdf)
    assert storage.exists(open_pdf)
