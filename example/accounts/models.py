"""The demo's profile: what the phone, address and bank-account changes edit (one per user, made on demand)."""

from django.conf import settings
from django.db import models


class Profile(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    # Confirmed by a text message (E.164, as PhoneNumberField cleans it).
    phone = models.CharField("mobile number", max_length=20, blank=True)
    # Confirmed by a letter to the new address (the parts of django_integration.postal's address dict).
    address_name = models.CharField("name", max_length=100, blank=True)
    address_line1 = models.CharField("address line 1", max_length=100, blank=True)
    address_line2 = models.CharField("address line 2", max_length=100, blank=True)
    address_city = models.CharField("city", max_length=100, blank=True)
    address_state = models.CharField("state / region", max_length=100, blank=True)
    address_postal_code = models.CharField("postal code", max_length=20, blank=True)
    address_country = models.CharField("country", max_length=2, blank=True)
    # Confirmed by two micro-deposits into the new account: an IBAN, or a US routing and account number.
    bank_holder = models.CharField("account holder", max_length=100, blank=True)
    bank_iban = models.CharField("IBAN", max_length=34, blank=True)
    bank_routing_number = models.CharField("routing number", max_length=9, blank=True)
    bank_account_number = models.CharField("account number", max_length=17, blank=True)

    def __str__(self) -> str:
        return f"profile of {self.user}"

    @classmethod
    def of(cls, user) -> "Profile":
        """The user's profile, created (empty) the first time it is asked for."""
        return cls.objects.get_or_create(user=user)[0]

    @property
    def bank_account_ending(self) -> str:
        number = self.bank_iban or self.bank_account_number
        return number[-4:] if number else ""
