"""Which channels confirm a form, and whether one or all of them must come back.

Channels: the save() argument, else the form's ``confirmation_channels``, else ``ROUTES`` by form path,
then by model label, else ``DEFAULT_CHANNELS``.  Policy: the form's ``confirmation_policy``, else the
route's ``"policy"``, else ``"any"``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from deferred_confirmation.pipeline.conf import app_settings

POLICIES = ("any", "all")


@dataclass(frozen=True)
class Route:
    channels: list[str]
    policy: str = "any"


def _route_entry(value: object) -> tuple[object, str | None]:
    if isinstance(value, dict):
        return value.get("channels"), value.get("policy")
    return value, None


def route(form_path: str, model_label: str | None, explicit: Iterable[str] | None = None,
          declared: Iterable[str] | None = None, declared_policy: str | None = None) -> Route:
    routes = app_settings.ROUTES
    by_form, form_policy = _route_entry(routes.get(form_path))
    by_model, model_policy = _route_entry(routes.get(model_label or ""))
    policy = declared_policy or (form_policy if by_form else None) or (model_policy if by_model else None) or "any"
    if policy not in POLICIES:
        raise ValueError(f"Unknown confirmation policy {policy!r}; use one of {POLICIES}.")
    for candidate in (explicit, declared, by_form, by_model, app_settings.DEFAULT_CHANNELS):
        if candidate:
            names = [candidate] if isinstance(candidate, str) else list(dict.fromkeys(candidate))
            unknown = [n for n in names if n not in app_settings.CHANNELS]
            if unknown:
                raise ValueError(f"Unknown confirmation channel(s) {unknown}; "
                                 f"configured: {sorted(app_settings.CHANNELS)}")
            return Route(names, policy)
    raise ValueError(f"No confirmation channel for {form_path}: set ROUTES or DEFAULT_CHANNELS.")
