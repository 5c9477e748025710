"""Masking of personal data, the one set of rules for everything stored, logged or shown to operators.

One rule per kind of value, wherever it appears (a delivery's recipient in the admin, a provider's error text, a
log line, a failure reason):

- an email address keeps its first character and its domain: ``b***@example.org``;
- a number (phone, account, card, IBAN: 7 or more digits) keeps its first 3 and last 2 characters, without its
  spacing: ``+44***23``, ``DE8***00``; a shorter one is ``***``.  The mask has a fixed width, so it does not
  tell the length either;
- any other known value (a name, an address line) keeps its first 2 characters: ``Ad***``;
- a structured recipient (a postal address, a bank account, as JSON) shows only its keys and country:
  ``[city, country, line1, postal_code] DE``.

Dates (``2025-01-31``) stay readable.  A stored bank account is masked differently, by
:func:`mask_account`: its numbers by their last 4 (``••••3000``), enough to match a payout with a statement
line, and it is the form stored in clear next to the sealed value.

:func:`redacted_form_data` is what the admin shows of a deferred action's stored form input.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from typing import Any

MASK = "***"
#: Hidden form values in the admin (sealed or sensitive fields).
REDACTED = "••••"
#: The prefix of an account number stored masked (:func:`mask_account_number`).
ACCOUNT_MASK = "••••"

#: Keys of a structured recipient (a bank account as JSON) whose values are account numbers: masked to their last 4.
ACCOUNT_KEY_PARTS = ("iban", "account", "number", "routing")
#: ...unless the key names a person (``account_holder``): kept, like ``country``.
NAME_KEY_PARTS = ("holder", "name")
#: Parts of a form field's name whose value the admin never shows, whatever the form says.
SENSITIVE_NAME_PARTS = ("password", "passwd", "iban", "account", "routing", "card", "secret", "token", "pin",
                        "cvv", "cvc")

_NOT_IN_EMAIL = r"\s@<>\"'(),;:\[\]"
_EMAIL_RE = re.compile(rf"([^{_NOT_IN_EMAIL}])[^{_NOT_IN_EMAIL}]*@([^{_NOT_IN_EMAIL}]+)")
# IBANs as printed (upper case, any spacing) and as typed (any case, groups of 4).
_IBAN_RE = re.compile(r"\b(?:[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}"
                      r"|(?i:[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?))\b")
_NUMBER_RE = re.compile(r"\+?\d(?:[ ().-]{0,2}\d){6,}")  # phone, account or card numbers: 7+ digits
_NUMBER_VALUE_RE = re.compile(r"\+?[\d ().-]+")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}\b")
_MIN_KNOWN = 4  # shorter known values (a country code) are not looked for in texts


# --- single values ------------------------------------------------------------------------------------------
def parse_structured(value: str) -> dict | None:
    """The dict inside a structured recipient (a postal address, a bank account stored as JSON), else None."""
    if not isinstance(value, str) or not value.startswith("{"):
        return None
    try:
        data = json.loads(value)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def mask_email(value: str) -> str:
    """``b***@example.org``."""
    local, _, domain = value.rpartition("@")
    return f"{local[:1]}{MASK}@{domain}"


def mask_digits(value: str) -> str:
    """``+44***23``: a number by its first 3 and last 2 characters (spacing dropped); ``***`` under 7."""
    compact = re.sub(r"[^\w+]", "", value)
    return compact[:3] + MASK + compact[-2:] if len(compact) >= 7 else MASK


def mask_recipient(value: str) -> str:
    """A recipient as operators see it: ``b***@example.org``, ``+12***23``, ``[city, country, line1] DE``; enough
    for a person to recognise, not to harvest."""
    if not value:
        return ""
    data = parse_structured(value)
    if data is not None:
        shown = data.get("country") or str(data.get("postal_code") or "")[:2]
        return f"[{', '.join(sorted(data))}] {shown}".strip()
    value = value.strip()
    if "@" in value:
        return mask_email(value)
    if _NUMBER_VALUE_RE.fullmatch(value) or _IBAN_RE.fullmatch(value):
        return mask_digits(value)
    return value[:2] + MASK if len(value) >= _MIN_KNOWN else MASK


def is_account_key(key: str) -> bool:
    lowered = str(key).lower()
    return any(part in lowered for part in ACCOUNT_KEY_PARTS) and not any(part in lowered for part in NAME_KEY_PARTS)


def mask_account_number(value: object) -> str:
    """``••••3000``: an account number shown by its last 4 characters (spacing ignored); a value of fewer than
    8 characters shows none, since its last 4 would be most of it."""
    compact = "".join(str(value).split())
    return ACCOUNT_MASK + compact[-4:] if len(compact) >= 8 else ACCOUNT_MASK


def mask_account(value: str) -> str:
    """A sensitive recipient as it may be stored in clear: every account-number-like value of a JSON object
    (``iban``, ``account_number``, ``routing_number``… see :func:`is_account_key`) as :func:`mask_account_number`,
    the other keys (holder, country) as they are; any other text as :func:`mask_account_number`.  The full value
    is kept only sealed (``django_integration.models.seal_recipient``)."""
    data = parse_structured(value)
    if data is None:
        return mask_account_number(value)
    return json.dumps(_masked_object(data), sort_keys=True, ensure_ascii=False)


def _masked_object(data: dict) -> dict:
    masked = {}
    for key, item in data.items():
        if isinstance(item, dict):
            masked[key] = _masked_object(item)
        elif is_account_key(key) and item not in (None, ""):
            masked[key] = mask_account_number(item)
        else:
            masked[key] = item
    return masked


# --- texts --------------------------------------------------------------------------------------------------
def recipient_values(recipient: str) -> tuple[str, ...]:
    """The values to look for in texts about ``recipient``: itself, and for a structured one each of its values
    (an address's lines, a bank account's holder and numbers)."""
    recipient = (recipient or "").strip()
    if not recipient:
        return ()
    data = parse_structured(recipient)
    if data is None:
        return (recipient,)
    values = [str(v).strip() for v in data.values() if isinstance(v, str | int) and not isinstance(v, bool)]
    return (recipient, *(v for v in values if v))


def known_values(deliveries: Iterable[Any]) -> set[str]:
    """:func:`recipient_values` of each delivery's recipient.  A sealed recipient is opened for this (only to
    find it in free texts and mask it there), never shown; one sealed under a key no longer configured gives
    its masked form, all there is."""
    from deferred_confirmation.pipeline import crypto

    values: set[str] = set()
    for delivery in deliveries:
        try:
            recipient = delivery.recipient_value or ""
        except crypto.InvalidToken:
            recipient = delivery.recipient or ""
        values.update(recipient_values(recipient))
    return values


def redact_contacts(text: str, known: Iterable[str] = ()) -> str:
    """``text`` with personal data masked: the ``known`` values (a recipient's address, account number, name),
    email addresses, IBANs and long numbers (phones, accounts, cards).  Dates stay readable."""
    if not text:
        return text
    found = {v.strip() for v in known if isinstance(v, str) and len(v.strip()) >= _MIN_KNOWN}
    for value in sorted(found, key=len, reverse=True):
        if value.lower() in text.lower():
            text = re.sub(re.escape(value), lambda m: mask_recipient(m.group()), text, flags=re.IGNORECASE)
    text = _EMAIL_RE.sub(lambda m: mask_email(m.group()), text)
    text = _IBAN_RE.sub(lambda m: mask_digits(m.group()), text)
    return _NUMBER_RE.sub(_mask_number, text)


def _mask_number(match: re.Match) -> str:
    found = match.group()
    date = _DATE_RE.match(found)
    if date:  # 2025-01-31 (and a time after it): not personal data, but what follows may be
        return found[:date.end()] + _NUMBER_RE.sub(_mask_number, found[date.end():])
    return mask_digits(found)


# --- the admin's view of stored form data -------------------------------------------------------------------
def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def is_known(value: str, known: set[str]) -> bool:
    """Whether ``value`` is (or is a way of typing) one of the recipients: the same text, or a phone number
    typed differently (``(202) 555-0123`` for ``+12025550123``)."""
    lowered = value.strip().lower()
    if any(lowered == k.lower() for k in known):
        return True
    digits = _digits(value)
    return len(digits) >= 6 and any(len(_digits(k)) >= 6 and (_digits(k).endswith(digits) or
                                                               digits.endswith(_digits(k))) for k in known)


def sensitive_names(form_class_path: str) -> set[str]:
    """The form's ``sensitive_fields`` and its ``PasswordInput`` fields, if the form can be imported."""
    from django import forms

    from deferred_confirmation.pipeline.paths import import_path

    try:
        form_class = import_path(form_class_path)
    except Exception:  # a form since removed or renamed: the name patterns and sealing still apply
        return set()
    names = set(getattr(form_class, "sensitive_fields", ()) or ())
    names |= {name for name, field in getattr(form_class, "base_fields", {}).items()
              if isinstance(field.widget, forms.PasswordInput)}
    return names


def is_sensitive_key(key: str, sensitive: set[str], prefix: str | None = None) -> bool:
    name = key[len(prefix) + 1:] if prefix and key.startswith(prefix + "-") else key
    if any(name == s or name.startswith((s + "_", s + "-")) for s in sensitive):
        return True
    lowered = key.lower()
    return any(part in lowered for part in SENSITIVE_NAME_PARTS)


def _shown_value(value: Any, known: set[str]) -> str:
    from deferred_confirmation.pipeline.formdata import NUL_SAFE, SEALED

    if isinstance(value, dict) and set(value) == {SEALED}:
        return REDACTED  # never the ciphertext either
    if isinstance(value, dict) and set(value) == {NUL_SAFE}:
        try:
            decoded = base64.b64decode(value[NUL_SAFE], validate=True).decode("utf-8", "replace")
            value = decoded.replace("\x00", "\ufffd")
        except (ValueError, TypeError):
            return "[unreadable]"
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        if _contains_sealed(value, SEALED):
            return REDACTED
        text = json.dumps(value, ensure_ascii=False)
    if is_known(text, known):
        return mask_recipient(text.strip())
    return redact_contacts(text, known)


def _contains_sealed(value: Any, sealed: str) -> bool:
    if isinstance(value, dict):
        return sealed in value or any(_contains_sealed(v, sealed) for v in value.values())
    if isinstance(value, list):
        return any(_contains_sealed(v, sealed) for v in value)
    return False


def redacted_form_data(action: Any, deliveries: Iterable[Any] | None = None) -> list[tuple[str, str]]:
    """(key, shown values) for each stored form key of a deferred action: sealed values and sensitive fields as
    ``••••``, the rest with personal data masked."""
    known = known_values(action.deliveries.all() if deliveries is None else deliveries)
    sensitive = sensitive_names(action.form_class)
    stored = action.form_data if isinstance(action.form_data, dict) else {"": [action.form_data]}
    rows = []
    for key, values in stored.items():
        values = values if isinstance(values, list) else [values]
        if is_sensitive_key(str(key), sensitive, action.form_prefix):
            shown = [REDACTED for _ in values] or [REDACTED]
        else:
            shown = [_shown_value(v, known) for v in values]
        rows.append((str(key), ", ".join(shown)))
    return rows
