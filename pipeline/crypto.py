"""Encryption for values that must be kept but must not be readable at rest or on the broker.

Threats answered: a password typed into a pending sign-up form, or a raw secret passed from one task to
the next through Redis, must not be readable from a database dump, a broker snapshot or Flower.  Values
are sealed with Fernet (AES-128-CBC + HMAC-SHA256, with a timestamp) under a key derived from
``SECRET_KEY`` and a purpose; ``SECRET_KEY_FALLBACKS`` still open values sealed before a key rotation.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

__all__ = ["InvalidToken", "open_sealed", "seal"]


def _fernet(purpose: str) -> MultiFernet:
    keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return MultiFernet([
        Fernet(base64.urlsafe_b64encode(
            hashlib.sha256(f"deferred_confirmation.crypto.{purpose}:{key}".encode()).digest()))
        for key in keys
    ])


def seal(purpose: str, value: str) -> str:
    return _fernet(purpose).encrypt(value.encode()).decode("ascii")


def open_sealed(purpose: str, sealed: str, max_age: int | None = None) -> str:
    """The plain value; raises :class:`InvalidToken` if tampered with, sealed under another key or too old."""
    return _fernet(purpose).decrypt(sealed.encode("ascii"), ttl=max_age).decode()
