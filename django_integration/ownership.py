"""Who may open an action's pages: the action's id alone grants nothing.

Threat answered: the action's UUID travels in SMS texts, letters and mail headers, and turns up in logs and
browser histories.  Whoever holds it must not be able to lock the action with wrong codes, burn the
recipient's send allowance with resends, read its description, or cancel it.  A request belongs to an
action when the signed-in user is the action's ``user``; or this browser session saved it (an anonymous
sign-up, say); or this session confirmed it (the link's POST, the right code).  Everyone else gets the
same 404 as for an id that does not exist.

The session's lists belong to whoever was signed in when they were kept.  Django's ``login()`` keeps the
session's data when an anonymous visitor signs in (only a change of user flushes it): without this, whoever
signs in on a shared browser would inherit the actions an anonymous visitor saved there before.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from deferred_confirmation.django_integration.clients import signed_in_user

#: Session keys: ids of the actions this session saved, and of those it confirmed (newest last).
SAVED_KEY = "deferred_confirmation.saved"
CONFIRMED_KEY = "deferred_confirmation.confirmed"
#: Who was signed in when the lists were kept: a user's pk, "" for an anonymous visitor.
HOLDER_KEY = "deferred_confirmation.holder"
#: How many ids a session keeps per key; the oldest are forgotten first.
KEPT = 50


def _session(request: HttpRequest | None) -> Any:
    return getattr(request, "session", None)


def _identity(request: HttpRequest | None) -> str:
    user = signed_in_user(request)
    return str(user.pk) if user is not None else ""


def _ids(request: HttpRequest | None, key: str) -> list[str]:
    """The session's list under ``key``, if it was kept for who is signed in now (else nothing)."""
    session = _session(request)
    if session is None or session.get(HOLDER_KEY, "") != _identity(request):
        return []
    return list(session.get(key, []))


def _remember(request: HttpRequest | None, key: str, action: Any) -> None:
    session = _session(request)
    if session is None:
        return
    identity = _identity(request)
    if session.get(HOLDER_KEY, "") != identity:  # kept for someone else: start afresh
        for stale in (SAVED_KEY, CONFIRMED_KEY):
            session.pop(stale, None)
    session[HOLDER_KEY] = identity
    ids = [i for i in _ids(request, key) if i != str(action.pk)]
    session[key] = [*ids, str(action.pk)][-KEPT:]


def remember_saved(request: HttpRequest | None, action: Any) -> None:
    """This session saved ``action`` (``DeferredForm.save(request=...)`` calls it)."""
    _remember(request, SAVED_KEY, action)


def remember_confirmed(request: HttpRequest | None, action: Any) -> None:
    """This session confirmed ``action``: it may follow it on the status page."""
    _remember(request, CONFIRMED_KEY, action)


def saved_ids(request: HttpRequest | None) -> frozenset[str]:
    """Ids of the actions this browser session saved (while the same person was signed in, or nobody)."""
    return frozenset(_ids(request, SAVED_KEY))


def may_access(request: HttpRequest, action: Any) -> bool:
    """True if ``request`` belongs to ``action`` (see the module's docstring)."""
    user = signed_in_user(request)
    if action.user_id is not None and user is not None and user.pk == action.user_id:
        return True
    key = str(action.pk)
    return key in _ids(request, SAVED_KEY) or key in _ids(request, CONFIRMED_KEY)
