"""Bank details (deferred_confirmation.django_integration.banking): every malformed IBAN, routing or account number is a
form error that names the problem, and valid ones come out normalised."""

from __future__ import annotations

import pytest
from django import forms
from stdnum.iban import calc_check_digits

from deferred_confirmation.django_integration.banking import ABARoutingNumberField, IBANField, USAccountNumberField
from tests.channels.microdeposit.conftest import IBAN_ACCOUNT, US_ACCOUNT, new_profile
from tests.channels.microdeposit.forms import BankAccountForm


def with_check_digits(country: str, bban: str) -> str:
    """A structurally complete IBAN whose mod-97 check digits are right (the rest may still be wrong)."""
    return country + calc_check_digits(country + "00" + bban) + bban


def error_of(field: forms.Field, value: object) -> str:
    with pytest.raises(forms.ValidationError) as raised:
        field.clean(value)
    return " ".join(raised.value.messages)


@pytest.mark.parametrize(("typed", "clean"), [
    ("DE89370400440532013000", "DE89370400440532013000"),
    ("de89 3704 0044 0532 0130 00", "DE89370400440532013000"),
    ("  GB82-WEST-1234-5698-7654-32 ", "GB82WEST12345698765432"),
    ("fr1420041010050500013m02606", "FR1420041010050500013M02606"),
    ("NL91ABNA0417164300", "NL91ABNA0417164300"),
])
def test_valid_ibans_are_cleaned_to_compact_upper_case(typed, clean):
    assert IBANField().clean(typed) == clean


@pytest.mark.parametrize(("typed", "message"), [
    ("DE88370400440532013000", "The IBAN's check digits are wrong"),
    ("DE89370400440532013001", "The IBAN's check digits are wrong"),
    ("GB82WEST12345698765433", "The IBAN's check digits are wrong"),
    ("DE8937040044053201300", "An IBAN from DE has 22 characters; this one has 21."),
    ("DE893704004405320130000", "An IBAN from DE has 22 characters; this one has 23."),
    ("NO938601111794", "An IBAN from NO has 15 characters; this one has 14."),
    ("XX89370400440532013000", "XX is not a country that uses IBANs."),
    ("US12345678901234567890", "US is not a country that uses IBANs."),
    ("1289370400440532013000", "starts with a two-letter country code"),
    ("DEAB370400440532013000", "starts with a two-letter country code"),
    (with_check_digits("GB", "1234" + "123456" + "12345678"), "not the format of an IBAN from GB"),
    (with_check_digits("BE", "539007547034"), "not valid in BE"),
    ("DE89", "too short"),
    ("DE８９370400440532013000", "only the letters A-Z and the digits 0-9"),
    ("DE89٣٧0400440532013000", "only the letters A-Z and the digits 0-9"),
    ("DE89_370400440532013000", "only the letters A-Z and the digits 0-9"),
    ("DEß9370400440532013000", "only the letters A-Z and the digits 0-9"),
    ("DE89370400440532013000\x00", "Null characters are not allowed."),
    ("D" * 10_000, "at most 50 characters"),
])
def test_iban_errors_name_the_problem(typed, message):
    assert message in error_of(IBANField(), typed)


def test_an_iban_field_can_be_limited_to_some_countries():
    sepa = IBANField(countries=["de", "fr"])
    assert sepa.clean("DE89370400440532013000") == "DE89370400440532013000"
    assert error_of(sepa, "GB82WEST12345698765432") == "IBANs from GB are not accepted here."


@pytest.mark.parametrize(("typed", "clean"), [("111000025", "111000025"), ("011000015", "011000015"),
                                              (" 111-000-025 ", "111000025"), ("021000021", "021000021")])
def test_valid_routing_numbers(typed, clean):
    assert ABARoutingNumberField().clean(typed) == clean


@pytest.mark.parametrize(("typed", "message"), [
    ("112000025", "Routing number checksum is wrong"),
    ("111000026", "Routing number checksum is wrong"),
    ("11100002", "A routing number has 9 digits; this one has 8."),
    ("1110000251", "A routing number has 9 digits; this one has 10."),
    ("131000025", "No routing number starts with 13"),
    ("11100002B", "only the digits 0-9"),
    ("１１１000025", "only the digits 0-9"),
    ("١١١000025", "only the digits 0-9"),
    ("111000025\x00", "Null characters are not allowed."),
    ("1" * 10_000, "at most 20 characters"),
])
def test_routing_number_errors_name_the_problem(typed, message):
    assert message in error_of(ABARoutingNumberField(), typed)


@pytest.mark.parametrize(("typed", "clean"), [("1234", "1234"), ("12345678901234567", "12345678901234567"),
                                              ("0012-3456 78", "0012345678")])
def test_valid_account_numbers(typed, clean):
    assert USAccountNumberField().clean(typed) == clean


@pytest.mark.parametrize(("typed", "message"), [
    ("123", "4 to 17 digits; this one has 3."),
    ("123456789012345678", "4 to 17 digits; this one has 18."),
    ("0000000", "not all zeros"),
    ("1234A", "only the digits 0-9"),
    ("１２３４５", "only the digits 0-9"),
    ("-", "only the digits 0-9"),
    ("1234\x00", "Null characters are not allowed."),
    ("1" * 10_000, "at most 30 characters"),
])
def test_account_number_errors_name_the_problem(typed, message):
    assert message in error_of(USAccountNumberField(), typed)


def test_optional_fields_accept_empty_input():
    for field in (IBANField(required=False), ABARoutingNumberField(required=False),
                  USAccountNumberField(required=False)):
        assert field.clean("") == ""
        assert field.clean(None) == ""


@pytest.mark.django_db
@pytest.mark.parametrize(("data", "field", "message"), [
    ({**IBAN_ACCOUNT, "bank_iban": "DE88370400440532013000"}, "bank_iban", "check digits are wrong"),
    ({**IBAN_ACCOUNT, "bank_iban": "DE8937040044053201300"}, "bank_iban", "has 22 characters; this one has 21"),
    ({**IBAN_ACCOUNT, "bank_iban": "QQ89370400440532013000"}, "bank_iban", "QQ is not a country"),
    ({**US_ACCOUNT, "bank_routing_number": "112000025"}, "bank_routing_number", "checksum is wrong"),
    ({**US_ACCOUNT, "bank_account_number": "12"}, "bank_account_number", "this one has 2"),
    ({**US_ACCOUNT, "bank_account_number": "x" * 10_000}, "bank_account_number", "at most 30 characters"),
    ({**IBAN_ACCOUNT, "bank_holder": "Ada\x00"}, "bank_holder", "Null characters"),
    ({**IBAN_ACCOUNT, **US_ACCOUNT}, "__all__", "not both"),
    ({"bank_holder": "Ada", "bank_routing_number": "111000025"}, "__all__", "routing number and account number"),
])
def test_the_form_reports_bad_bank_details_and_stores_nothing(data, field, message):
    form = BankAccountForm(data, instance=new_profile())
    assert not form.is_valid()
    assert message in " ".join(form.errors[field])
    with pytest.raises(ValueError, match="didn't validate"):
        form.save()


@pytest.mark.django_db
def test_the_form_stores_normalised_details_and_an_account_recipient():
    form = BankAccountForm({**US_ACCOUNT, "bank_routing_number": "111-000-025"}, instance=new_profile())
    assert form.is_valid(), form.errors
    assert form.cleaned_data["bank_routing_number"] == "111000025"
    assert form.get_recipient("microdeposit") == {"holder": "Grace Hopper", "routing_number": "111000025",
                                                  "account_number": "12345678", "country": "US"}
