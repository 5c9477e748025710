"""A site's sign-up, the way a project writes it: the account is created on confirmation, the password sealed
until then, and the view passes its request to ``save()`` so the visitor's session owns the action.

URLconf for ``@pytest.mark.urls("tests.web.signup")``: the test project's URLs, the sign-up, and a
``password_reset`` page (django.contrib.auth's name) where an account without a usable password gets one.
"""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.views import PasswordResetView
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import path

from deferred_confirmation.django_integration.forms import DeferredForm
from tests.urls import urlpatterns as project_urls


class SignUpForm(DeferredForm):
    recipient_field = "email"
    email = forms.EmailField(max_length=254)
    password = forms.CharField(widget=forms.PasswordInput, strip=False)

    class Meta:
        model = get_user_model()
        fields = ["username", "email"]

    def save_confirmed(self):
        user = super(DeferredForm, self).save(commit=False)
        user.set_password(self.cleaned_data["password"])
        user.save()
        return user


def sign_up(request: HttpRequest) -> HttpResponse:
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        action = form.save(request=request, description=f"Create the account {form.cleaned_data['username']}")
        return redirect("confirmation:status", action_id=action.pk)
    return HttpResponse(str(form.errors), status=400 if form.errors else 200)


urlpatterns = [
    *project_urls,
    path("signup/", sign_up, name="sign_up"),
    path("password-reset/", PasswordResetView.as_view(), name="password_reset"),
]
