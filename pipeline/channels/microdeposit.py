"""Micro-deposits: two small amounts paid into a bank account; its owner reads them on the statement and
types them back (``confirmation:deposits`` page, or ``deferred_confirmation.pipeline.confirm((32, 45), action=...)``).

The secret is the pair of amounts, two *different* amounts of 1-99 cents drawn with :mod:`secrets`, kept
as canonical text ("32,45", ascending) so that the order they are typed in does not matter; only its HMAC is
stored on the delivery.  With 99 x 98 / 2 = 4851 pairs it is guessable, hence the low MAX_ATTEMPTS (3).

The recipient is the bank account, the dict the form's ``get_recipient("microdeposit")`` returns, e.g.
``{"holder": "Ada Lovelace", "iban": "DE89370400440532013000", "country": "DE"}`` or ``{"holder": ...,
"routing_number": "111000025", "account_number": "12345678", "country": "US"}``; validate it with the fields of
:mod:`deferred_confirmation.django_integration.banking`.  It is sensitive
(:attr:`MicroDepositChannel.sensitive_recipient`): the delivery stores it as JSON sealed, and in clear only with its
numbers masked to their last 4 digits.

OPTIONS:

- ``PAYOUT_BACKEND``: dotted path of a :class:`deferred_confirmation.pipeline.payouts.base.PayoutBackend`, default
  ``"deferred_confirmation.pipeline.payouts.ledger.LedgerPayoutBackend"`` (a ``Payout`` row the operator pays from
  ``manage.py export_payouts``); ``"deferred_confirmation.pipeline.payouts.http.HTTPPayoutBackend"`` talks to a payouts
  API.
- ``CURRENCY``: default ``"USD"``.
- whatever the payout backend reads (HTTP: ``URL``, ``API_KEY``, ``TIMEOUT``).

``LedgerChannel`` is the class's former name, still importable (and accepted in settings) with a
DeprecationWarning: the payout backend, not the channel, decides whether a ledger is used.
"""

from __future__ import annotations

import secrets
import warnings
from typing import TYPE_CHECKING, Any

from deferred_confirmation.pipeline.amounts import canonical, parse_pair
from deferred_confirmation.pipeline.channels.base import BaseChannel, PermanentChannelError
from deferred_confirmation.pipeline.payouts.base import PayoutBackend, load_backend
from deferred_confirmation.pipeline.redaction import parse_structured

if TYPE_CHECKING:
    from deferred_confirmation.django_integration.models import DeferredAction, Delivery

LOWEST, HIGHEST = 1, 99  # cents


def random_pair() -> tuple[int, int]:
    """Two different amounts of 1-99 cents, uniformly among all such pairs."""
    span = HIGHEST - LOWEST + 1
    first = LOWEST + secrets.randbelow(span)
    second = LOWEST + secrets.randbelow(span - 1)
    if second >= first:  # skip over ``first``: uniform over the other 98 values
        second += 1
    return first, second


def bank_account(recipient: str) -> dict:
    """The account dict stored (as JSON) on the delivery."""
    account = parse_structured(recipient)
    if not account:
        raise PermanentChannelError("the micro-deposit recipient is not a bank account: get_recipient('"
                                    "microdeposit') must return a dict of account details", code="no-account")
    return account


class MicroDepositChannel(BaseChannel):
    """Two micro-deposits through a payout backend (by default the ``Payout`` ledger)."""

    secret_kind = "amounts"
    sensitive_recipient = True  # the bank account: sealed on the delivery, shown by its last 4 digits

    def make_secret(self) -> str:
        return canonical(random_pair())

    def normalize(self, raw: object) -> str | None:
        """"32,45" for ``(45, 32)``, ``["0.32", "45"]``, ``"0.45, 0.32"``, ``"$0.32 / $0.45"``…; None if ``raw``
        cannot be two different amounts of 1-99 cents."""
        pair = parse_pair(raw)
        return canonical(pair) if pair is not None else None

    def payout_backend(self) -> PayoutBackend:
        return load_backend(self.options)

    def send(self, *, delivery: Delivery, action: DeferredAction, secret: str) -> str:
        pair = parse_pair(secret)
        if pair is None:
            raise PermanentChannelError("the secret is not a pair of micro-deposit amounts", code="bad-secret")
        account = bank_account(delivery.recipient_value)
        # The same idempotency key for every try of this generation: a retry never pays twice.
        return self.payout_backend().initiate(account, pair, delivery.idempotency_key, delivery=delivery)

    def payout_status(self, delivery: Delivery) -> str:
        """The payout backend's status of ``delivery``'s deposits ("unknown" before they were sent)."""
        if not delivery.provider_ref:
            return "unknown"
        return self.payout_backend().status(delivery.provider_ref)


def __getattr__(name: str) -> Any:
    if name == "LedgerChannel":  # settings and imports written before the rename
        warnings.warn("deferred_confirmation.pipeline.channels.microdeposit.LedgerChannel is now MicroDepositChannel; "
                      "update BACKEND and imports.", DeprecationWarning, stacklevel=2)
        return MicroDepositChannel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
