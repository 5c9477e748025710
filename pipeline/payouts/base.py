"""The payout-backend interface: how the micro-deposit channel asks for two small deposits to be made.

A backend is built with the channel's ``OPTIONS`` dict and answers two calls:

``initiate(account, amounts, idempotency_key, *, delivery=None) -> provider_ref``
    Have ``amounts`` (two distinct ints, cents) paid into ``account`` (the dict the form's
    ``get_recipient("microdeposit")`` returned, e.g. ``{"holder": ..., "iban": ...}`` or
    ``{"holder": ..., "routing_number": ..., "account_number": ..., "country": "US"}``) and return the
    provider's reference for them, stored on ``Delivery.provider_ref``.  ``idempotency_key`` is one per
    delivery and generation (``Delivery.idempotency_key``): a retried task passes the same key and the same
    amounts again, and the backend must then *not* pay twice (send the key to the provider as its
    idempotency key, or look the key up in your own table first).  ``delivery`` is the Delivery row, for
    backends that keep their own records of it; the amounts are the secret and must never be logged or
    stored in clear.
``status(provider_ref) -> str``
    The provider's current word for that payout ("initiated", "pending", "paid", "failed"…).

Errors are the channels' errors, nothing else: :class:`TransientChannelError` for anything that may work
later (timeouts, connection errors, 429, 5xx; the task retries with backoff and the same idempotency key)
and :class:`PermanentChannelError` for a refusal (closed account, invalid account number, bad credentials:
the delivery and the action fail with the provider's reason, nothing is retried).

Backends shipped: :class:`deferred_confirmation.pipeline.payouts.ledger.LedgerPayoutBackend` (the default: a ``Payout``
row the operator exports with ``manage.py export_payouts``) and
:class:`deferred_confirmation.pipeline.payouts.http.HTTPPayoutBackend` (a JSON API in the style of Stripe or Dwolla).
See ``deferred_confirmation.pipeline.payouts.http`` for writing another one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from deferred_confirmation.pipeline.channels.base import ChannelConfigurationError, PermanentChannelError
from deferred_confirmation.pipeline.paths import import_path

if TYPE_CHECKING:
    from deferred_confirmation.django_integration.models import Delivery

DEFAULT_BACKEND = "deferred_confirmation.pipeline.payouts.ledger.LedgerPayoutBackend"
DEFAULT_CURRENCY = "USD"
_CURRENCY = re.compile(r"\A[A-Z]{3}\Z")


class PayoutBackend:
    """Base class of payout backends.  OPTIONS read here: ``CURRENCY`` (ISO 4217, default "USD")."""

    def __init__(self, options: Mapping[str, Any] | None = None):
        self.options: dict[str, Any] = dict(options or {})
        currency = self.options.get("CURRENCY", DEFAULT_CURRENCY)
        if not isinstance(currency, str) or not _CURRENCY.match(currency):
            raise ChannelConfigurationError(f"micro-deposit CURRENCY must be a 3-letter ISO code like 'USD', "
                                            f"not {currency!r}")
        self.currency = currency

    def initiate(self, account: dict[str, Any], amounts: tuple[int, int], idempotency_key: str, *,
                 delivery: Delivery | None = None) -> str:
        raise NotImplementedError

    def status(self, provider_ref: str) -> str:
        raise NotImplementedError


def checked_amounts(amounts: Any) -> tuple[int, int]:
    """``amounts`` as two distinct ints of 1-99 cents, or a PermanentChannelError (a bug upstream, not input)."""
    if (isinstance(amounts, list | tuple) and len(amounts) == 2
            and all(isinstance(a, int) and not isinstance(a, bool) and 1 <= a <= 99 for a in amounts)
            and amounts[0] != amounts[1]):
        return int(amounts[0]), int(amounts[1])
    raise PermanentChannelError("micro-deposit amounts must be two different amounts of 1-99 cents")


def checked_account(account: Any) -> dict[str, Any]:
    if not isinstance(account, dict) or not account:
        raise PermanentChannelError("the micro-deposit recipient is not a bank account (a JSON object)")
    return account


def load_backend(options: Mapping[str, Any] | None = None) -> PayoutBackend:
    """The backend named by ``options["PAYOUT_BACKEND"]`` (default: the ledger), built with ``options``."""
    options = options or {}
    path = options.get("PAYOUT_BACKEND") or DEFAULT_BACKEND
    try:
        backend_class = import_path(path)
    except ImportError as exc:
        raise ChannelConfigurationError(f"PAYOUT_BACKEND {path!r} cannot be imported: {exc}") from exc
    if not (isinstance(backend_class, type) and issubclass(backend_class, PayoutBackend)):
        raise ChannelConfigurationError(f"PAYOUT_BACKEND {path!r} is not a PayoutBackend subclass")
    return backend_class(options)
