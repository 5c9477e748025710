"""Payout backends: who actually pays the two micro-deposits (see :mod:`pipeline.payouts.base`)."""

from pipeline.payouts.base import DEFAULT_BACKEND, PayoutBackend, load_backend

__all__ = ["DEFAULT_BACKEND", "PayoutBackend", "load_backend"]
