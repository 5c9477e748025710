"""Forms for the worker tests, importable by dotted path in a worker subprocess too."""

from django.db.models import Value
from django.db.models.functions import Concat

from tests.testapp.forms import ProfileEmailForm
from tests.testapp.models import Profile


class CountingEmailForm(ProfileEmailForm):
    """Changes the email and appends "+" to the nickname in the database on every apply.

    The nickname is not a field of the form (so the stale check ignores it); after the test it holds one "+"
    per time the change was written: the database's own count of applies.
    """

    def save_confirmed(self):
        profile = super().save_confirmed()
        Profile.objects.filter(pk=profile.pk).update(nickname=Concat("nickname", Value("+")))
        return profile
