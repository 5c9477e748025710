"""stage: store a valid DeferredForm as a pending action and queue its deliveries."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.forms import BaseModelForm
from django.utils import timezone, translation
from django.utils.module_loading import import_string
from django.views.decorators.debug import sensitive_variables

from deferred_confirmation.django_integration.models import DeferredAction, Delivery, seal_recipient
from deferred_confirmation.pipeline import dispatch, formdata, limits, routing
from deferred_confirmation.pipeline.channels import get_channel
from deferred_confirmation.pipeline.conf import app_settings
from deferred_confirmation.pipeline.exceptions import InvalidRecipient
from deferred_confirmation.pipeline.lifecycle.steplog import annotate_step, logged_step
from deferred_confirmation.pipeline.types import User


def form_path(form_class: type) -> str:
    """The dotted path a worker imports the form by; refused if it does not lead back to the class."""
    path = f"{form_class.__module__}.{form_class.__qualname__}"
    try:
        importable = import_string(path) is form_class
    except ImportError:
        importable = False
    if not importable:
        raise ValueError(f"{form_class.__name__} cannot be imported as {path!r}: a DeferredForm must be a "
                         "module-level class, because the worker rebuilds it from that path.")
    return path


def check_storable(form: Any, instance: Any, user: Any) -> None:
    """Refuse a form whose input does not survive storage unchanged, rather than apply something else later.

    The input is stored, loaded and validated again exactly as at confirmation; any field whose cleaned value
    differs (a widget whose data keys we cannot see, a value JSON cannot hold) or any new error stops it."""
    probe = DeferredAction(form_class=form_path(type(form)), form_prefix=form.prefix,
                           user=user if getattr(user, "pk", None) else None)
    rebuilt = type(form).rebuild(action=probe, data=formdata.load(formdata.dump(form)), instance=instance)
    rebuilt.confirming = True
    if not rebuilt.is_valid():
        raise ValueError(f"{type(form).__name__} does not validate when rebuilt from its stored input, as it "
                         f"will be at confirmation: {rebuilt.errors.as_text()}")
    lost = formdata.lost_in_storage(form, rebuilt)
    if lost:
        raise ValueError(f"{type(form).__name__}: the input of {lost} does not survive being stored as JSON; "
                         "it would be applied differently from what was submitted.")


def form_route(form: Any, channels: list[str] | None = None) -> routing.Route:
    model = form._meta.model
    return routing.route(form_path(type(form)), model._meta.label_lower, channels,
                         getattr(form, "confirmation_channels", None), getattr(form, "confirmation_policy", None))


def stored_recipient(recipient: Any) -> str:
    """A recipient as stored on the Delivery: text as is, a structured one (address, account) as JSON."""
    if isinstance(recipient, dict):
        return json.dumps(recipient, sort_keys=True, ensure_ascii=False)
    return str(recipient)


# The functions below hold the recipients (bank accounts, addresses) and the form's values in their locals:
# sensitive_variables keeps those out of Django's error reports.
@sensitive_variables()
def recipients_for(form: Any, names: list[str]) -> dict[str, str]:
    recipients = {name: form.get_recipient(name) for name in names}
    missing = [name for name, recipient in recipients.items() if not recipient]
    if missing:
        raise InvalidRecipient(f"{type(form).__name__} has no recipient for channel(s) {missing}: set "
                         f"recipient_field or override get_recipient(channel).")
    return {name: stored_recipient(recipient) for name, recipient in recipients.items()}


def is_sensitive_recipient(form: Any, channel: str) -> bool:
    """Whether ``channel``'s recipient must not be stored in clear: the channel says so (a bank account), or
    the form's ``recipient_field`` is one of its sensitive fields (a PasswordInput or ``sensitive_fields``)."""
    if getattr(get_channel(channel), "sensitive_recipient", False):
        return True
    field = getattr(form, "recipient_field", None)
    return bool(field) and field in formdata.sensitive_field_names(form)


@sensitive_variables()
def delivery_recipient(form: Any, channel: str, recipient: str) -> dict[str, str]:
    """The Delivery fields holding ``recipient``: as is, or for a sensitive one masked (last 4) with the full
    value sealed, so that a database dump shows no account number."""
    if not is_sensitive_recipient(form, channel):
        return {"recipient": recipient}
    masked, sealed = seal_recipient(recipient)
    return {"recipient": masked, "recipient_sealed": sealed}


