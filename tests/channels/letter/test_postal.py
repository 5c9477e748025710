"""Postal address validation (deferred_confirmation.django_integration.postal) through the deferred address form: each
country's postal-code rule with its error, normalised values, required lines, and malformed input (unicode digits,
10 kB strings, NUL and control characters, lone surrogates) ending as form errors, never exceptions."""

from __future__ import annotations

import itertools

import pytest
from django.core.exceptions import ValidationError

from deferred_confirmation.django_integration.postal import (
    LENIENT_MESSAGE,
    PostalAddressForm,
    address_lines,
    clean_postal_address,
    normalize_postal_code,
)
from tests.channels.letter.conftest import NEW_ADDRESS
from tests.channels.letter.forms import AddressChangeForm
from tests.testapp.models import Profile

pytestmark = pytest.mark.django_db

US_ZIP = "Enter a US ZIP code such as 12345 or 12345-6789."
DE_CODE = "Enter a German postcode: 5 digits, such as 10115."
GB_CODE = "Enter a UK postcode such as SW1A 1AA."
FR_CODE = "Enter a French postcode: 5 digits, such as 75008."
REQUIRED = "This field is required."
ONE_LINE = "Enter a single line of text without control characters."


_numbers = itertools.count(1)


def form(**changes: str) -> AddressChangeForm:
    profile = Profile.objects.create(email=f"postal{next(_numbers)}@example.org")
    return AddressChangeForm({**NEW_ADDRESS, **changes}, instance=profile)


def errors(**changes: str) -> dict[str, list[str]]:
    bound = form(**changes)
    assert not bound.is_valid()
    return bound.errors


@pytest.mark.parametrize(("country", "typed", "stored"), [
    ("us", "12345", "12345"),
    ("US", "12345-6789", "12345-6789"),
    ("US", "123456789", "12345-6789"),
    ("DE", "10115", "10115"),
    ("de", " 01067 ", "01067"),
    ("GB", "sw1a2aa", "SW1A 2AA"),
    ("GB", "SW1A 2AA", "SW1A 2AA"),
    ("gb", "m1  1ae", "M1 1AE"),
    ("GB", "EC1A-1BB", "EC1A 1BB"),
    ("FR", "75008", "75008"),
    ("NL", "1012ab", "1012 AB"),
    ("CA", "k1a0b1", "K1A 0B1"),
    ("GR", "105 57", "105 57"),  # no rule of its own: the lenient default
    ("IS", "101", "101"),
])
def test_valid_addresses_are_normalised(country, typed, stored):
    bound = form(address_country=country, address_postal_code=typed, address_name="  Erika   Mustermann ")
    assert bound.is_valid(), bound.errors
    assert bound.cleaned_data["address_postal_code"] == stored
    assert bound.cleaned_data["address_country"] == country.upper()
    assert bound.cleaned_data["address_name"] == "Erika Mustermann"
    assert bound.postal_address == {"name": "Erika Mustermann", "line1": "Heidestraße 17", "line2": "",
                                    "city": "Köln", "state": "", "postal_code": stored,
                                    "country": country.upper()}
    assert bound.get_recipient("letter") == bound.postal_address


@pytest.mark.parametrize(("country", "code", "message"), [
    ("US", "1234", US_ZIP),
    ("US", "12345-678", US_ZIP),
    ("US", "ABCDE", US_ZIP),
    ("US", "1234567890", US_ZIP),
    ("DE", "1011", DE_CODE),
    ("DE", "101155", DE_CODE),
    ("DE", "1O115", DE_CODE),
    ("DE", "D-10115", DE_CODE),
    ("GB", "SW1A", GB_CODE),
    ("GB", "12345", GB_CODE),
    ("GB", "QQ1 1AA", GB_CODE),
    ("GB", "SW1A 1AAA", GB_CODE),
    ("FR", "7500", FR_CODE),
    ("FR", "75 008 0", FR_CODE),
    ("GR", "!!!", str(LENIENT_MESSAGE)),
    ("GR", "1", str(LENIENT_MESSAGE)),
    # Digits other than ASCII ones are refused, not guessed at.
    ("DE", "１０１１５", DE_CODE),  # fullwidth
    ("DE", "١٠١١٥", DE_CODE),  # Arabic-Indic
    ("US", "१२३४५", US_ZIP),  # Devanagari
    ("GR", "١٠٥٥٧", str(LENIENT_MESSAGE)),
])
def test_postal_code_rules_per_country(country, code, message):
    assert errors(address_country=country, address_postal_code=code) == {"address_postal_code": [message]}


@pytest.mark.parametrize(("value", "message"), [
    ("Germany", "Ensure this value has at most 2 characters (it has 7)."),
    ("D1", "Enter the country as a two-letter ISO code, such as DE or US."),
    ("XX", "Letters cannot be sent to XX."),
    ("ＤＥ", "Enter the country as a two-letter ISO code, such as DE or US."),
])
def test_country_must_be_a_supported_iso_code(value, message):
    # With the country wrong, the postal code is not judged by some other country's rule.
    assert errors(address_country=value, address_postal_code="whatever") == {"address_country": [message]}


