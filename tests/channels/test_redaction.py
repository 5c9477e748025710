"""The one set of masking rules (pipeline.redaction) and the one way absolute URLs are built (pipeline.siteurl)."""

from __future__ import annotations

import json

import pytest

from deferred_confirmation.pipeline.exceptions import ChannelConfigurationError
from deferred_confirmation.pipeline.redaction import (
    mask_account,
    mask_recipient,
    recipient_values,
    redact_contacts,
)
from deferred_confirmation.pipeline.siteurl import absolute_url, site_url


@pytest.mark.parametrize("value, shown", [
    ("bob@example.org", "b***@example.org"),
    ("+12025550123", "+12***23"),
    ("+1 (202) 555-0123", "+12***23"),
    ("DE89 3704 0044 0532 0130 00", "DE8***00"),
    ("12345", "***"),
    ("Ada Lovelace", "Ad***"),
    ("abc", "***"),
    ("", ""),
    (json.dumps({"line1": "1 Main St", "city": "Berlin", "country": "DE"}), "[city, country, line1] DE"),
])
def test_mask_recipient(value, shown):
    assert mask_recipient(value) == shown


def test_a_mask_does_not_tell_the_length():
    assert mask_recipient("+12025550123") == mask_recipient("+120255501234523")[:3] + "***" + "23"
    assert len(mask_recipient("+4915123456789")) == len(mask_recipient("+12025550123"))


def test_redact_contacts_masks_known_values_emails_ibans_and_numbers_but_not_dates():
    text = ("Ada Lovelace <ADA@example.org> at +44 7700 900123, IBAN DE89 3704 0044 0532 0130 00, "
            "card 4111111111111111, on 2025-01-31 12:00, then 2025-01-31 4915123456789")
    shown = redact_contacts(text, known=("Ada Lovelace",))
    for secret in ("Lovelace", "ADA@", "7700", "3704", "111111", "5123"):
        assert secret not in shown, secret
    assert shown == ("Ad*** <A***@example.org> at +44***23, IBAN DE8***00, card 411***11, on 2025-01-31 12:00, "
                     "then 2025-01-31 491***89")


def test_redact_contacts_is_idempotent():
    once = redact_contacts("to bob@example.org and +12025550123")
    assert redact_contacts(once) == once


def test_recipient_values_of_a_structured_recipient():
    address = json.dumps({"name": "Ada", "line1": "1 Main St", "zip": 12345, "country": "DE"})
    assert set(recipient_values(address)) == {address, "Ada", "1 Main St", "12345", "DE"}
    assert recipient_values("bob@example.org") == ("bob@example.org",)
    assert recipient_values("{not json") == ("{not json",)


def test_stored_account_keeps_the_last_4_of_each_number():
    masked = json.loads(mask_account(json.dumps({"holder": "Ada", "iban": "DE89370400440532013000"})))
    assert masked == {"holder": "Ada", "iban": "••••3000"}


def test_absolute_url(settings):
    settings.DEFERRED_CONFIRMATION = {**settings.DEFERRED_CONFIRMATION, "SITE_URL": "https://example.org/"}
    assert site_url() == "https://example.org"
    assert absolute_url("/confirm/x/") == "https://example.org/confirm/x/"
    settings.DEFERRED_CONFIRMATION = {**settings.DEFERRED_CONFIRMATION, "SITE_URL": None}
    assert site_url() == ""
    with pytest.raises(ChannelConfigurationError, match=r"SITE_URL.*SMS links need it"):
        absolute_url("/code/1/", needed_for="SMS links")
