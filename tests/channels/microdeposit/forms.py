"""A bank-account change confirmed by micro-deposits (importable by dotted path in a worker)."""

from django import forms

from deferred_confirmation.django_integration.banking import ABARoutingNumberField, IBANField, USAccountNumberField
from deferred_confirmation.django_integration.forms import DeferredForm
from tests.testapp.models import Profile


class BankAccountForm(DeferredForm):
    """Either an IBAN, or a US routing and account number; the deposits go to the new account."""

    confirmation_channels = ["microdeposit"]
    sensitive_fields = ("bank_iban", "bank_account_number")

    bank_holder = forms.CharField(max_length=100)
    bank_iban = IBANField(required=False)
    bank_routing_number = ABARoutingNumberField(required=False)
    bank_account_number = USAccountNumberField(required=False)

    class Meta:
        model = Profile
        fields = ["bank_holder", "bank_iban", "bank_routing_number", "bank_account_number"]

    def clean(self):
        data = super().clean()
        iban = data.get("bank_iban")
        us = [data.get("bank_routing_number"), data.get("bank_account_number")]
        if self.errors:
            return data
        if iban and any(us):
            raise forms.ValidationError("Enter an IBAN or a US routing and account number, not both.")
        if not iban and not all(us):
            raise forms.ValidationError("Enter an IBAN, or a US routing number and account number.")
        return data

    def get_recipient(self, channel):
        data = self.cleaned_data
        if channel != "microdeposit":
            return None
        if data.get("bank_iban"):
            return {"holder": data["bank_holder"], "iban": data["bank_iban"], "country": data["bank_iban"][:2]}
        return {"holder": data["bank_holder"], "routing_number": data["bank_routing_number"],
                "account_number": data["bank_account_number"], "country": "US"}
