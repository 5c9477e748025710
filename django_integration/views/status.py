"""Where a change is (HTML that reloads itself until it settles, or JSON), and asking for a new secret."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_GET, require_POST

from deferred_confirmation.django_integration.clients import client_address, signed_in_user
from deferred_confirmation.django_integration.models import DeferredAction
from deferred_confirmation.django_integration.views.common import not_found, owned_action, page, private
from deferred_confirmation.pipeline.conf import app_settings
from deferred_confirmation.pipeline.lifecycle import resend as resend_secrets
from deferred_confirmation.pipeline.states import State


def entry_url_name(action: DeferredAction) -> str | None:
    """The page where this action's secret is typed in, if it is not a link."""
    from deferred_confirmation.pipeline.channels import get_channel

    kinds = {get_channel(d.channel).secret_kind for d in action.deliveries.all()
             if d.channel in app_settings.CHANNELS}
    if "amounts" in kinds:
        return "confirmation:deposits"
    if "code" in kinds:
        return "confirmation:code"
    return None


def password_to_set(action: DeferredAction) -> bool:
    """An account made by a sign-up confirmed from another browser session: the password chosen at sign-up
    was not applied (whoever signed up may not be whoever owns the address), so the person must set one."""
    if action.state != State.APPLIED or not action.confirmed_elsewhere:
        return False
    model = action.model_class
    if model is None or action.object_pk is None or not hasattr(model, "has_usable_password"):
        return False
    account = model._default_manager.filter(pk=action.object_pk).first()
    return account is not None and not account.has_usable_password()


def password_reset_url() -> str | None:
    """The site's "set a password" page (``password_reset``, as django.contrib.auth.urls names it), if any."""
    try:
        return reverse("password_reset")
    except NoReverseMatch:
        return None


@private
@require_GET
def status(request: HttpRequest, action_id) -> HttpResponse:
    action = owned_action(request, action_id)
    wants_json = request.get_preferred_type(["text/html", "application/json"]) == "application/json"
    if action is None:
        if wants_json:
            return JsonResponse({"error": "not_found"}, status=404)
        return not_found(request)
    if wants_json:
        return JsonResponse({
            "id": str(action.pk),
            "state": action.state,
            "failure_reason": action.failure_reason or None,
            "confirmed_at": action.confirmed_at,
            "applied_at": action.applied_at,
            "final": action.is_terminal,
        })
    set_password = password_to_set(action)
    return render(request, "confirmation/status.html", {
        "action": action, "refresh": None if action.is_terminal else app_settings.STATUS_REFRESH_SECONDS,
        "applied": action.state == State.APPLIED, "entry_url_name": entry_url_name(action),
        "set_password": set_password, "password_reset_url": password_reset_url() if set_password else None})


@private
@csrf_protect
@require_POST
def resend(request: HttpRequest, action_id) -> HttpResponse:
    """A new secret over the same channel(s), within the cooldown and send limits; the old one dies."""
    action = owned_action(request, action_id)
    if action is None:
        return not_found(request)
    result = resend_secrets(action, client=client_address(request), user=signed_in_user(request))
    if result.sent:
        status, title = 200, _("Sent again")
    elif result.refusal is not None:
        status, title = 429, _("Please wait")
    else:
        status, title = 410, _("No longer valid")
    response = page(request, status, title, result.message, action=action, entry_url_name=entry_url_name(action))
    if result.refusal is not None:
        response["Retry-After"] = str(result.refusal.retry_after)
    return response
