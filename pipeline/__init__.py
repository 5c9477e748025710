"""deferred-confirmation's core: lifecycle, tokens, channels, routing.

Public API (docs/api.md#lifecycle-functions): ``deferred_confirmation.pipeline.confirm``,
``deferred_confirmation.pipeline.resend``, ``deferred_confirmation.pipeline.cancel``,
``deferred_confirmation.pipeline.ConfirmResult``, ``deferred_confirmation.pipeline.ConfirmStatus``,
``deferred_confirmation.pipeline.ResendResult``, and the names of :mod:`deferred_confirmation.pipeline.types` for type
hints.  Loaded lazily, because the models import the leaf modules of this package while Django's app registry is still
filling.
"""

from typing import Any

from deferred_confirmation.pipeline.types import ActionRef, Secret, SecretInput, User

_LIFECYCLE = ("ConfirmResult", "ConfirmStatus", "ResendResult", "cancel", "confirm", "resend")

__all__ = ["ActionRef", "Secret", "SecretInput", "User", *_LIFECYCLE]


def __getattr__(name: str) -> Any:
    if name in _LIFECYCLE:
        from deferred_confirmation.pipeline import lifecycle

        return getattr(lifecycle, name)
    raise AttributeError(f"module 'deferred_confirmation.pipeline' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
