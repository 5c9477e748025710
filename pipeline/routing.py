"""Which channels confirm a form: the call's argument, else the form's, else ROUTES, else DEFAULT_CHANNELS."""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.conf import app_settings


def channels_for(form_path: str, model_label: str | None, explicit: Iterable[str] | None = None,
                 declared: Iterable[str] | None = None) -> list[str]:
    routes = app_settings.ROUTES
    for candidate in (explicit, declared, routes.get(form_path), routes.get(model_label or ""),
                      app_settings.DEFAULT_CHANNELS):
        if candidate:
            names = [candidate] if isinstance(candidate, str) else list(dict.fromkeys(candidate))
            unknown = [n for n in names if n not in app_settings.CHANNELS]
            if unknown:
                raise ValueError(f"Unknown confirmation channel(s) {unknown}; "
                                 f"configured: {sorted(app_settings.CHANNELS)}")
            return names
    raise ValueError(f"No confirmation channel for {form_path}: set ROUTES or DEFAULT_CHANNELS.")
