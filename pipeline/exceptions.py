"""Every exception the library raises on purpose, in one place (the shape of django-anymail's exceptions.py).

All derive from :class:`ConfirmationError`, so ``except ConfirmationError`` catches anything of ours.  Some also
derive from a built-in exception, for callers that already catch it (``except ValueError`` around ``save()``
keeps catching :class:`SendLimitExceeded` and :class:`InvalidRecipient`)::

    ConfirmationError
    ├── InvalidRecipient (ValueError)            a form has no recipient for a channel
    ├── SendLimitExceeded (ValueError)           a recipient or client was sent too many secrets
    ├── InvalidTransition                        a state change the transition table forbids
    ├── ApplyRefused                             a confirmed change can never be written
    └── ChannelError                             raised by channel backends; ``reason`` has contacts masked
        ├── TransientChannelError                try again later (timeouts, 429, 5xx)
        ├── PermanentChannelError                never going to work (invalid number, refused address)
        └── ChannelConfigurationError            the channel's settings are wrong

The modules that raised them before (``pipeline.limits``, ``pipeline.states``, ``pipeline.lifecycle.applying``,
``pipeline.channels.base``) still export the same classes, so existing imports keep working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deferred_confirmation.pipeline.redaction import redact_contacts

if TYPE_CHECKING:
    from deferred_confirmation.pipeline.limits import SendRefusal

__all__ = [
    "ApplyRefused",
    "ChannelConfigurationError",
    "ChannelError",
    "ConfirmationError",
    "InvalidRecipient",
    "InvalidTransition",
    "PermanentChannelError",
    "SendLimitExceeded",
    "TransientChannelError",
]


class ConfirmationError(Exception):
    """Base of every exception deferred-confirmation raises on purpose."""


class InvalidRecipient(ConfirmationError, ValueError):
    """A form gives no recipient (or an unusable one) for a channel it is confirmed over."""


class SendLimitExceeded(ConfirmationError, ValueError):
    """A recipient (or the client asking) was sent too many secrets; ``refusal`` says which limit and for how long."""

    def __init__(self, channel: str, refusal: SendRefusal):
        super().__init__(f"{channel}: {refusal.message}")
        self.channel = channel
        self.refusal = refusal


class InvalidTransition(ConfirmationError):
    """A state change that :data:`deferred_confirmation.pipeline.states.TRANSITIONS` does not allow."""


class ApplyRefused(ConfirmationError):
    """The stored change cannot be applied; the message is stored as the failure reason."""


class ChannelError(ConfirmationError):
    """Base of every error a channel raises; ``reason`` (contacts masked) is stored and shown to operators."""

    def __init__(self, reason: str, *, code: str | None = None):
        reason = redact_contacts(str(reason))
        super().__init__(reason)
        self.reason = reason
        self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.reason}" if self.code else self.reason


class TransientChannelError(ChannelError):
    """Try again later: timeouts, 429, 5xx, connection refused."""


class PermanentChannelError(ChannelError):
    """Never going to work: invalid number, refused address, unsubscribed recipient."""


class ChannelConfigurationError(ChannelError):
    """The channel's settings (its OPTIONS, SITE_URL, a missing package) are wrong: fixed by an operator."""
