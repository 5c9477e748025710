"""Dotted paths named in settings (channel and payout backends, the Celery app) and stored in rows (form
classes), imported under the package's one namespace.

Earlier releases installed three top-level packages, ``pipeline``, ``workers`` and ``django_integration``; they
now live under ``deferred_confirmation`` so that nothing collides with django-pipeline or a project's own
``workers.py``.  A path written for the old layout (``"pipeline.channels.sms.TwilioSMSChannel"``) still imports,
with a ``DeprecationWarning`` naming the new one, and the system check (``confirmation.W003``) asks for the
setting to be updated.  The old name is never imported itself: in a checkout it would load a second copy of
the library next to the installed one.
"""

from __future__ import annotations

import warnings
from typing import Any

from django.utils.module_loading import import_string

NAMESPACE = "deferred_confirmation"
LEGACY_ROOTS = ("pipeline.", "workers.", "django_integration.")


def current_path(path: str) -> str:
    """``path`` under the namespace if it names one of the library's old top-level packages, else unchanged."""
    return f"{NAMESPACE}.{path}" if path.startswith(LEGACY_ROOTS) else path


def import_path(path: str) -> Any:
    """``import_string(path)``, reading a path of the old layout under the namespace (with a warning)."""
    current = current_path(path)
    if current != path:
        warnings.warn(f"{path!r} is now {current!r}; update the setting.", DeprecationWarning, stacklevel=2)
    return import_string(current)
