"""Confirmation pages (DESIGN §5).  Each view is a thin caller of one lifecycle function.

Statuses are honest: unknown secret 404, expired or withdrawn 410, already used 409, locked 403, a
malformed form 400.  GET never confirms (mail scanners follow links); confirming takes a POST with a
CSRF token.  Nothing is cached and no Referer leaks the token to third-party resources.
"""

from __future__ import annotations

from functools import wraps

from django import forms
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_GET, require_http_methods

from django_integration.models import DeferredAction
from pipeline.conf import app_settings
from pipeline.lifecycle import ConfirmResult, ConfirmStatus, confirm, peek_link
from pipeline.states import State

REFUSALS = {
    # status: (HTTP status, title, message) - never more than "wrong or expired" for guessable secrets
    ConfirmStatus.INVALID: (404, _("Link not valid"),
                            _("This confirmation link is not valid. Check that you opened the whole link from "
                              "the most recent message.")),
    ConfirmStatus.EXPIRED: (410, _("Link expired"),
                            _("This confirmation link has expired. Request the change again to get a new one.")),
    ConfirmStatus.ALREADY_USED: (409, _("Already confirmed"),
                                 _("This change has already been confirmed; the link cannot be used again.")),
    ConfirmStatus.LOCKED: (403, _("Confirmation locked"),
                           _("Too many wrong attempts. Request the change again to get a new code.")),
}
WITHDRAWN = (410, _("No longer valid"), _("This change was withdrawn or could not be made; the link no longer works."))


def private(view):
    """No caching, no Referer, no indexing: these pages carry secrets in their URLs."""
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        response["Referrer-Policy"] = "no-referrer"
        response["X-Robots-Tag"] = "noindex, nofollow"
        return response
    return never_cache(wrapper)


def _refused(request: HttpRequest, result: ConfirmResult) -> HttpResponse:
    status, title, message = REFUSALS[result.status]
    if result.status == ConfirmStatus.INVALID and result.action is not None and result.action.is_terminal:
        status, title, message = WITHDRAWN
    return render(request, "confirmation/error.html", {"title": title, "message": message, "result": result},
                  status=status)


@private
@csrf_protect
@require_http_methods(["GET", "HEAD", "POST"])
def link(request: HttpRequest, token: str) -> HttpResponse:
    """GET: a page with a Confirm button; POST: confirm, then go to the status page."""
    if request.method == "POST":
        result = confirm(token)
        if result.ok:
            return redirect("confirmation:status", action_id=result.action.pk, permanent=False)
        return _refused(request, result)
    result = peek_link(token)
    if not result.ok:
        return _refused(request, result)
    return render(request, "confirmation/link.html", {"action": result.action})


class CodeForm(forms.Form):
    code = forms.CharField(label=_("Confirmation code"), max_length=64, strip=True,
                           widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "text",
                                                         "autofocus": True}))


@private
@csrf_protect
@require_http_methods(["GET", "HEAD", "POST"])
def code(request: HttpRequest, action_id) -> HttpResponse:
    """Form for a code sent by SMS or letter; a wrong code shows the attempts left."""
    action = DeferredAction.objects.filter(pk=action_id).first()
    if action is None:
        return _refused(request, ConfirmResult(ConfirmStatus.INVALID))
    form = CodeForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            result = confirm(form.cleaned_data["code"], action=action.pk)
            if result.ok:
                return redirect("confirmation:status", action_id=action.pk)
            if result.status != ConfirmStatus.INVALID or not (result.action and result.action.is_open):
                return _refused(request, result)
            form.add_error("code", _("That code is wrong or has expired."))
            form.attempts_left = result.attempts_left
        status = 400
    elif not action.is_open:
        return redirect("confirmation:status", action_id=action.pk)
    return render(request, "confirmation/code.html", {"action": action, "form": form}, status=status)


@private
@require_GET
def status(request: HttpRequest, action_id) -> HttpResponse:
    """Where the change is; HTML that reloads itself until it settles, or JSON on Accept: application/json."""
    action = DeferredAction.objects.filter(pk=action_id).first()
    wants_json = request.get_preferred_type(["text/html", "application/json"]) == "application/json"
    if action is None:
        if wants_json:
            return JsonResponse({"error": "not_found"}, status=404)
        return _refused(request, ConfirmResult(ConfirmStatus.INVALID))
    if wants_json:
        return JsonResponse({
            "id": str(action.pk),
            "state": action.state,
            "failure_reason": action.failure_reason or None,
            "confirmed_at": action.confirmed_at,
            "applied_at": action.applied_at,
            "final": action.is_terminal,
        })
    return render(request, "confirmation/status.html", {
        "action": action, "refresh": None if action.is_terminal else app_settings.STATUS_REFRESH_SECONDS,
        "applied": action.state == State.APPLIED})
