import time

from django.core import mail

import pipeline
from tests.conftest import link_token
from tests.testapp.forms import ProfileEmailForm
from tests.testapp.models import Profile


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_email_change_through_a_real_worker(celery_worker_inprocess):
    profile = Profile.objects.create(email="old@example.org")
    form = ProfileEmailForm({"email": "new@example.org"}, instance=profile)
    assert form.is_valid()
    action = form.save()
    assert Profile.objects.get().email == "old@example.org"
    assert wait_for(lambda: len(mail.outbox) == 1)
    result = pipeline.confirm(link_token(mail.outbox[0]))
    assert result.status == "confirmed"
    assert wait_for(lambda: Profile.objects.get().email == "new@example.org")
    action.refresh_from_db()
    assert action.state == "applied"