def test_required_lines():
    assert errors(address_name="", address_line1="   ", address_city="", address_postal_code="",
                  address_country="") == {key: [REQUIRED] for key in (
                      "address_name", "address_line1", "address_city", "address_postal_code", "address_country")}
    # Line 2 is optional.
    assert form(address_line2="").is_valid()


@pytest.mark.parametrize(("field", "value", "message"), [
    ("address_line1", "x" * 10_000, "Ensure this value has at most 100 characters (it has 10000)."),
    ("address_postal_code", "1" * 10_000, "Ensure this value has at most 20 characters (it has 10000)."),
    ("address_country", "D" * 10_000, "Ensure this value has at most 2 characters (it has 10000)."),
    ("address_name", "Erika\x00Mustermann", "Null characters are not allowed."),
    ("address_postal_code", "10115\x00", "Null characters are not allowed."),
    ("address_city", "Köln\x07", ONE_LINE),
    ("address_line1", "Heidestraße\n17", ONE_LINE),
    ("address_line1", "Heide\u2028straße", ONE_LINE),
    ("address_city", "K\ud800ln", ONE_LINE),
])
def test_malformed_input_is_a_form_error(field, value, message):
    assert errors(**{field: value}) == {field: [message]}


def test_deferred_form_stores_the_normalised_address():
    bound = form(address_country="gb", address_postal_code="sw1a2aa", address_city="London")
    assert bound.is_valid(), bound.errors
    action = bound.save()
    delivery = action.deliveries.get()
    assert delivery.channel == "letter"
    assert '"postal_code": "SW1A 2AA"' in delivery.recipient and '"country": "GB"' in delivery.recipient
    assert delivery.masked_recipient.endswith("GB") and "SW1A" not in delivery.masked_recipient


# --- the reusable pieces alone --------------------------------------------------------------------------
def test_plain_address_form_with_a_state():
    data = {"address_name": "Jane Roe", "address_line1": "350 5th Ave", "address_city": "New York",
            "address_state": "ny", "address_postal_code": "10118", "address_country": "US"}
    bound = PostalAddressForm(data)
    assert bound.is_valid(), bound.errors
    assert bound.postal_address["state"] == "NY"
    bad = PostalAddressForm({**data, "address_state": "XY", "address_country": "ZZ"})
    assert not bad.is_valid()
    assert "address_country" in bad.errors  # not a choice
    bad = PostalAddressForm({**data, "address_state": "XY"})
    assert bad.errors == {"address_state": ["Enter the state as its two-letter USPS code, such as NY."]}


def test_helper_on_a_dict_raises_errors_per_field():
    data = {"addr_name": "A", "addr_line1": "B", "addr_city": "C", "addr_postal_code": "1", "addr_country": "DE"}
    with pytest.raises(ValidationError) as raised:
        clean_postal_address(data, prefix="addr_")
    assert raised.value.message_dict == {"addr_postal_code": [DE_CODE]}
    data["addr_postal_code"] = "10115"
    assert clean_postal_address(data, prefix="addr_")["postal_code"] == "10115"
    # Optional address: all empty is fine and gives None.
    empty = dict.fromkeys(data, "")
    assert clean_postal_address(empty, prefix="addr_", required=False) is None
    # A part whose field already failed (absent from cleaned_data): no address, no second error.
    del data["addr_city"]
    assert clean_postal_address(data, prefix="addr_") is None
    # Countries restricted by the caller.
    data["addr_city"] = "Berlin"
    with pytest.raises(ValidationError):
        clean_postal_address(data, prefix="addr_", countries=["US"])


def test_normalize_postal_code_refuses_non_text():
    for value in (None, 12345, ["10115"], b"10115"):
        with pytest.raises(ValidationError):
            normalize_postal_code("DE", value)


def test_address_lines_follow_the_destination_country():
    us = {"name": "Jane Roe", "line1": "350 5th Ave", "city": "New York", "state": "NY", "postal_code": "10118",
          "country": "US"}
    assert address_lines(us, sender_country="US") == ["Jane Roe", "350 5th Ave", "New York, NY 10118"]
    assert address_lines(us, sender_country="DE")[-1] == "UNITED STATES"
    gb = {"name": "A", "line1": "10 Downing St", "city": "London", "postal_code": "SW1A 2AA", "country": "GB"}
    assert address_lines(gb) == ["A", "10 Downing St", "London", "SW1A 2AA", "UNITED KINGDOM"]
    de = {"name": "B", "line1": "Heidestraße 17", "line2": "Hinterhaus", "city": "Köln", "postal_code": "51147",
          "country": "DE"}
    assert address_lines(de, sender_country="DE") == ["B", "Heidestraße 17", "Hinterhaus", "51147 Köln"]
