from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.debug import sensitive_post_parameters

from deferred_confirmation.django_integration.models import DeferredAction
from deferred_confirmation.pipeline.limits import SendLimitExceeded
from example.accounts.forms import (
    AddressChangeForm,
    BankAccountForm,
    EmailChangeForm,
    PhoneChangeForm,
    SignUpForm,
)
from example.accounts.models import Profile


def home(request):
    context = {"pending": 0, "open_actions": [], "profile": None}
    if request.user.is_authenticated:
        context["pending"] = DeferredAction.objects.pending_for(request.user)
        context["profile"] = Profile.objects.filter(user=request.user).first()
        # Changes still waiting for their secret, with a link to where each one stands.
        context["open_actions"] = DeferredAction.objects.filter(user=request.user).open().order_by("-created_at")[:10]
    return render(request, "accounts/home.html", context)


def _form_page(request, form, title, intro=""):
    """The form, with its errors: 400, or 429 with Retry-After when a send limit refused it."""
    refusal = getattr(form, "send_refusal", None)
    response = render(request, "accounts/form.html", {"form": form, "title": title, "intro": intro},
                      status=429 if refusal else 400 if form.errors else 200)
    if refusal:
        response["Retry-After"] = str(refusal.retry_after)
    return response


def _save(form, request, description):
    """The deferred change, or None when a send limit was reached since validation (the form says so)."""
    try:
        return form.save(request=request, description=description)
    except SendLimitExceeded:
        return None


@login_required
def change_email(request):
    form = EmailChangeForm(request.POST or None, instance=request.user, request=request)
    if request.method == "POST" and form.is_valid():
        action = _save(form, request, f"Change your email address to {form.cleaned_data['email']}")
        if action is not None:
            return render(request, "accounts/sent.html", {"action": action}, status=202)
    return _form_page(request, form, "Change your email address")


@login_required
def change_phone(request):
    form = PhoneChangeForm(request.POST or None, instance=Profile.of(request.user), request=request)
    if request.method == "POST" and form.is_valid():
        action = _save(form, request, f"Change your mobile number to {form.cleaned_data['phone']}")
        if action is not None:
            # The text arrives within seconds: straight to the page where its code is typed in.
            return redirect("confirmation:code", action_id=action.pk)
    return _form_page(request, form, "Change your mobile number",
                      "We will text a code to the new number. It changes once you enter that code.")


@login_required
def change_address(request):
    form = AddressChangeForm(request.POST or None, instance=Profile.of(request.user), request=request)
    if request.method == "POST" and form.is_valid():
        address = form.postal_address
        action = _save(form, request, f"Change your postal address to {address['line1']}, {address['city']}")
        if action is not None:
            # A letter takes days: the status page says so and links to the code page for when it arrives.
            return redirect("confirmation:status", action_id=action.pk)
    return _form_page(request, form, "Change your postal address",
                      "We will mail a letter with a code to the new address. It changes once you enter that code.")


@sensitive_post_parameters("bank_iban", "bank_account_number")
@login_required
def change_bank_account(request):
    form = BankAccountForm(request.POST or None, instance=Profile.of(request.user), request=request)
    if request.method == "POST" and form.is_valid():
        number = form.cleaned_data["bank_iban"] or form.cleaned_data["bank_account_number"]
        action = _save(form, request, f"Change your bank account to the one ending in {number[-4:]}")
        if action is not None:
            return redirect("confirmation:deposits", action_id=action.pk)
    return _form_page(request, form, "Change your bank account",
                      "We will pay two small amounts (under $1) into the new account. It becomes your account "
                      "once you enter both amounts from your statement.")


@sensitive_post_parameters("password")
def sign_up(request):
    form = SignUpForm(request.POST or None, request=request)
    if request.method == "POST" and form.is_valid():
        action = _save(form, request, f"Create the account {form.cleaned_data['username']}")
        if action is not None:
            return render(request, "accounts/sent.html", {"action": action}, status=202)
    return _form_page(request, form, "Sign up")
