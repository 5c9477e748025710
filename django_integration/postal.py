"""Postal addresses for letters: validation and normalisation that forms can reuse.

An address is a dict with the keys ``name``, ``line1``, ``line2``, ``city``, ``state`` (may be empty),
``postal_code`` and ``country`` (ISO 3166-1 alpha-2).  Forms hold it in fields named ``<prefix><key>``
(``address_name``, ``address_line1`` ...)::

    class AddressChangeForm(PostalAddressMixin, DeferredForm):
        confirmation_channels = ["letter"]

        class Meta:
            model = Profile
            fields = ["address_name", "address_line1", "address_line2", "address_city",
                      "address_postal_code", "address_country"]

        def get_recipient(self, channel):
            return self.postal_address if channel == "letter" else super().get_recipient(channel)

or, in any form's ``clean()``: ``self.postal_address = clean_postal_address(cleaned_data)``.

Every value is checked as text a person typed: control characters (NUL included), overlong values and
digits other than ASCII ones are form errors, never exceptions.  Postal codes are checked per country
(US ZIP, UK postcode, German/French 5 digits, ...) and stored in their canonical shape ("sw1a1aa" becomes
"SW1A 1AA"); other supported countries get a lenient rule.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

PARTS = ("name", "line1", "line2", "city", "state", "postal_code", "country")
REQUIRED = ("name", "line1", "city", "postal_code", "country")
MAX_LENGTH = 100  # per line; the letter's window and Lob's limits are stricter than any model field here

#: Countries letters can be addressed to (ISO 3166-1 alpha-2 -> English name, as printed on the envelope).
SUPPORTED_COUNTRIES: dict[str, str] = {
    "AT": "Austria", "AU": "Australia", "BE": "Belgium", "CA": "Canada", "CH": "Switzerland",
    "CZ": "Czechia", "DE": "Germany", "DK": "Denmark", "ES": "Spain", "FI": "Finland", "FR": "France",
    "GB": "United Kingdom", "GR": "Greece", "HU": "Hungary", "IE": "Ireland", "IL": "Israel", "IS": "Iceland",
    "IT": "Italy", "JP": "Japan", "KR": "South Korea", "LU": "Luxembourg", "MX": "Mexico", "NL": "Netherlands",
    "NO": "Norway", "NZ": "New Zealand", "PL": "Poland", "PT": "Portugal", "SE": "Sweden", "SG": "Singapore",
    "US": "United States", "ZA": "South Africa",
}

#: USPS codes of the states, DC, the territories and the armed forces' "states".
_US_STATES = ("AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY NC "
              "ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY AS GU MP PR VI UM AA AE AP")
US_STATES = frozenset(_US_STATES.split(" "))


@dataclass(frozen=True)
class PostalRule:
    """A country's postal codes: ``pattern`` is matched against the code upper-cased with spaces and dashes
    removed; ``shape`` gives the canonical form, "#" standing for the compact code's next character (and
    "@" for the whole compact code but its last three: the UK's variable-length outward code)."""

    pattern: str
    shape: str
    message: str

    def normalize(self, value: str) -> str | None:
        compact = re.sub(r"[\s-]+", "", value.upper())
        if not re.fullmatch(self.pattern, compact, flags=re.ASCII):
            return None
        if self.shape.startswith("@"):
            return compact[:-3] + self.shape[1:].replace("###", compact[-3:])
        if self.shape.count("#") < len(compact):  # e.g. a five-digit US ZIP: only the first part applies
            return compact
        chars = iter(compact)
        return "".join(next(chars) if symbol == "#" else symbol for symbol in self.shape[:self._cut(compact)])

    def _cut(self, compact: str) -> int:
        """Length of the shape prefix that holds exactly ``compact``'s characters."""
        seen = 0
        for index, symbol in enumerate(self.shape):
            seen += symbol == "#"
            if seen == len(compact):
                return index + 1
        return len(self.shape)


