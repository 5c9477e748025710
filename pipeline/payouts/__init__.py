"""Payout backends: who actually pays the two micro-deposits (see
:mod:`deferred_confirmation.pipeline.payouts.base`)."""

from deferred_confirmation.pipeline.payouts.base import DEFAULT_BACKEND, PayoutBackend, load_backend

__all__ = ["DEFAULT_BACKEND", "PayoutBackend", "load_backend"]
