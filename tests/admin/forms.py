"""Forms of the admin tests (importable by dotted path, as the admin imports a stored action's form)."""

from django import forms

from deferred_confirmation.django_integration.forms import DeferredForm
from tests.testapp.models import Profile


class ProfileSecretsForm(DeferredForm):
    """An email change with a password (sealed: a PasswordInput) and an IBAN the form does NOT mark as
    sensitive (stored as typed): the admin must hide both."""

    recipient_field = "email"
    confirmation_channels = ["email"]
    password = forms.CharField(widget=forms.PasswordInput)

    class Meta:
        model = Profile
        fields = ["email", "nickname", "bank_iban"]


class NicknameIsSensitiveForm(DeferredForm):
    """``nickname`` is one of the form's ``sensitive_fields``: its value is never shown, even if a row holds it
    unsealed (stored before the field was declared sensitive)."""

    recipient_field = "email"
    confirmation_channels = ["email"]
    sensitive_fields = ("nickname",)

    class Meta:
        model = Profile
        fields = ["email", "nickname"]