def _digits(n: int, example: str, what: str) -> PostalRule:
    return PostalRule(f"[0-9]{{{n}}}", "#" * n, f"Enter a {what}: {n} digits, such as {example}.")


# The UK's postcode format (outward code, then a digit and two letters), after the government data standard.
_GB = (r"(GIR0AA|[A-PR-UWYZ]([0-9]{1,2}|[A-HK-Y][0-9]([0-9]|[ABEHMNPRV-Y])?|[0-9][A-HJKPS-UW])"
       r"[0-9][ABD-HJLNP-UW-Z]{2})")
_CA = r"[ABCEGHJ-NPRSTVXY][0-9][ABCEGHJ-NPRSTV-Z][0-9][ABCEGHJ-NPRSTV-Z][0-9]"

POSTAL_RULES: dict[str, PostalRule] = {
    "US": PostalRule(r"[0-9]{5}([0-9]{4})?", "#####-####", "Enter a US ZIP code such as 12345 or 12345-6789."),
    "GB": PostalRule(_GB, "@ ###", "Enter a UK postcode such as SW1A 1AA."),
    "CA": PostalRule(_CA, "### ###", "Enter a Canadian postal code such as K1A 0B1."),
    "DE": _digits(5, "10115", "German postcode"),
    "FR": _digits(5, "75008", "French postcode"),
    "ES": _digits(5, "28013", "Spanish postcode"),
    "IT": _digits(5, "00184", "Italian postcode"),
    "FI": _digits(5, "00100", "Finnish postcode"),
    "AT": _digits(4, "1010", "Austrian postcode"),
    "AU": _digits(4, "2000", "Australian postcode"),
    "BE": _digits(4, "1000", "Belgian postcode"),
    "CH": _digits(4, "8001", "Swiss postcode"),
    "DK": _digits(4, "1050", "Danish postcode"),
    "LU": _digits(4, "1009", "Luxembourg postcode"),
    "NO": _digits(4, "0150", "Norwegian postcode"),
    "NZ": _digits(4, "6011", "New Zealand postcode"),
    "NL": PostalRule(r"[1-9][0-9]{3}[A-Z]{2}", "#### ##", "Enter a Dutch postcode such as 1012 AB."),
    "SE": PostalRule(r"[0-9]{5}", "### ##", "Enter a Swedish postcode such as 114 55."),
    "CZ": PostalRule(r"[0-9]{5}", "### ##", "Enter a Czech postcode such as 110 00."),
    "PL": PostalRule(r"[0-9]{5}", "##-###", "Enter a Polish postcode such as 00-950."),
    "PT": PostalRule(r"[0-9]{7}", "####-###", "Enter a Portuguese postcode such as 1000-001."),
    "JP": PostalRule(r"[0-9]{7}", "###-####", "Enter a Japanese postcode such as 100-0001."),
    # Eircodes: a routing key (letter, two digits, or D6W) and a four-character unique identifier.
    "IE": PostalRule(r"([AC-FHKNPRTV-Y][0-9]{2}|D6W)[0-9AC-FHKNPRTV-Y]{4}", "### ####",
                     "Enter an Eircode such as D02 X285."),
}
#: Countries without a rule of their own: 2-10 ASCII letters and digits, spaces and dashes kept.
LENIENT_RULE_RE = re.compile(r"[A-Z0-9][A-Z0-9 -]{0,8}[A-Z0-9]", re.ASCII)
LENIENT_MESSAGE = _("Enter a postal code: 2 to 10 letters and digits.")

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SPACES = re.compile(r"\s+")


