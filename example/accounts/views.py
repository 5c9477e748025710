from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from django_integration.models import DeferredAction
from example.accounts.forms import EmailChangeForm, SignUpForm


def home(request):
    pending = DeferredAction.objects.pending_for(request.user) if request.user.is_authenticated else 0
    return render(request, "accounts/home.html", {"pending": pending})


@login_required
def change_email(request):
    form = EmailChangeForm(request.POST or None, instance=request.user)
    if request.method == "POST" and form.is_valid():
        action = form.save(user=request.user, description=f"Change your email address to {form.cleaned_data['email']}")
        return render(request, "accounts/sent.html", {"action": action}, status=202)
    return render(request, "accounts/form.html", {"form": form, "title": "Change your email address"},
                  status=400 if form.errors else 200)


def sign_up(request):
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        action = form.save(description=f"Create the account {form.cleaned_data['username']}")
        return render(request, "accounts/sent.html", {"action": action}, status=202)
    return render(request, "accounts/form.html", {"form": form, "title": "Sign up"},
                  status=400 if form.errors else 200)
