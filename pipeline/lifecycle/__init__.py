"""The lifecycle of a deferred action: small functions over the transition table in pipeline.states."""

from deferred_confirmation.pipeline.lifecycle.applying import ApplyRefused, apply
from deferred_confirmation.pipeline.lifecycle.confirming import ConfirmResult, ConfirmStatus, confirm, peek_link
from deferred_confirmation.pipeline.lifecycle.delivery import (
    ResendResult,
    cancel,
    deliver,
    delivery_failed,
    delivery_retrying,
    generate,
    resend,
)
from deferred_confirmation.pipeline.lifecycle.maintenance import expire, expire_now, purge, redrive
from deferred_confirmation.pipeline.lifecycle.provider import report_status
from deferred_confirmation.pipeline.lifecycle.staging import stage

__all__ = [
    "ApplyRefused",
    "ConfirmResult",
    "ConfirmStatus",
    "ResendResult",
    "apply",
    "cancel",
    "confirm",
    "deliver",
    "delivery_failed",
    "delivery_retrying",
    "expire",
    "expire_now",
    "generate",
    "peek_link",
    "purge",
    "redrive",
    "report_status",
    "resend",
    "stage",
]
