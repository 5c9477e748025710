"""The emailed link: GET shows a Confirm button (mail scanners follow links, so GET never confirms);
POST confirms, then redirects to the status page."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_http_methods

from django_integration import throttle
from django_integration.views.common import count_failure, private, refused, throttled
from pipeline.lifecycle import confirm, peek_link


@private
@csrf_protect
@require_http_methods(["GET", "HEAD", "POST"])
def link(request: HttpRequest, token: str) -> HttpResponse:
    if throttle.is_blocked(request):
        return throttled(request)
    result = confirm(token) if request.method == "POST" else peek_link(token)
    if not result.ok:
        count_failure(request, result)
        return refused(request, result)
    if request.method == "POST":
        return redirect("confirmation:status", action_id=result.action.pk)
    return render(request, "confirmation/link.html", {"action": result.action})
