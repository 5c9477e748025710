"""The library's forms: :class:`DeferredForm`, a ModelForm whose save() stores the change and asks for
confirmation (docs/api.md#deferredform), and the confirm-page forms where a person types the secret back
(:class:`CodeForm`, :class:`AmountsForm`)."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib.auth import get_user_model
from django.http import HttpRequest
from django.utils.decorators import method_decorator
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables

from deferred_confirmation.django_integration import ownership
from deferred_confirmation.django_integration.clients import client_address, signed_in_user
from deferred_confirmation.pipeline import amounts, limits
from deferred_confirmation.pipeline.formdata import sensitive_field_names
from deferred_confirmation.pipeline.lifecycle import stage
from deferred_confirmation.pipeline.lifecycle.staging import form_route, recipients_for

if TYPE_CHECKING:
    from deferred_confirmation.django_integration.models import DeferredAction


def hide_from_error_reports(request: HttpRequest, names: list[str]) -> None:
    """Add ``names`` to the POST parameters Django's error reports replace with stars (what the
    ``sensitive_post_parameters`` decorator sets): a crash after the form was bound (in the view, a signal
    receiver, a template) must not mail a password or an account number to the site's admins."""
    hidden = getattr(request, "sensitive_post_parameters", None)
    if hidden == "__ALL__" or not names:
        return
    request.sensitive_post_parameters = [*(hidden or ()), *(n for n in names if n not in (hidden or ()))]


