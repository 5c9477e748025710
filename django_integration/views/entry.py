"""Pages where a person types the secret back: a code (SMS, letter) or two micro-deposit amounts.

A wrong entry shows the attempts left and never more than "wrong or expired"; malformed input is a form
error (400) that costs no attempt; after the limit the action is locked (403).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_http_methods

from deferred_confirmation.django_integration import ownership, throttle
from deferred_confirmation.django_integration.forms import AmountsForm, CodeForm
from deferred_confirmation.django_integration.views.common import (
    not_found,
    owned_action,
    private,
    refused,
    settle_attempt,
    throttled,
)
from deferred_confirmation.pipeline.lifecycle import ConfirmStatus, confirm


def _entry(request: HttpRequest, action_id: Any, form_class: type[forms.Form], template: str) -> HttpResponse:
    action = owned_action(request, action_id)
    if action is None:
        return not_found(request)
    if request.method != "POST":
        if not action.is_open:
            return redirect("confirmation:status", action_id=action.pk)
        return render(request, template, {"action": action, "form": form_class()})
    if not throttle.reserve(request):
        return throttled(request)
    form = form_class(request.POST)
    result = confirm(form.secret(), action=action.pk, saved_here=ownership.saved_ids(request)
                     ) if form.is_valid() else None
    settle_attempt(request, result)
    if result is not None:
        if result.ok:
            ownership.remember_confirmed(request, action)
            return redirect("confirmation:status", action_id=action.pk)
        if result.status != ConfirmStatus.INVALID or not (result.action and result.action.is_open):
            return refused(request, result)
        form.add_error(None, form.wrong)
        form.attempts_left = result.attempts_left
    return render(request, template, {"action": action, "form": form}, status=400)


@private
@csrf_protect
@require_http_methods(["GET", "HEAD", "POST"])
def code(request: HttpRequest, action_id) -> HttpResponse:
    return _entry(request, action_id, CodeForm, "confirmation/code.html")


@private
@csrf_protect
@require_http_methods(["GET", "HEAD", "POST"])
def deposits(request: HttpRequest, action_id) -> HttpResponse:
    return _entry(request, action_id, AmountsForm, "confirmation/deposits.html")
