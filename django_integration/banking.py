"""Form fields for the bank details a micro-deposit is paid to, checked before anything is sent.

- :class:`IBANField`: country, length for that country, check digits (ISO 13616 mod-97), the country's account
  format and national check digits where python-stdnum knows them; cleaned to the compact upper-case form
  (``"de89 3704 0044 0532 0130 00"`` -> ``"DE89370400440532013000"``).
- :class:`ABARoutingNumberField`: 9 digits, a Federal Reserve prefix, the ABA checksum.
- :class:`USAccountNumberField`: 4 to 17 digits.

Each error says what is wrong ("An IBAN from DE has 22 characters; this one has 21").  Any input, however
malformed (other scripts' digits, null bytes, 10 kB), ends as a form error, never as an exception.
Checks use `python-stdnum <https://arthurdejong.org/python-stdnum/>`_ (the ``microdeposit`` extra).
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _
from stdnum import iban as stdnum_iban
from stdnum import numdb
from stdnum.exceptions import ValidationError as StdnumError
from stdnum.iban import mod_97_10
from stdnum.us import rtn

_SEPARATORS = re.compile(r"[\s\-.]+")
_ALNUM = re.compile(r"[A-Za-z0-9]+", re.ASCII)
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_BBAN_PART = re.compile(r"(\d+)!?([nac])")
# First two digits of an ABA routing number: 00 U.S. Government, 01-12 Federal Reserve districts, 21-32 thrift
# institutions, 61-72 electronic transactions, 80 traveler's cheques.
_ABA_PREFIXES = frozenset([0, *range(1, 13), *range(21, 33), *range(61, 73), 80])


def _compact(value: str) -> str:
    return _SEPARATORS.sub("", value)


def iban_country(country: str) -> tuple[str, int] | None:
    """(country name, IBAN length) for a country code that has IBANs, from python-stdnum's registry."""
    info = numdb.get("iban").info(country)
    props = info[0][1] if info and info[0][0] == country else {}
    structure = props.get("bban")
    if not structure:
        return None
    return props.get("country", country), 4 + sum(int(n) for n, _kind in _BBAN_PART.findall(structure))


class _BankField(forms.CharField):
    """A CharField that runs Django's own checks (required, length, null characters) first, then ``check``."""

    def __init__(self, *, max_length: int, **kwargs: Any) -> None:
        kwargs.setdefault("strip", True)
        super().__init__(max_length=max_length, **kwargs)
        self.widget.attrs.setdefault("autocomplete", "off")
        self.widget.attrs.setdefault("spellcheck", "false")

    def clean(self, value: Any) -> str:
        value = self.to_python(value)
        self.validate(value)
        self.run_validators(value)  # max_length, null characters: before any parsing
        if value in self.empty_values:
            return value
        return self.check(value)

    def check(self, value: str) -> str:
        raise NotImplementedError

    def fail(self, code: str, **params: Any) -> ValidationError:
        return ValidationError(self.error_messages[code], code=code, params=params)


class IBANField(_BankField):
    """An International Bank Account Number; cleaned to its compact upper-case form.

    ``countries``: if given, only IBANs of these country codes are accepted (e.g. the SEPA countries)."""

    default_error_messages = {
        "characters": _("An IBAN has only the letters A-Z and the digits 0-9 (spaces are fine)."),
        "short": _("This is too short to be an IBAN."),
        "start": _("An IBAN starts with a two-letter country code and two check digits, like DE89."),
        "country": _("%(country)s is not a country that uses IBANs."),
        "not_accepted": _("IBANs from %(country)s are not accepted here."),
        "length": _("An IBAN from %(country)s has %(expected)d characters; this one has %(length)d."),
        "checksum": _("The IBAN's check digits are wrong: check it for a mistyped character."),
        "format": _("This is not the format of an IBAN from %(country)s (%(name)s)."),
        "national": _("The bank or account number inside this IBAN is not valid in %(country)s."),
    }

    def __init__(self, *, countries: list[str] | tuple[str, ...] | None = None, max_length: int = 50,
                 **kwargs: Any) -> None:
        super().__init__(max_length=max_length, **kwargs)
        self.countries = frozenset(c.upper() for c in countries) if countries else None
        self.widget.attrs.setdefault("autocapitalize", "characters")

    def check(self, value: str) -> str:
        number = _compact(value)
        if not _ALNUM.fullmatch(number):
            raise self.fail("characters")
        number = number.upper()
        if len(number) < 5:
            raise self.fail("short")
        country, check_digits = number[:2], number[2:4]
        if not country.isalpha() or not check_digits.isdigit():
            raise self.fail("start")
        known = iban_country(country)
        if known is None:
            raise self.fail("country", country=country)
        if self.countries is not None and country not in self.countries:
            raise self.fail("not_accepted", country=country)
        name, expected = known
        if len(number) != expected:
            raise self.fail("length", country=country, expected=expected, length=len(number))
        if not mod_97_10.is_valid(number[4:] + number[:4]):
            raise self.fail("checksum")
        try:
            stdnum_iban.validate(number, check_country=False)
        except StdnumError:
            raise self.fail("format", country=country, name=name) from None
        try:
            stdnum_iban.validate(number, check_country=True)
        except StdnumError:
            raise self.fail("national", country=country) from None
        return number


class ABARoutingNumberField(_BankField):
    """A US bank's 9-digit ABA routing transit number (RTN)."""

    default_error_messages = {
        "digits": _("A routing number has only the digits 0-9."),
        "length": _("A routing number has 9 digits; this one has %(length)d."),
        "prefix": _("No routing number starts with %(prefix)s: check the first two digits."),
        "checksum": _("Routing number checksum is wrong: check it for a mistyped digit."),
    }

    def __init__(self, *, max_length: int = 20, **kwargs: Any) -> None:
        super().__init__(max_length=max_length, **kwargs)
        self.widget.attrs.setdefault("inputmode", "numeric")

    def check(self, value: str) -> str:
        number = _compact(value)
        if not _DIGITS.fullmatch(number):
            raise self.fail("digits")
        if len(number) != 9:
            raise self.fail("length", length=len(number))
        if int(number[:2]) not in _ABA_PREFIXES:
            raise self.fail("prefix", prefix=number[:2])
        if not rtn.is_valid(number):
            raise self.fail("checksum")
        return number


class USAccountNumberField(_BankField):
    """A US bank account number: 4 to 17 digits (NACHA's limit)."""

    MIN_DIGITS, MAX_DIGITS = 4, 17
    default_error_messages = {
        "digits": _("An account number has only the digits 0-9."),
        "length": _("A US account number has 4 to 17 digits; this one has %(length)d."),
        "zeros": _("An account number is not all zeros."),
    }

    def __init__(self, *, max_length: int = 30, **kwargs: Any) -> None:
        super().__init__(max_length=max_length, **kwargs)
        self.widget.attrs.setdefault("inputmode", "numeric")

    def check(self, value: str) -> str:
        number = _compact(value)
        if not _DIGITS.fullmatch(number):
            raise self.fail("digits")
        if not self.MIN_DIGITS <= len(number) <= self.MAX_DIGITS:
            raise self.fail("length", length=len(number))
        if not number.strip("0"):
            raise self.fail("zeros")
        return number
