"""The emailed link: GET shows a Confirm button (mail scanners follow links, so GET never confirms);
POST confirms, then redirects to the status page.  A wrong link POSTed counts against the client's failure
throttle; the right one always works."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_http_methods

from deferred_confirmation.django_integration import ownership, throttle
from deferred_confirmation.django_integration.views.common import private, refused, settle_attempt, throttled
from deferred_confirmation.pipeline.lifecycle import confirm, peek_link


@private
@csrf_protect
@require_http_methods(["GET", "HEAD", "POST"])
def link(request: HttpRequest, token: str) -> HttpResponse:
    if request.method != "POST":  # a GET shows, never confirms, and never counts as a failure
        result = peek_link(token)
        if not result.ok:
            return refused(request, result)
        return render(request, "confirmation/link.html", {"action": result.action})
    result = confirm(token, saved_here=ownership.saved_ids(request))
    if not result.ok:
        # A wrong link counts against the client; a right one is never refused.  Link tokens cannot be guessed
        # (256 bits), so throttling them first would only let someone behind the same address (an office, a
        # carrier's NAT) block everyone else's real links.
        if not throttle.reserve(request):
            return throttled(request)
        settle_attempt(request, result)
        return refused(request, result)
    ownership.remember_confirmed(request, result.action)  # whoever confirmed may follow it on the status page
    return redirect("confirmation:status", action_id=result.action.pk)
