"""The lifecycle of a deferred action: small functions over the transition table in pipeline.states."""

from pipeline.lifecycle.applying import ApplyRefused, apply
from pipeline.lifecycle.confirming import ConfirmResult, ConfirmStatus, confirm, peek_link
from pipeline.lifecycle.delivery import (
    ResendResult,
    cancel,
    deliver,
    delivery_failed,
    delivery_retrying,
    generate,
    resend,
)
from pipeline.lifecycle.maintenance import expire, expire_now, purge, redrive
from pipeline.lifecycle.provider import report_status
from pipeline.lifecycle.staging import stage

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