class DeferredForm(forms.ModelForm):
    """Validate as usual; ``save()`` returns a pending :class:`DeferredAction` and changes no row.

    Class attributes a subclass may set:

    - ``confirmation_channels``: channel names (else ``ROUTES``, else ``DEFAULT_CHANNELS``).
    - ``recipient_field``: the cleaned field holding where the secret goes (or override ``get_recipient``).
    - ``sensitive_fields``: extra fields sealed at rest (``PasswordInput`` fields always are).
    - ``allow_stale``: apply even if the target row changed since the request (default False).
    - ``confirmation_policy``: ``"any"`` (one confirmed channel suffices) or ``"all"``; default: the route's,
      else ``"any"``.
    """

    confirmation_channels: list[str] | None = None
    recipient_field: str | None = None
    sensitive_fields: tuple[str, ...] = ()
    allow_stale = False
    confirmation_policy: str | None = None
    #: True while the form is rebuilt in a worker to send or apply a confirmed change.
    confirming = False
    #: Set when a send limit made the form invalid (or save() refused): a view may answer 429 with
    #: ``Retry-After: send_refusal.retry_after`` instead of 400.
    send_refusal: limits.SendRefusal | None = None

    def __init__(self, *args: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
        """``request`` (from a view): validation then also checks the send limits of the client and the
        signed-in user asking (``SEND_LIMIT_PER_CLIENT``), so ``is_valid()`` is False with a message instead of
        ``save()`` raising, and ``save()`` uses it; and the form's sensitive fields are hidden from Django's
        error reports for this request, as ``sensitive_post_parameters`` would."""
        super().__init__(*args, **kwargs)
        self.request = request
        # Validation writes the new values onto the instance (ModelForm._post_clean); work on a copy so
        # the caller's object (often request.user) keeps showing what is really stored until confirmation.
        if self.instance.pk is not None:
            self.instance = copy.copy(self.instance)
        if request is not None:
            hide_from_error_reports(request, [self.add_prefix(name) for name in sensitive_field_names(self)])

    def _post_clean(self) -> None:
        super()._post_clean()
        if not self.confirming and not self._errors:
            self._check_send_limits()

    @method_decorator(sensitive_variables())
    def _check_send_limits(self) -> None:
        """Too many secrets sent to this recipient lately: a form error now, not a failure in save()."""
        try:
            recipients = recipients_for(self, form_route(self).channels)
        except ValueError:
            return  # no route or no recipient: save() reports that programming error
        client = user = None
        if self.request is not None:
            client, user = client_address(self.request), signed_in_user(self.request)
        refused = limits.check_sends(recipients.items(), client=client, user=user)  # what save() will reserve
        if refused is not None:
            self._refuse(refused[1])

    def _refuse(self, refusal: limits.SendRefusal) -> None:
        self.send_refusal = refusal
        self.add_error(None, refusal.message)

    def get_recipient(self, channel: str) -> str | None:
        """Where ``channel`` sends the secret: ``recipient_field``'s (new) value; else, for email and a user
        being edited, the address stored on that user now (not the one typed into this form)."""
        if self.recipient_field:
            return self.cleaned_data.get(self.recipient_field)
        instance = self.instance
        if channel == "email" and isinstance(instance, get_user_model()) and instance.pk is not None:
            rows = type(instance)._default_manager.filter(pk=instance.pk)
            return rows.values_list(instance.get_email_field_name(), flat=True).first()
        return None

    def save(self, user: Any = None, description: str | None = None, valid_until: datetime | None = None,
             channels: list[str] | None = None, commit: bool = True, *, request: HttpRequest | None = None
             ) -> DeferredAction:
        """Store the change for confirmation; returns the DeferredAction (the model row is NOT changed).

        ``request`` (here, or given to the form): its signed-in user becomes ``user`` (unless given), its session
        may then open the action's pages (an anonymous sign-up's too), and its client address counts against
        ``SEND_LIMIT_PER_CLIENT``.  Raises :class:`deferred_confirmation.pipeline.limits.SendLimitExceeded` (a
        ``ValueError``), after adding its message to the form's errors, when a send limit was reached between
        validation and save (a form given the request checks every limit while validating)."""
        if not commit or isinstance(user, bool):  # save(False), Django's positional idiom, means commit=False
            raise ValueError(f"{type(self).__name__}.save(commit=False) is not supported: a deferred change is "
                             "stored, not returned unsaved. Call save() and use the returned DeferredAction.")
        if self._errors is None:
            raise ValueError(f"Call {type(self).__name__}.is_valid() before save().")
        if self.errors:
            raise ValueError(f"The {self._meta.model._meta.object_name} could not be deferred because the data "
                             "didn't validate.")
        if any(self.files.getlist(k) if hasattr(self.files, "getlist") else self.files[k] for k in self.files):
            raise ValueError(f"{type(self).__name__}: file uploads cannot be deferred; save the file first and "
                             "submit a reference to it.")
        client = asker = None
        request = request if request is not None else self.request
        if request is not None:
            # The limits are those of who asks, even when the action is saved for someone else (user=...).
            asker, client = signed_in_user(request), client_address(request)
            user = user if user is not None else asker
        try:
            action = stage(self, user=user, description=description, valid_until=valid_until, channels=channels,
                           client=client, asker=asker)
        except limits.SendLimitExceeded as exc:
            self._refuse(exc.refusal)
            raise
        ownership.remember_saved(request, action)
        return action

    # --- used at confirmation time, in the worker ---------------------------------------------------
    @classmethod
    def rebuild(cls, *, action: DeferredAction, data: Any, instance: Any) -> DeferredForm:
        """The form bound to its stored input against the current row; override to pass extra kwargs."""
        return cls(data=data, instance=instance, prefix=action.form_prefix)

    def save_confirmed(self) -> Any:
        """Write the confirmed change (ModelForm.save, with M2M); override to e.g. set a password."""
        return super().save(commit=True)


# The confirm pages: a code (SMS, letter, email by code) or the two micro-deposit amounts.


class CodeForm(forms.Form):
    wrong = _("That code is wrong or has expired.")
    attempts_left: int | None = None

    code = forms.CharField(label=_("Confirmation code"), max_length=64, strip=True,
                           widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autofocus": True,
                                                         "autocapitalize": "characters", "spellcheck": "false"}))

    def secret(self) -> Any:
        return self.cleaned_data["code"]


class AmountField(forms.CharField):
    default_error_messages = {"amount": _("Enter an amount between 0.01 and 0.99, like 0.32 or 32.")}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=amounts.MAX_INPUT, strip=True, **kwargs)
        self.widget.attrs.update({"inputmode": "decimal", "autocomplete": "off", "placeholder": "0.00"})

    def clean(self, value: Any) -> int:
        text = super().clean(value)
        cents = amounts.parse_cents(text)
        if cents is None:
            raise forms.ValidationError(self.error_messages["amount"], code="amount")
        return cents


class AmountsForm(forms.Form):
    wrong = _("Those amounts are wrong or have expired.")
    attempts_left: int | None = None

    first = AmountField(label=_("First amount"))
    second = AmountField(label=_("Second amount"))

    def clean(self) -> dict:
        data = super().clean()
        if data.get("first") is not None and data.get("first") == data.get("second"):
            raise forms.ValidationError(_("The two deposits have different amounts."), code="same")
        return data

    def secret(self) -> Any:
        return (self.cleaned_data["first"], self.cleaned_data["second"])
