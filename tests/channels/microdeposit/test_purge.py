"""Payout instructions hold bank details: purge removes them with their action, after RETENTION."""

from datetime import timedelta

from django.utils import timezone

from deferred_confirmation import pipeline
from deferred_confirmation.django_integration.models import DeferredAction, Payout
from deferred_confirmation.pipeline import lifecycle
from tests.channels.microdeposit.conftest import IBAN_ACCOUNT, delivery_of


def test_purge_deletes_payouts_with_their_finished_action(stage_eager):
    _profile, finished = stage_eager()
    _profile, open_one = stage_eager({**IBAN_ACCOUNT, "bank_holder": "Other Holder"})
    assert pipeline.cancel(finished)
    assert Payout.objects.count() == 2
    DeferredAction.objects.filter(pk=finished.pk).update(updated_at=timezone.now() - timedelta(days=31))

    assert lifecycle.purge() == 1

    assert list(Payout.objects.values_list("delivery__action_id", flat=True)) == [open_one.pk]
    assert delivery_of(open_one).payouts.count() == 1