def clean_line(value: Any, *, max_length: int = MAX_LENGTH) -> str:
    """One line of an address as typed: NFC, inner whitespace runs collapsed, no control characters."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationError(_("Enter text."), code="invalid")
    if len(value) > max_length * 4:  # no normalisation work on megabytes
        raise ValidationError(_("Ensure this value has at most %(max)d characters."), code="max_length",
                              params={"max": max_length})
    if _CONTROL.search(value) or any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise ValidationError(_("Enter a single line of text without control characters."), code="control")
    text = _SPACES.sub(" ", unicodedata.normalize("NFC", value)).strip()
    if len(text) > max_length:
        raise ValidationError(_("Ensure this value has at most %(max)d characters."), code="max_length",
                              params={"max": max_length})
    return text


def validate_country(value: Any, countries: Iterable[str] | None = None) -> str:
    """The ISO 3166-1 alpha-2 code of a supported country (upper-cased), or ValidationError."""
    supported = set(countries) if countries is not None else set(SUPPORTED_COUNTRIES)
    code = value.strip().upper() if isinstance(value, str) else ""
    if not re.fullmatch(r"[A-Z]{2}", code, flags=re.ASCII):
        raise ValidationError(_("Enter the country as a two-letter ISO code, such as DE or US."), code="country")
    if code not in supported:
        raise ValidationError(_("Letters cannot be sent to %(country)s."), code="unsupported_country",
                              params={"country": code})
    return code


def normalize_postal_code(country: str, value: Any) -> str:
    """``value`` in ``country``'s canonical shape ("sw1a1aa" -> "SW1A 1AA"), or ValidationError."""
    rule = POSTAL_RULES.get(country)
    text = value if isinstance(value, str) else ""
    if len(text) > 40 or _CONTROL.search(text) or not text.isascii():
        # Unicode digits ("１２３４５", "١٢٣٤٥") are refused rather than guessed at: a letter carrier reads
        # ASCII digits, and the code printed must be the one typed.
        raise ValidationError(rule.message if rule else LENIENT_MESSAGE, code="postal_code")
    if rule is not None:
        normalized = rule.normalize(text.strip())
        if normalized is None:
            raise ValidationError(rule.message, code="postal_code")
        return normalized
    compact = _SPACES.sub(" ", text.strip().upper())
    if not LENIENT_RULE_RE.fullmatch(compact):
        raise ValidationError(LENIENT_MESSAGE, code="postal_code")
    return compact


def _filled(value: Any) -> bool:
    return value is not None and bool(str(value).strip())


def validate_us_state(value: str) -> str:
    code = value.strip().upper()
    if code not in US_STATES:
        raise ValidationError(_("Enter the state as its two-letter USPS code, such as NY."), code="state")
    return code


def clean_postal_address(cleaned_data: dict[str, Any], prefix: str = "address_", *,
                         countries: Iterable[str] | None = None, required: bool = True,
                         state_required_for: Iterable[str] = ()) -> dict[str, str] | None:
    """Check and normalise the address held in ``cleaned_data`` under ``<prefix><part>`` keys.

    Normalised values are written back into ``cleaned_data`` (so a ModelForm saves them).  Returns the
    address dict, or None if a part is absent from ``cleaned_data`` (its field failed its own validation,
    which the form already reports) or, with ``required=False``, if every part is empty.  Raises
    ``ValidationError({field name: [errors]})`` for every wrong part: raise it from a form's ``clean()``
    and Django puts each error on its field.

    A ``<prefix>state`` key is optional; for US addresses that have one it must be a USPS state code, and
    for the countries in ``state_required_for`` it must be given.
    """
    keys = {part: f"{prefix}{part}" for part in PARTS}
    present = {part: key for part, key in keys.items() if key in cleaned_data}
    if not required and not any(str(cleaned_data.get(key) or "").strip() for key in present.values()):
        return None
    errors: dict[str, list[ValidationError]] = {}
    values: dict[str, str] = {}
    for part, key in present.items():
        if part in ("country", "postal_code", "state"):
            continue
        try:
            values[part] = clean_line(cleaned_data[key])
        except ValidationError as exc:
            errors[key] = [exc]
    if "country" in present and _filled(cleaned_data[keys["country"]]):
        try:
            values["country"] = validate_country(cleaned_data[keys["country"]], countries)
        except ValidationError as exc:
            errors[keys["country"]] = [exc]
    country = values.get("country", "")
    if "postal_code" in present and _filled(cleaned_data[keys["postal_code"]]):
        raw = cleaned_data[keys["postal_code"]]
        if country:
            try:
                values["postal_code"] = normalize_postal_code(country, raw)
            except ValidationError as exc:
                errors[keys["postal_code"]] = [exc]
        else:  # no valid country to check it against: that error (or "required") is reported instead
            values["postal_code"] = str(raw).strip()
    if "state" in present:
        try:
            state = clean_line(cleaned_data.get(keys["state"]))
            if state and country == "US":
                state = validate_us_state(state)
            elif not state and country in set(state_required_for):
                raise ValidationError(_("This field is required."), code="required")
            values["state"] = state
        except ValidationError as exc:
            errors[keys["state"]] = [exc]
    for part in REQUIRED:
        key = keys[part]
        if part in present and not values.get(part) and key not in errors:
            errors[key] = [ValidationError(_("This field is required."), code="required")]
    if errors:
        raise ValidationError(errors)
    for part, key in present.items():
        cleaned_data[key] = values.get(part, "")
    if any(part not in present for part in REQUIRED):
        return None
    return {part: values.get(part, "") for part in PARTS}


