"""The channel backend contract: every hook a channel has, with its default or a NotImplementedError naming the
class and the hook (the shape of django-anymail's backends/base.py).

A channel makes a secret, stores only its digest, sends the secret to a recipient, and later checks a secret
typed or clicked back.  ``docs/writing-a-channel.md`` walks through writing one.

Hooks (override in a subclass):

==========================  ===========  ==========================================================================
hook                        required     what it does
==========================  ===========  ==========================================================================
``secret_kind``             no           "link" (default), "code" or "amounts": see :data:`SECRET_KINDS`
``sensitive_recipient``     no           True: the recipient is stored only sealed (a bank account)
``check_options(options)``  no           classmethod: problems with OPTIONS, for the system check (default none)
``warn_options(options)``   no           classmethod: OPTIONS that work but are deprecated, as check warnings
``make_secret()``           code kinds   a new random secret (default for "link": a 256-bit URL token)
``normalize(raw)``          code kinds   the canonical form of typed input, or None if it cannot be a secret
``send(...)``               yes          hand the secret to the provider; return its reference
``limit_identity(r)``       no           what send limits count by (default: the recipient without names)
``discard(delivery)``       no           delete what the channel stored outside the database (default: nothing)
``context(...)``            no           template context of the channel's messages
==========================  ===========  ==========================================================================

``digest`` and ``matches`` are not hooks: they follow from ``secret_kind``, so no channel stores a secret in
clear or compares it in variable time.  Providers' failures are raised as :class:`TransientChannelError`
(retried with backoff) or :class:`PermanentChannelError` (the delivery fails with the provider's reason); a
wrong setting as :class:`ChannelConfigurationError`; nothing else.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar

from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_variables

from deferred_confirmation.pipeline import tokens
from deferred_confirmation.pipeline.exceptions import (
    ChannelConfigurationError,
    ChannelError,
    PermanentChannelError,
    TransientChannelError,
)
from deferred_confirmation.pipeline.redaction import parse_structured, recipient_values, redact_contacts
from deferred_confirmation.pipeline.siteurl import site_url

if TYPE_CHECKING:
    from deferred_confirmation.django_integration.models import DeferredAction, Delivery

__all__ = [
    "NAME_KEYS",
    "SECRET_KINDS",
    "BaseChannel",
    "ChannelConfigurationError",
    "ChannelError",
    "PermanentChannelError",
    "TransientChannelError",
    "recipient_values",  # the masking helpers' former home: pipeline.redaction
    "redact_contacts",
]

#: The kinds of secret a channel may send, and how each comes back:
#:
#: - "link": a URL token (256 bits) in a link; clicked, it is found by its digest alone.  Not attempt-limited
#:   (it cannot be guessed); the default, with the default :meth:`BaseChannel.make_secret`.
#: - "code": a short code typed on the code page with the action's id; attempt-limited (MAX_ATTEMPTS).  The
#:   channel implements ``make_secret`` and ``normalize`` (what spacing, case or dashes do not matter).
#: - "amounts": like "code", but the secret is a pair of micro-deposit amounts typed on the deposits page;
#:   ``normalize`` turns any way of typing them into one canonical text.
SECRET_KINDS = ("link", "code", "amounts")

NAME_KEYS = frozenset({"name", "holder", "account_holder", "addressee", "recipient_name", "company"})


class BaseChannel:
    """One configured channel; see the module docstring for its hooks.  Subclasses implement :meth:`send`, and
    for a ``secret_kind`` other than "link" :meth:`make_secret` and :meth:`normalize`."""

    #: One of :data:`SECRET_KINDS` (checked when a subclass is defined).
    secret_kind: ClassVar[str] = "link"

    #: True when the recipient itself must not be stored in clear (a bank account): the delivery keeps it
    #: sealed (``Delivery.recipient_sealed``) and only a masked form (last 4) in ``Delivery.recipient``.  A
    #: form's recipient taken from one of its sensitive fields is treated the same on any channel.
    sensitive_recipient: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.secret_kind not in SECRET_KINDS:
            raise TypeError(f"{cls.__module__}.{cls.__qualname__}.secret_kind is {cls.secret_kind!r}; it must be "
                            f"one of {', '.join(map(repr, SECRET_KINDS))}.")

    def __init__(self, name: str, conf: dict[str, Any]):
        self.name = name
        self.conf = conf
        self.options: dict[str, Any] = conf.get("OPTIONS") or {}

    @property
    def max_attempts(self) -> int | None:
        return self.conf.get("MAX_ATTEMPTS")

    @property
    def queue(self) -> str:
        return self.conf["QUEUE"]

    def _not_implemented(self, hook: str) -> NotImplementedError:
        cls = type(self)
        return NotImplementedError(f"{cls.__module__}.{cls.__qualname__} must implement the channel hook {hook}() "
                                   f"(secret_kind {self.secret_kind!r}); see docs/writing-a-channel.md.")

    # --- options -------------------------------------------------------------------------------------
    @classmethod
    def check_options(cls, options: dict[str, Any]) -> list[str]:
        """Problems with the channel's OPTIONS, one sentence each, for the system check (empty when fine); run at
        start-up, so a missing credential is found before the first send."""
        return []

    @classmethod
    def warn_options(cls, options: dict[str, Any]) -> list[str]:
        """OPTIONS that still work but are deprecated, one sentence each, for a system check warning (empty when
        none); what cannot work belongs in :meth:`check_options`."""
        return []

    # --- secrets -----------------------------------------------------------------------------------
    def make_secret(self) -> str:
        """A new random secret (from :mod:`secrets`).  The default makes link tokens; a channel sending codes or
        amounts makes its own."""
        if self.secret_kind != "link":
            raise self._not_implemented("make_secret")
        return tokens.make_link_token()

    def digest(self, delivery: Delivery, secret: str) -> str:
        """What is stored in place of ``secret``: an HMAC, bound to the delivery for codes and amounts."""
        return tokens.stored_link_digest(secret) if self.secret_kind == "link" else tokens.code_digest(
            delivery.pk, self.normalize(secret) or "")

    def normalize(self, raw: object) -> str | None:
        """The canonical form of a secret typed by a person, or None if it cannot be one (refused as malformed,
        not counted as an attempt).  Links need no normalizing; a channel sending codes or amounts defines it."""
        if self.secret_kind != "link":
            raise self._not_implemented("normalize")
        return raw if isinstance(raw, str) else None

    def matches(self, delivery: Delivery, raw: object) -> bool:
        """Whether ``raw`` (clicked or typed) is the secret of ``delivery``, compared in constant time."""
        if self.secret_kind == "link":
            if not tokens.is_well_formed_link_token(raw):
                return False
            return any(tokens.digests_match(d, delivery.secret_digest) for d in tokens.link_digests_under_all_keys(raw))
        code = self.normalize(raw)
        return code is not None and tokens.check_code(delivery.pk, code, delivery.secret_digest)

    # --- sending -----------------------------------------------------------------------------------
    def send(self, *, delivery: Delivery, action: DeferredAction, secret: str) -> str:
        """Send ``secret`` to ``delivery.recipient_value``; return the provider's reference (or "").

        Called by a worker, possibly again for the same generation after a crash (``delivery.send_attempts`` says
        how many calls were made): pass ``delivery.idempotency_key`` to providers that take one.  Raise
        :class:`TransientChannelError` or :class:`PermanentChannelError`, never the provider's own exceptions."""
        raise self._not_implemented("send")

    @method_decorator(sensitive_variables())
    def limit_identity(self, recipient: str) -> str:
        """What send limits count by: the recipient, or for a structured one (an address, an account) its
        values without the name of the person, case and spacing folded."""
        data = parse_structured(recipient)
        if data is None:
            return " ".join(recipient.split()).casefold()
        return json.dumps({k: " ".join(str(v).split()).casefold() for k, v in sorted(data.items())
                           if k not in NAME_KEYS and v not in (None, "")}, sort_keys=True)

    def discard(self, delivery: Delivery) -> int:
        """Delete what the channel stored outside the database for ``delivery`` (a letter's PDF holds its
        code); called by purge.  Returns how many things were deleted."""
        return 0

    def context(self, *, delivery: Delivery, action: DeferredAction, secret: str) -> dict[str, Any]:
        """Template context shared by every channel's messages."""
        return {
            "action": action,
            "delivery": delivery,
            "description": action.description,
            "user": action.user,
            "valid_until": action.valid_until,
            "site_url": site_url(),
        }
