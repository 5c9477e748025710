"""PhoneNumberField: a bad number is a form error, never a failed task; good ones are cleaned to E.164."""

from __future__ import annotations

import pytest
from django import forms

from deferred_confirmation.django_integration.models import DeferredAction
from deferred_confirmation.django_integration.phone import PhoneNumberField
from tests.channels.sms.conftest import PHONE, new_profile
from tests.channels.sms.forms import ProfilePhoneForm


class NumberForm(forms.Form):
    phone = PhoneNumberField()


def clean(value, **field_kwargs):
    return PhoneNumberField(**field_kwargs).clean(value)


@pytest.mark.parametrize(("typed", "e164"), [
    ("+12025550123", PHONE),
    ("+1 202-555-0123", PHONE),
    ("+1 (202) 555.0123", PHONE),
    ("  +1 202 555 0123  ", PHONE),
    ("+49 151 23456789", "+4915123456789"),
    ("+44 7400 123456", "+447400123456"),
])
def test_numbers_are_cleaned_to_e164(typed, e164):
    assert clean(typed) == e164


def test_phone_region_allows_national_numbers(settings):
    settings.DEFERRED_CONFIRMATION = {**settings.DEFERRED_CONFIRMATION, "PHONE_REGION": "US"}
    assert clean("(202) 555-0123") == PHONE
    assert clean("+49 151 23456789") == "+4915123456789"  # an explicit country code still wins
    assert clean("07400 123456", region="GB") == "+447400123456"


def test_without_a_region_the_country_code_is_required():
    with pytest.raises(forms.ValidationError) as error:
        clean("202-555-0123")
    assert error.value.code == "country"


MALFORMED = {
    "letters": "+1 202 ABC 0123",
    "vanity": "+1-800-FLOWERS",
    "too-short": "+1 2",
    "+1 555": "+1 555",
    "too-long": "+1 202 555 0123 4567 8901",
    "no-digits": "+",
    "double-plus": "++12025550123",
    "arabic-indic-digits": "+\u0661 \u0662\u0660\u0662 \u0665\u0665\u0665 \u0660\u0661\u0662\u0663",
    "fullwidth-digits": "+\uff11\uff12\uff10\uff12\uff15\uff15\uff15\uff10\uff11\uff12\uff13",
    "10kB": "+1" + "2" * 10_240,
    "10kB-spaces": "+1 202 555 0123" + " " * 10_240 + "9",
    "null-byte": "+1202555\x000123",
    "emoji": "+1 202 555 012\U0001f600",
    "extension": "+1 202 555 0123 ext. 5",
    "rtl-override": "\u202e+12025550123",
    "unknown-country": "+999 1234 5678",
    "premium-rate": "+1 900 555 0123",
    "landline": "+44 20 7946 0958",
    "invalid-number": "+44 7700 900123",
    "sql": "+1'; DROP TABLE x; --",
}


@pytest.mark.parametrize("typed", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_numbers_are_a_field_error(typed):
    form = NumberForm({"phone": typed})
    assert not form.is_valid()
    assert list(form.errors) == ["phone"]
    assert form.errors["phone"][0]  # a message a person can read


def test_empty_is_required_unless_optional():
    assert not NumberForm({"phone": "  "}).is_valid()
    assert clean("", required=False) == ""


def test_widget_is_a_tel_input():
    html = str(NumberForm()["phone"])
    assert 'type="tel"' in html and 'autocomplete="tel"' in html


@pytest.mark.django_db
@pytest.mark.parametrize("typed", [MALFORMED[k] for k in ("letters", "+1 555", "arabic-indic-digits", "10kB",
                                                          "null-byte", "premium-rate")])
def test_a_deferred_form_with_a_bad_number_is_invalid_and_stores_nothing(typed):
    form = ProfilePhoneForm({"phone": typed}, instance=new_profile())
    assert not form.is_valid()
    assert "phone" in form.errors
    with pytest.raises(ValueError, match="didn't validate"):
        form.save()
    assert not DeferredAction.objects.exists()
