"""apply: write a confirmed change, exactly once, against the row as it is now (DESIGN §8).

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

from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from django_integration.signals import change_confirmed
from pipeline import formdata
from pipeline.channels.base import redact_contacts
from pipeline.lifecycle.transitions import fail, first_locked, lock, logged_step, move, note, signal_on_commit
from pipeline.states import State

logger = logging.getLogger("deferred_confirmation.lifecycle")


class ApplyRefused(Exception):
    """The stored change cannot be applied; the message is stored as the failure reason."""


@logged_step("apply", done="applied")
def apply(action_id: Any) -> bool:
    """Apply a confirmed action; True if it was applied now, False if there was nothing (left) to do."""
    note(action_id=action_id)
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
        note(outcome="failed", level=logging.INFO, reason=str(refused), detail=getattr(refused, "detail", None))
        return False
    return True


def _write(action: Any) -> Any:
    try:
        form_class = import_string(action.form_class)
    except ImportError as exc:
        raise ApplyRefused(f"The form {action.form_class} can no longer be imported.") from exc
    model = form_class._meta.model
    instance = None
    if action.object_pk is not None:
        instance = first_locked(model._default_manager.filter(pk=action.object_pk))
        if instance is None:
            raise ApplyRefused(f"The {model._meta.verbose_name} this change was for no longer exists.")
        if not getattr(form_class, "allow_stale", False) and action.target_fingerprint and (
                not formdata.fingerprint_matches(form_class, instance, action.target_fingerprint)):
            raise ApplyRefused(f"stale: the {model._meta.verbose_name} was changed after this change was "
                               "requested; request it again.")
    try:
        data = formdata.load(action.form_data)
    except ValueError as exc:
        raise ApplyRefused(f"The stored form data is unreadable: {exc}.") from exc
    try:
        form = form_class.rebuild(action=action, data=data, instance=instance)
        form.confirming = True
        if not form.is_valid():
            raise ApplyRefused(_errors_text(form))
        return form.save_confirmed()
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


def _errors_text(form: Any) -> str:
    parts = []
    for name, errors in form.errors.items():
        label = "" if name == "__all__" else (form.fields[name].label or name.replace("_", " ")) + ": "
        parts.append(label + " ".join(str(e) for e in errors))
    return "The change is no longer valid. " + " ".join(parts)


__all__ = ["ApplyRefused", "DatabaseError", "apply"]
