"""deferred-confirmation's core: lifecycle, tokens, channels, routing.

Public API (DESIGN §3): ``pipeline.confirm``, ``pipeline.resend``, ``pipeline.cancel``,
``pipeline.ConfirmResult``, ``pipeline.ConfirmStatus``, ``pipeline.ResendResult``.  Loaded lazily, because the
models import the leaf modules of this package while Django's app registry is still filling.
"""

from typing import Any

__all__ = ["ConfirmResult", "ConfirmStatus", "ResendResult", "cancel", "confirm", "resend"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from pipeline import lifecycle

        return getattr(lifecycle, name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
