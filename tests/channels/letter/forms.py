"""The form the letter tests defer: a change of Profile's postal address, confirmed by a letter to the new one."""

from deferred_confirmation.django_integration.forms import DeferredForm
from deferred_confirmation.django_integration.postal import PostalAddressMixin
from tests.testapp.models import Profile

ADDRESS_FIELDS = ["address_name", "address_line1", "address_line2", "address_city", "address_postal_code",
                  "address_country"]


class AddressChangeForm(PostalAddressMixin, DeferredForm):
    confirmation_channels = ["letter"]

    class Meta:
        model = Profile
        fields = ADDRESS_FIELDS

    def get_recipient(self, channel: str):
        return self.postal_address if channel == "letter" else super().get_recipient(channel)
