"""The demo's deferred forms: an email change (edit) and a sign-up (create), confirmed by a mailed link, and
changes of the profile's phone number (SMS code), postal address (letter) and bank account (micro-deposits).

The channel of each form comes from ``DEFERRED_CONFIRMATION["ROUTES"]`` in example/settings.py.
"""

from django import forms
from django.contrib.auth import get_user_model, password_validation

from deferred_confirmation.django_integration.banking import ABARoutingNumberField, IBANField, USAccountNumberField
from deferred_confirmation.django_integration.forms import DeferredForm
from deferred_confirmation.django_integration.phone import PhoneNumberField
from deferred_confirmation.django_integration.postal import MAX_LENGTH, REQUIRED, PostalAddressMixin, country_choices
from example.accounts.models import Profile

User = get_user_model()


def _email_taken(email: str, exclude_pk=None) -> bool:
    return User.objects.filter(email__iexact=email).exclude(pk=exclude_pk).exists()


class EmailChangeForm(DeferredForm):
    """The new address is applied only once it is confirmed; uniqueness is checked again at that moment."""

    recipient_field = "email"
    email = forms.EmailField(label="New email address", max_length=254)

    class Meta:
        model = User
        fields = ["email"]

    def clean_email(self):
        email = self.cleaned_data["email"].strip().lower()
        if _email_taken(email, exclude_pk=self.instance.pk):
            raise forms.ValidationError("This email address is already in use.")
        return email


class SignUpForm(DeferredForm):
    """The account is created on confirmation; the password is sealed at rest until then."""

    recipient_field = "email"
    email = forms.EmailField(max_length=254)
    password = forms.CharField(widget=forms.PasswordInput, strip=False)

    class Meta:
        model = User
        fields = ["username", "email"]

    def clean_email(self):
        email = self.cleaned_data["email"].strip().lower()
        if _email_taken(email):
            raise forms.ValidationError("This email address is already in use.")
        return email

    def clean_password(self):
        password = self.cleaned_data["password"]
        password_validation.validate_password(password, User(username=self.cleaned_data.get("username")))
        return password

    def save_confirmed(self):
        user = super(DeferredForm, self).save(commit=False)
        user.set_password(self.cleaned_data["password"])
        user.save()
        return user


class PhoneChangeForm(DeferredForm):
    """A new mobile number, confirmed by a code texted to it (route: ``sms``)."""

    recipient_field = "phone"  # the code goes to the NEW number
    phone = PhoneNumberField(label="New mobile number",
                             help_text="A US number, or any number with its +country code.")

    class Meta:
        model = Profile
        fields = ["phone"]

    def clean_phone(self):
        phone = self.cleaned_data["phone"]
        if phone and phone == Profile.objects.filter(pk=self.instance.pk).values_list("phone", flat=True).first():
            raise forms.ValidationError("This is already your mobile number.")
        return phone


def _countries():
    return [("", "Choose a country"), *country_choices()]


ADDRESS_FIELDS = ["address_name", "address_line1", "address_line2", "address_city", "address_state",
                  "address_postal_code", "address_country"]


class AddressChangeForm(PostalAddressMixin, DeferredForm):
    """A new postal address, confirmed by a letter with a code, mailed to it (route: ``letter``).

    PostalAddressMixin checks and normalises the ``address_*`` fields (postal code per country, US states)
    and keeps the address dict in ``self.postal_address``."""

    postal_state_required_for = ("US",)
    address_country = forms.ChoiceField(label="Country", choices=_countries)
    address_state = forms.CharField(label="State / region", max_length=MAX_LENGTH, required=False,
                                    help_text="Required in the US: the two-letter code, such as NY.")

    class Meta:
        model = Profile
        fields = ADDRESS_FIELDS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for part in REQUIRED:  # blank on the model (a profile starts without an address), required here
            self.fields[f"address_{part}"].required = True

    def get_recipient(self, channel):
        return self.postal_address if channel == "letter" else super().get_recipient(channel)


class BankAccountForm(DeferredForm):
    """A new bank account, confirmed by two small deposits into it (route: ``microdeposit``): an IBAN, or a US
    routing and account number.  The account numbers are sealed (encrypted) in the stored change."""

    sensitive_fields = ("bank_iban", "bank_account_number")

    bank_holder = forms.CharField(label="Account holder", max_length=100)
    bank_iban = IBANField(label="IBAN", required=False, help_text="Or leave empty and fill in the two US fields.")
    bank_routing_number = ABARoutingNumberField(label="US routing number", required=False)
    bank_account_number = USAccountNumberField(label="US account number", required=False)

    class Meta:
        model = Profile
        fields = ["bank_holder", "bank_iban", "bank_routing_number", "bank_account_number"]

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        iban, us = data.get("bank_iban"), [data.get("bank_routing_number"), data.get("bank_account_number")]
        if iban and any(us):
            raise forms.ValidationError("Enter an IBAN or a US routing and account number, not both.")
        if not iban and not all(us):
            raise forms.ValidationError("Enter an IBAN, or a US routing number and account number.")
        return data

    def get_recipient(self, channel):
        """The account the deposits are paid into (the payout backend receives this dict)."""
        if channel != "microdeposit":
            return super().get_recipient(channel)
        data = self.cleaned_data
        if data.get("bank_iban"):
            return {"holder": data["bank_holder"], "iban": data["bank_iban"], "country": data["bank_iban"][:2]}
        return {"holder": data["bank_holder"], "routing_number": data["bank_routing_number"],
                "account_number": data["bank_account_number"], "country": "US"}