#: Without a ``valid_until``, resends keep an action open until this many times its channels' longest EXPIRES
#: after the save, never longer.
LIFETIME_IN_EXPIRES = 3


@logged_step("stage", done="staged")
@sensitive_variables()
def stage(form: BaseModelForm, *, user: User | None = None, description: str | None = None,
          valid_until: datetime | None = None, channels: list[str] | None = None, client: str | None = None,
          asker: User | None = None) -> DeferredAction:
    """Store ``form`` (valid, bound) as a pending action; deliveries are enqueued when the caller commits.

    ``client`` and ``asker``: the client address and the signed-in user of the request that asks (a view
    passes both; ``asker`` None is an anonymous visitor).  Their send limits are counted, never those of the
    action's ``user`` given on someone's behalf; without a ``client`` (no request) ``user`` is the asker.

    Raises :class:`deferred_confirmation.pipeline.limits.SendLimitExceeded` if a recipient was sent too many secrets
    recently (DeferredForm reports that as a form error during validation already), or the ``client`` (its address,
    :func:`deferred_confirmation.django_integration.clients.client_address`) or the asking user asked for too
    many lately."""
    model = form._meta.model
    chosen = form_route(form, channels)
    recipients = recipients_for(form, chosen.channels)
    now = timezone.now()
    expiry = {name: valid_until or now + app_settings.channel(name)["EXPIRES"] for name in chosen.channels}
    instance = None
    if form.instance.pk is not None and not form.instance._state.adding:
        # The row as stored, not form.instance: ModelForm validation already copied the new values onto it.
        instance = model._default_manager.filter(pk=form.instance.pk).first()
        if instance is None:
            raise ValueError(f"The {model._meta.verbose_name} being edited no longer exists.")

    check_storable(form, instance, user)

    # No savepoint: inside a caller's transaction (a view under ATOMIC_REQUESTS) one costs two round trips.
    # Every limit (each recipient's, the client's and the user's across recipients) is checked before anything
    # is written, and a refusal is raised after the block, so a refused save leaves the caller's transaction
    # usable and counts nothing.  The sends are counted with the action, or not at all.
    with transaction.atomic(savepoint=False):
        asking = asker if client is not None else user
        requester = limits.requester_keys(client, asking)
        refused = limits.reserve_sends(recipients.items(), client=client, user=asking, requester=requester,
                                       now=now)
        if refused is None:
            action = DeferredAction.objects.create(
                form_class=form_path(type(form)),
                form_data=formdata.dump(form),
                form_prefix=form.prefix,
                content_type=ContentType.objects.get_for_model(model) if instance is not None else None,
                object_pk=str(instance.pk) if instance is not None else None,
                target_fingerprint=formdata.fingerprint(type(form), instance) if instance is not None else "",
                user=user if getattr(user, "pk", None) else None,
                description=(description or "").replace("\x00", "\ufffd"),  # text columns refuse NUL
                channel_policy=chosen.policy,
                requester_key=requester[0],
                language=translation.get_language() or "",
                created_at=now,
                valid_until=max(expiry.values()),
                # No resend or redrive keeps the action open past it: resending every so often must not make a
                # change confirmable forever, and a late resend (a returned letter) still gets time to arrive.
                deadline=valid_until or now + LIFETIME_IN_EXPIRES * max(
                    app_settings.channel(name)["EXPIRES"] for name in chosen.channels),
            )
            annotate_step(action_id=action.pk, channel=",".join(chosen.channels), to_state=action.state)
            for name in chosen.channels:
                delivery = Delivery.objects.create(action=action, channel=name,
                                                   **delivery_recipient(form, name, recipients[name]),
                                                   expires_at=expiry[name])
                dispatch.enqueue(dispatch.GENERATE_TOKEN, delivery.pk, delivery.generation,
                                 queue=app_settings.channel(name)["QUEUE"], action_id=action.pk)
    if refused is not None:
        raise limits.SendLimitExceeded(*refused)
    return action
