"""Phone numbers typed by people, checked with Google's libphonenumber (the ``phonenumbers`` package).

``PhoneNumberField`` is a form field: a number that cannot be one (letters, too short, impossible for
its country, not a number that takes text messages) is a form error the person can fix, and never a
failed SMS task later.  ``cleaned_data`` holds the number in E.164 (``+4915123456789``), the form the
SMS channel sends to and the send limits count by.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from deferred_confirmation.pipeline.conf import app_settings

MAX_INPUT = 40  # characters: the longest sensible way of writing a 15-digit number with separators
#: What a person may type: ASCII digits, a leading +, spaces and the usual separators.  No letters (libphonenumber
#: would read "1-800-FLOWERS" as digits), no other scripts' digits, no extensions (SMS cannot reach them).
_ALLOWED_RE = re.compile(r"\A\+?[0-9 ().\-/]+\Z")


def _number_types() -> Any:
    import phonenumbers

    return phonenumbers.PhoneNumberType


def sms_incapable_types() -> frozenset[int]:
    """Number types that cannot receive a text message, or that cost us money to text (SMS pumping)."""
    kinds = _number_types()
    return frozenset({kinds.FIXED_LINE, kinds.PREMIUM_RATE, kinds.SHARED_COST, kinds.UAN, kinds.VOICEMAIL,
                      kinds.PAGER})


class PhoneNumberField(forms.CharField):
    """A phone number, cleaned to E.164.

    ``region``: where numbers typed without ``+country`` are from (default
    ``DEFERRED_CONFIRMATION["PHONE_REGION"]``; None: the country code is required).
    ``reject_types``: ``phonenumbers.PhoneNumberType`` values refused (default: numbers that take no
    text messages, and premium-rate ones); pass ``()`` to accept every valid number.
    """

    default_error_messages = {
        "invalid": _("Enter a valid phone number, e.g. +44 7400 123456."),
        "country": _("Enter the number with its country code, starting with +."),
        "type": _("This number cannot receive text messages. Enter a mobile number."),
    }

    def __init__(self, *, region: str | None = None, reject_types: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", MAX_INPUT)
        super().__init__(**kwargs)
        self.region = region
        self.reject_types = reject_types
        self.widget.input_type = "tel"
        self.widget.attrs.update({"autocomplete": "tel", "inputmode": "tel"})

    def clean(self, value: Any) -> str:
        # CharField first: required, max_length and the null-character check run before any parsing.
        text = super().clean(value)
        if text in self.empty_values:
            return self.empty_value
        return self.to_e164(text)

    def to_e164(self, text: str) -> str:
        import phonenumbers

        if not _ALLOWED_RE.match(text) or sum(c.isdigit() for c in text) < 3:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        region = self.region if self.region is not None else app_settings.PHONE_REGION
        if not text.startswith("+") and not region:
            raise forms.ValidationError(self.error_messages["country"], code="country")
        try:
            number = phonenumbers.parse(text, region or None)
        except phonenumbers.NumberParseException:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None
        if (number.extension or not phonenumbers.is_possible_number(number)
                or not phonenumbers.is_valid_number(number)):
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        rejected = sms_incapable_types() if self.reject_types is None else frozenset(self.reject_types)
        if phonenumbers.number_type(number) in rejected:
            raise forms.ValidationError(self.error_messages["type"], code="type")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
