"""apply: write a confirmed change, exactly once, against the row as it is now (docs/concepts.md#applying-a-change).

The change is written in one transaction holding the action's row lock (and the target's): a second run,
a duplicated task or a racing POST finds the action no longer ``confirmed`` and does nothing.  A refused
apply is rolled back whole and its failure recorded in a transaction of its own.  The form
is rebuilt from its stored input against the current row and fully re-validated, so uniqueness lost in
the meantime, related rows deleted, or a target edited since the request end as ``failed`` with a reason a
person can read, and nothing is written.
"""

from __future__ import annotations

import logging
from typing import Any

from django import forms
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError, models, transaction
from django.utils import timezone

from deferred_confirmation.django_integration.signals import change_confirmed
from deferred_confirmation.pipeline import formdata
from deferred_confirmation.pipeline.exceptions import ApplyRefused
from deferred_confirmation.pipeline.lifecycle.steplog import annotate_step, logged_step
from deferred_confirmation.pipeline.lifecycle.transitions import fail, lock, locked_row_or_none, move, signal_on_commit
from deferred_confirmation.pipeline.paths import import_path
from deferred_confirmation.pipeline.redaction import redact_contacts
from deferred_confirmation.pipeline.states import State
from deferred_confirmation.pipeline.types import ActionRef

logger = logging.getLogger("deferred_confirmation.lifecycle")


@logged_step("apply", done="applied")
def apply(action_id: ActionRef) -> bool:
    """Apply a confirmed action; True if it was applied now, False if there was nothing (left) to do."""
    annotate_step(action_id=action_id)
    try:
        with transaction.atomic():
            action = lock(action_id)
            if action is None or action.state != State.CONFIRMED:
                return False
            obj = _write(action)
            fields = {"applied_at": timezone.now()}
            if action.object_pk is None:  # a create: the action now points at what it made
                fields.update(content_type=ContentType.objects.get_for_model(obj), object_pk=str(obj.pk))
            move(action, State.APPLIED, **fields)
            signal_on_commit(change_confirmed, action)
    except ApplyRefused as refused:
        # Everything the attempt wrote is rolled back (and a query that failed on PostgreSQL took the
        # transaction with it); the failure is recorded in a transaction of its own, if the action is still
        # waiting for this apply.  No savepoint around the attempt: two round trips fewer on every apply.
        with transaction.atomic():
            action = lock(action_id)
            if action is None or action.state != State.CONFIRMED:
                return False
            fail(action, str(refused))
        annotate_step(outcome="failed", level=logging.INFO, reason=str(refused),
                      detail=getattr(refused, "detail", None))
        return False
    return True


def _write(action: Any) -> Any:
    """The change written (the saved object); ApplyRefused for anything that means it never will be.  Only a
    database error worth another try (lost connection, lock timeout, deadlock) propagates, for the task to
    retry; redrive re-queues the apply at most MAX_REDRIVES times after that."""
    form_class = _form_class(action.form_class)
    model = getattr(getattr(form_class, "_meta", None), "model", None)
    if not (isinstance(model, type) and issubclass(model, models.Model)):
        raise ApplyRefused(f"The form {action.form_class} is not a form of a model.")
    instance = None
    if action.object_pk is not None:
        instance = _locked_target(form_class, model, action)
    try:
        data = formdata.load(action.form_data)
    except ValueError as exc:
        raise ApplyRefused(f"The stored form data is unreadable: {exc}.") from exc
    try:
        form = form_class.rebuild(action=action, data=data, instance=instance)
        form.confirming = True
        if not form.is_valid():
            raise ApplyRefused(_errors_text(form))
        obj = form.save_confirmed()
        if action.object_pk is None:
            if not isinstance(obj, models.Model) or obj.pk is None:
                raise ApplyRefused(f"The change could not be saved: {type(form).__name__}.save_confirmed() "
                                   "returned no saved object.")
            if action.confirmed_elsewhere:
                _drop_password(form, obj)
        return obj
    except ApplyRefused:
        raise
    except (OperationalError, InterfaceError):
        raise  # lost connection, lock timeout, deadlock, serialization failure: the task retries
    except IntegrityError as exc:
        # A unique value taken between validation and save.  The database's own text names the stored
        # values (someone else's, sometimes): logged for operators (contacts masked) on the apply line, not
        # stored where users read it.
        refused = ApplyRefused("The change could not be saved: it conflicts with data stored since it was "
                               "requested (a value that must be unique was taken meanwhile).")
        refused.detail = f"integrity error: {redact_contacts(str(exc))}"[:2000]
        raise refused from exc
    except ValidationError as exc:  # raised by a form's save_confirmed() for the person to read
        raise ApplyRefused("The change could not be saved: " + " ".join(exc.messages)) from exc
    except Exception as exc:
        # Anything else (data that no longer fits the model, a bug in the form's clean() or save_confirmed())
        # ends the action as failed rather than leaving it confirmed for redrive to retry forever.
        logger.exception("action %s: apply failed", action.pk, extra={"action_id": str(action.pk)})
        raise ApplyRefused(f"The change could not be saved ({type(exc).__name__}); the details are in the "
                           "server log.") from exc


