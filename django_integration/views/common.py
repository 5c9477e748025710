"""What every confirmation page shares: privacy headers, honest refusal pages, the failure throttle.

Statuses are honest: unknown secret 404, expired or withdrawn 410, already used 409, locked 403, a wrong
or malformed entry 400, throttled 429.  Messages never tell more than "wrong or expired".
"""

from __future__ import annotations

from functools import wraps
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render, resolve_url
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache

from deferred_confirmation.django_integration import ownership, throttle
from deferred_confirmation.django_integration.models import DeferredAction
from deferred_confirmation.pipeline.lifecycle import ConfirmResult, ConfirmStatus

REFUSALS = {
    ConfirmStatus.INVALID: (404, _("Link not valid"),
                            _("This confirmation link is not valid. Check that you opened the whole link from "
                              "the most recent message.")),
    ConfirmStatus.EXPIRED: (410, _("Expired"),
                            _("This confirmation has expired. Request the change again to get a new one.")),
    ConfirmStatus.ALREADY_USED: (409, _("Already confirmed"),
                                 _("This change has already been confirmed; it cannot be confirmed again.")),
    ConfirmStatus.LOCKED: (403, _("Confirmation locked"),
                           _("Too many wrong attempts. Request the change again to get a new secret.")),
}
WITHDRAWN = (410, _("No longer valid"), _("This change was withdrawn or could not be made; it can no longer "
                                          "be confirmed."))
THROTTLED = (429, _("Too many attempts"), _("Too many wrong or expired confirmations were tried from here. "
                                            "Wait a few minutes, then try again."))


def owned_action(request: HttpRequest, action_id: Any) -> DeferredAction | None:
    """The action, if ``request`` belongs to it; None for an unknown id and for anyone else's action alike
    (both answer 404: the id alone grants nothing, and the answer does not tell whether it exists)."""
    action = DeferredAction.objects.filter(pk=action_id).first()
    if action is None or not ownership.may_access(request, action):
        return None
    return action


def not_found(request: HttpRequest) -> HttpResponse:
    """The page for an unknown action and for anyone else's alike (404).  A visitor who is not signed in is
    offered to sign in: the change may be theirs, made on another device (an SMS opened on a phone)."""
    status, title, message = REFUSALS[ConfirmStatus.INVALID]
    return page(request, status, title, message, sign_in_url=_sign_in_url(request))


def _sign_in_url(request: HttpRequest) -> str | None:
    user = getattr(request, "user", None)
    if user is None or user.is_authenticated:
        return None
    login = resolve_url(settings.LOGIN_URL)
    if request.method not in ("GET", "HEAD"):
        return login
    return f"{login}{'&' if '?' in login else '?'}next={quote(request.get_full_path(), safe='/')}"


def private(view):
    """No caching, no Referer, no indexing: these pages carry secrets in their URLs."""
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        # same-origin, not no-referrer: the token in these URLs still never reaches another site, but under
        # no-referrer browsers post forms with "Origin: null", which Django's CSRF check refuses (403).
        response["Referrer-Policy"] = "same-origin"
        response["X-Robots-Tag"] = "noindex, nofollow"
        return response
    return never_cache(wrapper)


def page(request: HttpRequest, status: int, title: str, message: str, **context) -> HttpResponse:
    # Every name the template reads is defined: a missing one is logged at DEBUG with the request (its path
    # is the link token).
    context = {"title": title, "message": message, "action": None, "entry_url_name": None, "sign_in_url": None,
               **context}
    return render(request, "confirmation/error.html", context, status=status)


def refused(request: HttpRequest, result: ConfirmResult) -> HttpResponse:
    status, title, message = REFUSALS[result.status]
    if result.status == ConfirmStatus.INVALID and result.action is not None and result.action.is_terminal:
        status, title, message = WITHDRAWN
    return page(request, status, title, message, result=result)


def throttled(request: HttpRequest) -> HttpResponse:
    status, title, message = THROTTLED
    response = page(request, status, title, message)
    response["Retry-After"] = "60"
    return response


#: Outcomes of a POSTed secret that count against the client: a wrong secret (a locked action's too).
FAILURES = (ConfirmStatus.INVALID, ConfirmStatus.LOCKED)


def settle_attempt(request: HttpRequest, result: ConfirmResult | None) -> None:
    """After :func:`throttle.reserve`: keep the attempt counted only if it was a wrong secret (``result`` None,
    or ``result.malformed``: input that could not be a secret, which costs nothing)."""
    if result is None or result.malformed or result.status not in FAILURES:
        throttle.release(request)
