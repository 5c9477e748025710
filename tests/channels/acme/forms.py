"""The form of the Acme tests, importable by dotted path (the pipeline rebuilds it when the change is applied)."""

from deferred_confirmation.django_integration.forms import DeferredForm
from tests.testapp.models import Profile


class AcmePhoneForm(DeferredForm):
    confirmation_channels = ["acme"]  # or ROUTES / DEFAULT_CHANNELS in settings
    recipient_field = "phone"

    class Meta:
        model = Profile
        fields = ["phone"]
