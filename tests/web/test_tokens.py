"""deferred_confirmation.pipeline.tokens: digests by purpose, key rotation, codes bound to their delivery, shape
checks."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from django.urls import reverse

from deferred_confirmation import pipeline
from deferred_confirmation.pipeline import tokens

OLD_KEY = "web-tests-old-key-0123456789abcdefghijklmnopqrstuvwxyz"
NEW_KEY = "web-tests-new-key-zyxwvutsrqponmlkjihgfedcba9876543210"


def test_link_tokens_are_long_random_and_well_formed():
    made = {tokens.make_link_token() for _ in range(200)}
    assert len(made) == 200
    for token in made:
        assert tokens.is_well_formed_link_token(token)
        assert len(token) == 43  # 32 bytes, base64url without padding: 256 bits


def test_codes():
    code = tokens.make_code(6)
    assert len(code) == 6 and code.isdigit()
    assert set(tokens.make_code(40, alphabet="AB")) <= {"A", "B"}


def test_digests_are_keyed_hmacs_not_plain_hashes(settings):
    token = tokens.make_link_token()
    digest = tokens.stored_link_digest(token)
    assert len(digest) == 64 and token not in digest
    assert digest != hashlib.sha256(token.encode()).hexdigest()
    assert digest != hmac.new(settings.SECRET_KEY.encode(), token.encode(), "sha256").hexdigest()
    settings.SECRET_KEY = NEW_KEY
    settings.SECRET_KEY_FALLBACKS = []
    assert tokens.stored_link_digest(token) != digest


def test_digests_differ_by_purpose(settings):
    message = "123456"
    key = settings.SECRET_KEY
    assert tokens._digest("link", message, key) != tokens._digest("code", message, key)
    assert tokens.stored_link_digest(f"1:{message}") != tokens.code_digest(1, message)


def test_codes_are_bound_to_their_delivery():
    code = "123456"
    first, second = tokens.code_digest(1, code), tokens.code_digest(2, code)
    assert first != second
    assert tokens.check_code(1, code, first)
    assert not tokens.check_code(2, code, first)
    assert not tokens.check_code(1, "123457", first)
    assert not tokens.check_code(1, code, "")
    # "1:23" for delivery 1 and "12:3" for delivery 12 must not collide
    assert tokens.code_digest(1, "23") != tokens.code_digest(12, "3")


def test_check_code_honours_fallback_keys(settings):
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = OLD_KEY, []
    stored = tokens.code_digest(7, "654321")
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, [OLD_KEY]
    assert tokens.check_code(7, "654321", stored)
    settings.SECRET_KEY_FALLBACKS = []
    assert not tokens.check_code(7, "654321", stored)


def test_link_digests_cover_every_key(settings):
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, [OLD_KEY]
    token = tokens.make_link_token()
    digests = tokens.link_digests_under_all_keys(token)
    assert digests[0] == tokens.stored_link_digest(token)
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = OLD_KEY, []
    assert digests[1] == tokens.stored_link_digest(token)


@pytest.mark.parametrize("value", [None, 0, 12345, 1.5, b"A" * 43, bytearray(b"A" * 43), ["A" * 43],
                                   {"A" * 43: 1}, ("A" * 43,), object()])
def test_is_well_formed_link_token_rejects_non_str(value):
    assert tokens.is_well_formed_link_token(value) is False


@pytest.mark.parametrize("value", ["", "A", "A" * 42, "A" * 44, "A" * 43 + "\n", "\n" + "A" * 42,
                                   "A" * 42 + "=", "A" * 42 + "+", "A" * 42 + "/", "\u00e9" * 43,
                                   "A" * 42 + "\x00", "\uff21" * 43, "A" * 100_000])
def test_is_well_formed_link_token_rejects_bad_shapes(value):
    assert tokens.is_well_formed_link_token(value) is False


def test_digests_match():
    assert tokens.digests_match("ab", "ab")
    assert not tokens.digests_match("ab", "ac")
    assert not tokens.digests_match("", "")


def test_link_sent_before_a_key_rotation_still_confirms(stage, settings, client, run_on_commit):
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = OLD_KEY, []
    staged = stage()
    # Rotate: the old key moves into the fallbacks.
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, [OLD_KEY]
    url = reverse("confirmation:link", args=[staged.token])
    assert client.get(url).status_code == 200
    with run_on_commit():
        response = client.post(url)
    assert response.status_code in (302, 303)
    staged.refresh()
    assert staged.action.state == "applied"
    assert staged.profile.email == staged.new_email


def test_link_dies_when_its_key_is_dropped(stage, settings, client):
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = OLD_KEY, []
    staged = stage()
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, []
    assert pipeline.confirm(staged.token).status == "invalid"
    assert client.post(reverse("confirmation:link", args=[staged.token])).status_code == 404
    assert staged.refresh().action.state == "notified"


def test_sealed_secret_in_flight_survives_a_rotation(settings):
    from deferred_confirmation.pipeline import crypto

    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = OLD_KEY, []
    sealed = crypto.seal("secret-in-flight", "s3cret")
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, [OLD_KEY]
    assert crypto.open_sealed("secret-in-flight", sealed) == "s3cret"
    with pytest.raises(crypto.InvalidToken):
        crypto.open_sealed("another-purpose", sealed)
    settings.SECRET_KEY_FALLBACKS = []
    with pytest.raises(crypto.InvalidToken):
        crypto.open_sealed("secret-in-flight", sealed)


@pytest.mark.parametrize("code", ["\ud800", "12\udfff34", None, 123456, b"123456"], ids=repr)
def test_check_code_refuses_what_cannot_be_a_code(code):
    stored = tokens.code_digest(1, "123456")
    assert tokens.check_code(1, code, stored) is False