def address_lines(address: Mapping[str, Any], *, sender_country: str | None = None) -> list[str]:
    """The lines of an envelope's address block, in the destination country's order.

    The country name is the last line, in capitals, unless the letter stays in ``sender_country``."""
    name, line1, line2 = address.get("name", ""), address.get("line1", ""), address.get("line2", "")
    city, state, code = address.get("city", ""), address.get("state", ""), address.get("postal_code", "")
    country = address.get("country", "")
    if country in ("US", "CA"):
        locality = [f"{city}, {state} {code}" if state else f"{city} {code}"]
    elif country == "AU":
        locality = [f"{city} {state} {code}"]
    elif country in ("GB", "IE"):
        locality = [city, code]
    else:
        locality = [f"{code} {city}"]
    lines = [name, line1, line2, *locality]
    if country and country != sender_country:
        lines.append(SUPPORTED_COUNTRIES.get(country, country).upper())
    return [line.strip() for line in lines if line and line.strip()]


def country_choices(countries: Iterable[str] | None = None) -> list[tuple[str, str]]:
    codes = countries if countries is not None else SUPPORTED_COUNTRIES
    return sorted(((code, SUPPORTED_COUNTRIES.get(code, code)) for code in codes), key=lambda pair: pair[1])


class PostalAddressMixin:
    """Form mixin: validates the ``postal_prefix`` fields in ``clean()`` and keeps the result in
    ``self.postal_address`` (None until the form is valid)."""

    postal_prefix = "address_"
    postal_countries: Iterable[str] | None = None  # None: SUPPORTED_COUNTRIES
    postal_required = True
    postal_state_required_for: Iterable[str] = ()
    postal_address: dict[str, str] | None = None

    def clean(self) -> dict[str, Any]:
        cleaned_data = super().clean()  # type: ignore[misc]
        self.postal_address = None
        self.postal_address = clean_postal_address(
            cleaned_data, self.postal_prefix, countries=self.postal_countries, required=self.postal_required,
            state_required_for=self.postal_state_required_for)
        return cleaned_data


class PostalAddressForm(PostalAddressMixin, forms.Form):
    """A plain form of the address fields (e.g. to collect an address outside a ModelForm)."""

    address_name = forms.CharField(label=_("Name"), max_length=MAX_LENGTH)
    address_line1 = forms.CharField(label=_("Address line 1"), max_length=MAX_LENGTH)
    address_line2 = forms.CharField(label=_("Address line 2"), max_length=MAX_LENGTH, required=False)
    address_city = forms.CharField(label=_("City"), max_length=MAX_LENGTH)
    address_state = forms.CharField(label=_("State / region"), max_length=MAX_LENGTH, required=False)
    address_postal_code = forms.CharField(label=_("Postal code"), max_length=20)
    address_country = forms.ChoiceField(label=_("Country"), choices=country_choices)
