"""The channel backend interface and its exceptions (the shape of django-anymail's backends/base.py).

A channel makes a secret, stores only its digest, sends the secret to a recipient, and later checks a
secret typed or clicked back.  Providers raise :class:`TransientChannelError` (retried with backoff) or
:class:`PermanentChannelError` (the delivery fails with the provider's reason); nothing else.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from deferred_confirmation.pipeline import tokens
from deferred_confirmation.pipeline.exceptions import (
    ChannelConfigurationError,
    ChannelError,
    PermanentChannelError,
    TransientChannelError,
)
from deferred_confirmation.pipeline.redaction import parse_structured
from deferred_confirmation.pipeline.siteurl import site_url

if TYPE_CHECKING:
    from deferred_confirmation.django_integration.models import DeferredAction, Delivery

__all__ = [
    "NAME_KEYS",
    "BaseChannel",
    "ChannelConfigurationError",
    "ChannelError",
    "PermanentChannelError",
    "TransientChannelError",
]

NAME_KEYS = frozenset({"name", "holder", "account_holder", "addressee", "recipient_name", "company"})


class BaseChannel:
    """One configured channel.  Subclasses set ``secret_kind`` and implement :meth:`send`."""

    #: "link": the secret is a URL token found by its digest; "code": typed in with the action id and
    #: attempt-limited.
    secret_kind = "link"

    #: True when the recipient itself must not be stored in clear (a bank account): the delivery keeps it
    #: sealed (``Delivery.recipient_sealed``) and only a masked form (last 4) in ``Delivery.recipient``.  A
    #: form's recipient taken from one of its sensitive fields is treated the same on any channel.
    sensitive_recipient = False

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

    # --- secrets -----------------------------------------------------------------------------------
    def make_secret(self) -> str:
        return tokens.make_link_token()

    def digest(self, delivery: Delivery, secret: str) -> str:
        return tokens.stored_link_digest(secret) if self.secret_kind == "link" else tokens.code_digest(
            delivery.pk, self.normalize(secret) or "")

    def normalize(self, raw: object) -> str | None:
        """The canonical form of a secret typed by a person, or None if it cannot be one."""
        return raw if isinstance(raw, str) else None

    def matches(self, delivery: Delivery, raw: object) -> bool:
        if self.secret_kind == "link":
            if not tokens.is_well_formed_link_token(raw):
                return False
            return any(tokens.digests_match(d, delivery.secret_digest) for d in tokens.link_digests_under_all_keys(raw))
        code = self.normalize(raw)
        return code is not None and tokens.check_code(delivery.pk, code, delivery.secret_digest)

    # --- sending -----------------------------------------------------------------------------------
    def send(self, *, delivery: Delivery, action: DeferredAction, secret: str) -> str:
        """Send ``secret`` to ``delivery.recipient_value``; return the provider's reference (or "")."""
        raise NotImplementedError

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
