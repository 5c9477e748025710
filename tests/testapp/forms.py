from django import forms

from deferred_confirmation.django_integration.forms import DeferredForm
from tests.testapp.models import Profile


class ProfileEmailForm(DeferredForm):
    recipient_field = "email"

    class Meta:
        model = Profile
        fields = ["email"]


class ProfileForm(DeferredForm):
    """Edit or create, with a foreign key and a many-to-many field."""

    recipient_field = "email"

    class Meta:
        model = Profile
        fields = ["email", "nickname", "category", "tags"]


class ProfileWithSecretForm(DeferredForm):
    recipient_field = "email"
    pin = forms.CharField(widget=forms.PasswordInput)
    sensitive_fields = ("nickname",)

    class Meta:
        model = Profile
        fields = ["email", "nickname"]

    def save_confirmed(self):
        profile = super().save_confirmed()
        profile.nickname = f"{profile.nickname}:{self.cleaned_data['pin']}"
        profile.save(update_fields=["nickname"])
        return profile
