"""Storing a form's raw input as JSON and giving it back, and fingerprinting the row a form edits.

Only the keys of the form's own fields are kept (no CSRF token, no unrelated POST data).  Values of
sensitive fields (PasswordInput widgets and the form's ``sensitive_fields``) are sealed with
:mod:`deferred_confirmation.pipeline.crypto` so a pending sign-up's password is not readable at rest.
"""

from __future__ import annotations

import base64
import hmac
import json
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import FieldDoesNotExist
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils.crypto import salted_hmac
from django.utils.datastructures import MultiValueDict

from deferred_confirmation.pipeline import crypto

SEALED = "__sealed__"
# PostgreSQL's jsonb cannot hold U+0000; such strings are stored base64-encoded under this tag.
NUL_SAFE = "__b64__"
_PURPOSE = "form_data"


def sensitive_field_names(form: forms.BaseForm) -> set[str]:
    names = set(getattr(form, "sensitive_fields", ()) or ())
    names |= {name for name, field in form.fields.items() if isinstance(field.widget, forms.PasswordInput)}
    return names


def _jsonable(value: Any) -> Any:
    if isinstance(value, str) and "\x00" in value:
        return {NUL_SAFE: base64.b64encode(value.encode("utf-8", "surrogatepass")).decode("ascii")}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, models.Model):
        return value.pk if isinstance(value.pk, int) else str(value.pk)
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder)) if not hasattr(value, "read") else str(value)


def _values(data: Any, key: str) -> list[Any]:
    if hasattr(data, "getlist"):
        return list(data.getlist(key))
    value = data[key]
    return list(value) if isinstance(value, list | tuple) else [value]


def _owner(key: str, html_names: dict[str, str]) -> str | None:
    """The field a data key belongs to: its html name, or the longest html name it extends with "_" or "-"
    (multi-part widgets: SelectDateWidget's x_year, MultiWidget's x_0, ClearableFileInput's x-clear)."""
    if key in html_names:
        return html_names[key]
    owners = [html for html in html_names if key.startswith((html + "_", html + "-"))]
    return html_names[max(owners, key=len)] if owners else None


def dump(form: forms.BaseForm) -> dict[str, list[Any]]:
    """The raw input of ``form``'s fields, JSON-ready, sensitive values sealed; other keys (CSRF token,
    unrelated POST data) are left out."""
    sensitive = sensitive_field_names(form)
    html_names = {form.add_prefix(name): name for name in form.fields}
    stored: dict[str, list[Any]] = {}
    for key in form.data:
        name = _owner(key, html_names)
        if name is None:
            continue
        values = [_jsonable(v) for v in _values(form.data, key)]
        if name in sensitive:
            values = [{SEALED: crypto.seal(_PURPOSE, json.dumps(v))} for v in values]
        stored[key] = values
    return stored


def _comparable(value: Any) -> Any:
    if isinstance(value, models.Model):
        return ("pk", str(value.pk))
    if isinstance(value, models.QuerySet):
        return sorted(str(pk) for pk in value.values_list("pk", flat=True))
    if isinstance(value, list | tuple):
        return [_comparable(v) for v in value]
    return value


def lost_in_storage(original: forms.BaseForm, rebuilt: forms.BaseForm) -> list[str]:
    """Fields whose cleaned value differs once the input went through :func:`dump` and :func:`load`."""
    return [name for name in original.fields
            if _comparable(original.cleaned_data.get(name)) != _comparable(rebuilt.cleaned_data.get(name))]


def load(stored: dict[str, list[Any]]) -> MultiValueDict:
    """Data to bind a form to again; raises ValueError if stored data is malformed or cannot be unsealed."""
    if not isinstance(stored, dict):
        raise ValueError("stored form data is not an object")
    data = MultiValueDict()
    for key, values in stored.items():
        if not isinstance(values, list):
            raise ValueError(f"stored value of {key!r} is not a list")
        opened = []
        for value in values:
            if isinstance(value, dict) and set(value) == {SEALED}:
                try:
                    value = json.loads(crypto.open_sealed(_PURPOSE, value[SEALED]))
                except (crypto.InvalidToken, ValueError, TypeError, AttributeError) as exc:  # not a str: tampered
                    raise ValueError(f"sealed value of {key!r} cannot be opened (SECRET_KEY changed?)") from exc
            if isinstance(value, dict) and set(value) == {NUL_SAFE}:
                try:
                    value = base64.b64decode(value[NUL_SAFE], validate=True).decode("utf-8", "surrogatepass")
                except (ValueError, TypeError) as exc:
                    raise ValueError(f"encoded value of {key!r} is malformed") from exc
            opened.append(value)
        data.setlist(key, opened)
    return data


def _field_value(instance: models.Model, name: str) -> Any:
    try:
        field = instance._meta.get_field(name)
    except FieldDoesNotExist:
        return None
    if not getattr(field, "concrete", False) and not field.many_to_many:
        return None
    value = field.value_from_object(instance)
    if field.many_to_many:
        return sorted(str(obj.pk) for obj in value)
    return value


def fingerprint(form_class: type[forms.BaseForm], instance: models.Model, secret: str | None = None) -> str:
    """A keyed hash of ``instance``'s current values in the fields ``form_class`` edits."""
    values = {name: _field_value(instance, name) for name in sorted(form_class.base_fields)}
    payload = json.dumps(values, cls=DjangoJSONEncoder, sort_keys=True, default=str)
    return salted_hmac("deferred_confirmation.fingerprint", payload, secret=secret, algorithm="sha256").hexdigest()


def fingerprint_matches(form_class: type[forms.BaseForm], instance: models.Model, stored: str) -> bool:
    """Whether ``instance`` still has the values fingerprinted as ``stored``, under the current or any
    ``SECRET_KEY_FALLBACKS`` key (a key rotation between request and confirmation is not a change)."""
    keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return any(hmac.compare_digest(fingerprint(form_class, instance, key), stored) for key in keys)
