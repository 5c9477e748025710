"""deferred-confirmation's core: lifecycle, tokens, channels, routing.

Public API (DESIGN §3): ``deferred_confirmation.pipeline.confirm``, ``deferred_confirmation.pipeline.resend``,
``deferred_confirmation.pipeline.cancel``, ``deferred_confirmation.pipeline.ConfirmResult``,
``deferred_confirmation.pipeline.ConfirmStatus``, ``deferred_confirmation.pipeline.ResendResult``.  Loaded lazily,
because the models import the leaf modules of this package while Django's app registry is still filling.
"""

from typing import Any

__all__ = ["ConfirmResult", "ConfirmStatus", "ResendResult", "cancel", "confirm", "resend"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from deferred_confirmation.pipeline import lifecycle

        return getattr(lifecycle, name)
    raise AttributeError(f"module 'deferred_confirmation.pipeline' has no attribute {name!r}")
