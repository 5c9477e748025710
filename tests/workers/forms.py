"""Forms for the worker tests, importable by dotted path in a worker subprocess too."""

from django import forms
from django.contrib.auth import get_user_model
from django.db import OperationalError
from django.db.models import Value
from django.db.models.functions import Concat

from deferred_confirmation.django_integration.forms import DeferredForm
from tests.testapp.forms import ProfileEmailForm, ProfileForm
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


class SignUpForm(DeferredForm):
    """A sign-up (a create): the account is made on confirmation with the password typed at save()."""

    recipient_field = "email"
    password = forms.CharField(widget=forms.PasswordInput, strip=False)

    class Meta:
        model = get_user_model()
        fields = ["username", "email"]

    def save_confirmed(self):
        user = super(DeferredForm, self).save(commit=False)
        user.set_password(self.cleaned_data["password"])
        user.save()
        return user


class CreatesNothingForm(ProfileForm):
    """A create whose ``save_confirmed()`` writes a row but returns None (a forgotten ``return``)."""

    def save_confirmed(self):
        super().save_confirmed()


class DatabaseAwayForm(ProfileEmailForm):
    """Every apply hits a database error worth a retry (a lost connection): the task retries, and redrive ends it."""

    def save_confirmed(self):
        raise OperationalError("server closed the connection unexpectedly")
