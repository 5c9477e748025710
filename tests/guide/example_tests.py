import re

from django.core import mail
from django.test import TestCase

from deferred_confirmation import pipeline
from tests.testapp.forms import ProfileEmailForm  # your DeferredForm
from tests.testapp.models import Profile  # and your model

LINK = re.compile(r"/confirm/([A-Za-z0-9_-]{43})/")  # the path of the link in the mail


class EmailChangeTests(TestCase):
    def test_the_new_address_is_written_only_once_the_link_is_confirmed(self):
        profile = Profile.objects.create(email="old@example.org")
        form = ProfileEmailForm({"email": "new@example.org"}, instance=profile)
        self.assertTrue(form.is_valid(), form.errors)
        # The mail is sent when the transaction commits; a TestCase never commits, so run the callbacks.
        with self.captureOnCommitCallbacks(execute=True):
            action = form.save()

        profile.refresh_from_db()
        self.assertEqual(profile.email, "old@example.org")  # nothing written yet
        [message] = mail.outbox
        self.assertEqual(message.to, ["new@example.org"])
        token = LINK.search(message.body).group(1)

        with self.captureOnCommitCallbacks(execute=True):  # confirming queues the apply, on commit too
            result = pipeline.confirm(token)
        self.assertTrue(result.ok)

        action.refresh_from_db()
        profile.refresh_from_db()
        self.assertEqual(action.state, "applied")
        self.assertEqual(profile.email, "new@example.org")

    def test_a_wrong_link_changes_nothing(self):
        profile = Profile.objects.create(email="old@example.org")
        form = ProfileEmailForm({"email": "new@example.org"}, instance=profile)
        self.assertTrue(form.is_valid(), form.errors)
        with self.captureOnCommitCallbacks(execute=True):
            form.save()
        self.assertEqual(pipeline.confirm("x" * 43).status, "invalid")
        profile.refresh_from_db()
        self.assertEqual(profile.email, "old@example.org")