def _form_class(path: str) -> type:
    """The form class by its stored path; a module that no longer imports (renamed, a syntax error, an error
    raised while importing it) refuses the apply instead of leaving the action confirmed."""
    try:
        return import_path(path)
    except ImportError as exc:
        raise ApplyRefused(f"The form {path} can no longer be imported.") from exc
    except (OperationalError, InterfaceError):
        raise
    except Exception as exc:
        logger.exception("form %s: import failed", path)
        raise ApplyRefused(f"The form {path} can no longer be imported ({type(exc).__name__}); the details are "
                           "in the server log.") from exc


def _locked_target(form_class: type, model: type[models.Model], action: Any) -> models.Model:
    """The row the change is for, locked, and not changed since the request in the fields the form touches."""
    name = model._meta.verbose_name
    try:
        instance = locked_row_or_none(model._default_manager.filter(pk=action.object_pk))
        stale = instance is not None and not getattr(form_class, "allow_stale", False) and bool(
            action.target_fingerprint) and not formdata.fingerprint_matches(form_class, instance,
                                                                             action.target_fingerprint)
    except (OperationalError, InterfaceError):
        raise
    except Exception as exc:  # a stored key that is not one of this model's (a value the pk type refuses)
        raise ApplyRefused(f"The {name} this change was for cannot be read ({type(exc).__name__}).") from exc
    if instance is None:
        raise ApplyRefused(f"The {name} this change was for no longer exists.")
    if stale:
        raise ApplyRefused(f"stale: the {name} was changed after this change was requested; request it again.")
    return instance


def _drop_password(form: Any, obj: models.Model) -> None:
    """A sign-up confirmed from another browser session than the one that saved it: whoever saved it chose
    the password, and may not be the owner of the address that confirmed it.  The account gets an unusable
    password instead (its owner sets one)."""
    sensitive = getattr(form, "sensitive_fields", ()) or ()
    has_password = any(isinstance(field.widget, forms.PasswordInput) for field in form.fields.values()) or any(
        "password" in name.lower() for name in sensitive)
    if has_password and callable(getattr(obj, "set_unusable_password", None)):
        obj.set_unusable_password()
        obj.save(update_fields=["password"])
        annotate_step(detail="password not applied: confirmed from another browser session")


def _errors_text(form: Any) -> str:
    parts = []
    for name, errors in form.errors.items():
        label = "" if name == "__all__" else (form.fields[name].label or name.replace("_", " ")) + ": "
        parts.append(label + " ".join(str(e) for e in errors))
    return "The change is no longer valid. " + " ".join(parts)


__all__ = ["ApplyRefused", "DatabaseError", "apply"]
