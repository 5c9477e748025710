"""Forms of the SMS tests, importable by dotted path (the worker rebuilds them)."""

from deferred_confirmation.django_integration.forms import DeferredForm
from deferred_confirmation.django_integration.phone import PhoneNumberField
from tests.testapp.models import Profile


class ProfilePhoneForm(DeferredForm):
    """A new phone number, confirmed by a code texted to it."""

    confirmation_channels = ["sms"]
    recipient_field = "phone"
    phone = PhoneNumberField()

    class Meta:
        model = Profile
        fields = ["phone"]
