"""Forms only the forms area needs; stored actions name them by dotted path, so they live in a module."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from deferred_confirmation.django_integration.forms import DeferredForm
from tests.testapp.forms import ProfileEmailForm
from tests.testapp.models import Profile


class ProfileUploadForm(DeferredForm):
    recipient_field = "email"
    attachment = forms.FileField(required=False)

    class Meta:
        model = Profile
        fields = ["email"]


class StaleTolerantEmailForm(ProfileEmailForm):
    allow_stale = True


#: (user, instance id, instance.token, form's cleaned email) per call of the hook below.
HOOK_CALLS: list[tuple[Any, Any, str, str]] = []


class HookedEmailForm(ProfileEmailForm):
    """The form's own hook (docs/api.md#deferredform): called in the worker instead of the channel backend."""

    def send_notification(self, user=None, instance=None):
        HOOK_CALLS.append((user, instance.pk, instance.token, self.cleaned_data["email"]))


class SplitWhenForm(DeferredForm):
    """A MultiWidget field (two inputs, ``when_0`` and ``when_1``), written into nickname on apply."""

    recipient_field = "email"
    when = forms.SplitDateTimeField()

    class Meta:
        model = Profile
        fields = ["email"]

    def save_confirmed(self):
        profile = super().save_confirmed()
        profile.nickname = self.cleaned_data["when"].strftime("%Y-%m-%d %H:%M")
        profile.save(update_fields=["nickname"])
        return profile


class HalfwayFailingForm(ProfileEmailForm):
    """Writes the row, then fails: nothing of it may remain."""

    def save_confirmed(self):
        super().save_confirmed()
        Profile.objects.create(email="side-effect@example.org")
        raise ValidationError("the mailbox service refused the address")


class BuggyCleanForm(ProfileEmailForm):
    """A bug that shows only after the change was requested (say, a deploy in between): a KeyError in clean."""

    broken = False

    def clean(self):
        data = super().clean()
        if type(self).broken:
            return {"missing": data}["absent"]
        return data


class RacedForm(ProfileEmailForm):
    """Someone takes the e-mail address between re-validation and the save."""

    def save_confirmed(self):
        Profile.objects.create(email=self.cleaned_data["email"], nickname="racer")
        return super().save_confirmed()


class SelectDateForm(ProfileEmailForm):
    """A date typed in three selects (data keys when_year, when_month, when_day)."""

    when = forms.DateField(widget=forms.SelectDateWidget(years=range(2020, 2031)))

    def save_confirmed(self):
        profile = super().save_confirmed()
        profile.nickname = self.cleaned_data["when"].isoformat()
        profile.save(update_fields=["nickname"])
        return profile


class _HiddenKeyWidget(forms.TextInput):
    """Reads its value from a data key that has nothing to do with the field's name."""

    def value_from_datadict(self, data, files, name):
        return data.get("unrelated_key")


class UnstorableForm(ProfileEmailForm):
    secret_note = forms.CharField(widget=_HiddenKeyWidget, required=False)


class UserEmailNoRecipientForm(DeferredForm):
    class Meta:
        model = get_user_model()
        fields = ["email"]
