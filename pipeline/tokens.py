"""Secrets sent to people, and the digests stored in their place.

Threats answered:
- A database, backup or log leak must not let anyone confirm: only ``HMAC-SHA256(key, secret)`` is
  stored, with a key derived from ``SECRET_KEY`` and a per-purpose salt, so even a 6-digit code cannot be
  brute-forced offline without the key.
- Guessing: link tokens carry 256 bits from :mod:`secrets`; short codes are attempt-limited by the caller.
- Timing: digests are compared with :func:`hmac.compare_digest`.
- Key rotation: digests are computed under ``SECRET_KEY`` and every ``SECRET_KEY_FALLBACKS`` entry, so
  secrets sent before a rotation keep working until they expire.
- Replay across deliveries: codes are bound to their delivery id, so a code for one action is worthless
  for another (and equal codes give different digests).
"""

from __future__ import annotations

import hmac
import re
import secrets
import string

from django.conf import settings
from django.utils.crypto import salted_hmac

LINK_TOKEN_BYTES = 32
LINK_TOKEN_RE = re.compile(r"\A[A-Za-z0-9_-]{43}\Z")  # token_urlsafe(32): 43 chars, no padding
_SALT = "deferred_confirmation.tokens."


def _keys() -> list[str]:
    return [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]


def _digest(purpose: str, message: str, key: str) -> str:
    return salted_hmac(_SALT + purpose, message, secret=key, algorithm="sha256").hexdigest()


def make_link_token() -> str:
    return secrets.token_urlsafe(LINK_TOKEN_BYTES)


def make_code(length: int = 6, alphabet: str = string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def is_well_formed_link_token(token: object) -> bool:
    """Cheap shape check before any database work (rejects unicode, huge and empty input)."""
    return isinstance(token, str) and bool(LINK_TOKEN_RE.match(token))


def stored_link_digest(token: str) -> str:
    """The digest stored on the delivery for a link token: under the current key only."""
    return _digest("link", token, settings.SECRET_KEY)


def link_digests_under_all_keys(token: str) -> list[str]:
    """Digests of ``token`` under the current and every fallback key: what a stored digest may be, for lookup
    (a link sent before a key rotation still works)."""
    return [_digest("link", token, key) for key in _keys()]


def code_digest(delivery_id: int, code: str) -> str:
    return _digest("code", f"{delivery_id}:{code}", settings.SECRET_KEY)


def check_code(delivery_id: int, code: str, stored_digest: str) -> bool:
    """Constant-time check of a code against a stored digest, under every configured key."""
    if not stored_digest or not isinstance(code, str):
        return False
    try:
        code.encode()
    except UnicodeEncodeError:  # lone surrogates: never a code we sent, and HMAC cannot take them
        return False
    matched = False
    for key in _keys():  # no early exit: the time taken does not depend on which key matched
        matched |= hmac.compare_digest(_digest("code", f"{delivery_id}:{code}", key), stored_digest)
    return matched


def digests_match(a: str, b: str) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(a, b)
