"""stage: store a valid DeferredForm as a pending action and queue its deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.utils import timezone

from django_integration.models import DeferredAction, Delivery
from pipeline import dispatch, formdata, routing
from pipeline.conf import app_settings


def form_path(form_class: type) -> str:
    return f"{form_class.__module__}.{form_class.__qualname__}"


def stage(form: Any, *, user: Any = None, description: str | None = None, valid_until: datetime | None = None,
          channels: list[str] | None = None) -> DeferredAction:
    """Store ``form`` (valid, bound) as a pending action; deliveries are enqueued when the caller commits."""
    model = form._meta.model
    path = form_path(type(form))
    names = routing.channels_for(path, model._meta.label_lower, channels,
                                 getattr(form, "confirmation_channels", None))
    recipients = {name: form.get_recipient(name) for name in names}
    missing = [name for name, recipient in recipients.items() if not recipient]
    if missing:
        raise ValueError(f"{type(form).__name__} has no recipient for channel(s) {missing}: set "
                         f"recipient_field or override get_recipient(channel).")
    now = timezone.now()
    if valid_until is None:
        valid_until = now + max(app_settings.channel(name)["EXPIRES"] for name in names)
    instance = None
    if form.instance.pk is not None and not form.instance._state.adding:
        # The row as stored, not form.instance: ModelForm validation already copied the new values onto it.
        instance = model._default_manager.filter(pk=form.instance.pk).first()
        if instance is None:
            raise ValueError(f"The {model._meta.verbose_name} being edited no longer exists.")

    with transaction.atomic():
        action = DeferredAction.objects.create(
            form_class=path,
            form_data=formdata.dump(form),
            form_prefix=form.prefix,
            content_type=ContentType.objects.get_for_model(model) if instance is not None else None,
            object_pk=str(instance.pk) if instance is not None else None,
            target_fingerprint=formdata.fingerprint(type(form), instance) if instance is not None else "",
            user=user if getattr(user, "pk", None) else None,
            description=(description or "").replace("\x00", "\ufffd"),  # text columns refuse NUL
            channel_policy=getattr(form, "confirmation_policy", "any"),
            created_at=now,
            valid_until=valid_until,
        )
        for name in names:
            delivery = Delivery.objects.create(action=action, channel=name, recipient=str(recipients[name]))
            dispatch.enqueue(dispatch.GENERATE_TOKEN, delivery.pk, delivery.generation,
                             queue=app_settings.channel(name)["QUEUE"])
    return action
