"""Absolute URLs of this site, built from ``DEFERRED_CONFIRMATION["SITE_URL"]`` and never from a request.

A link in a message (or the URL a provider signs a webhook with) taken from a request's Host header could be
pointed at an attacker's domain by forging that header (the password-reset poisoning bug); SITE_URL is set by
the operator.
"""

from __future__ import annotations

from deferred_confirmation.pipeline.conf import app_settings
from deferred_confirmation.pipeline.exceptions import ChannelConfigurationError


def site_url() -> str:
    """SITE_URL without its trailing slash; "" when it is not set."""
    return (app_settings.SITE_URL or "").rstrip("/")


def absolute_url(path: str, *, needed_for: str = "links") -> str:
    """``SITE_URL`` + ``path`` (a path from ``reverse()`` or a request's ``get_full_path()``).

    Raises :class:`ChannelConfigurationError` when SITE_URL is not set, saying what needed it (``needed_for``,
    e.g. "SMS links"), so a delivery waits for the operator instead of sending a link to nowhere."""
    site = site_url()
    if not site:
        raise ChannelConfigurationError(f'DEFERRED_CONFIRMATION["SITE_URL"] is not set; {needed_for} need it.')
    return site + path
