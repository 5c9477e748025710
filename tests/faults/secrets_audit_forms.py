"""A form of the secrets audit with sealed values (a PasswordInput and a ``sensitive_fields`` entry) that the
apply does not write to the model, importable by the worker process."""

from django import forms

from deferred_confirmation.django_integration.forms import DeferredForm
from tests.testapp.models import Profile


class SealedEmailForm(DeferredForm):
    recipient_field = "email"
    sensitive_fields = ("memo",)
    pin = forms.CharField(widget=forms.PasswordInput)
    memo = forms.CharField()

    class Meta:
        model = Profile
        fields = ["email"]
