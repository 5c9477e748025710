"""The Django app of deferred-confirmation (AppConfig label ``confirmation``).

Public API: :class:`DeferredForm` (``.forms``), the models :class:`DeferredAction` and :class:`Delivery`
(``.models``) and the signals (``.signals``, docs/api.md#signals).  Loaded lazily: Django imports this package while its
app registry is still filling, before any model may be imported.
"""

from importlib import import_module
from typing import Any

_HOMES = {
    "DeferredForm": "forms",
    "DeferredAction": "models",
    "Delivery": "models",
    "action_expired": "signals",
    "change_confirmed": "signals",
    "confirmation_failed": "signals",
    "confirmation_required": "signals",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
