"""The packages' public names: each in ``__all__`` resolves, nothing private is listed, and importing a package
needs neither Django settings nor a ready app registry (Django imports the app's package while filling it)."""

from __future__ import annotations

import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGES = [
    "deferred_confirmation.pipeline",
    "deferred_confirmation.pipeline.lifecycle",
    "deferred_confirmation.pipeline.types",
    "deferred_confirmation.django_integration",
    "deferred_confirmation.workers",
]
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_name_in_all_resolves_and_none_is_private(package):
    module = importlib.import_module(package)
    assert module.__all__, package
    assert len(module.__all__) == len(set(module.__all__))
    for name in module.__all__:
        assert not name.startswith("_"), name
        assert getattr(module, name) is not None, name
        assert name in dir(module), name


@pytest.mark.parametrize("package", PACKAGES)
def test_an_unknown_name_is_an_attribute_error(package):
    module = importlib.import_module(package)
    with pytest.raises(AttributeError):
        module.no_such_name  # noqa: B018


def test_the_contract_names_are_exported():
    pipeline = importlib.import_module("deferred_confirmation.pipeline")
    assert {"confirm", "resend", "cancel", "ConfirmResult", "ConfirmStatus", "ResendResult"} <= set(pipeline.__all__)
    integration = importlib.import_module("deferred_confirmation.django_integration")
    assert {"DeferredForm", "DeferredAction", "Delivery", "confirmation_required", "change_confirmed",
            "confirmation_failed", "action_expired"} <= set(integration.__all__)
    from deferred_confirmation.django_integration.forms import DeferredForm
    from deferred_confirmation.django_integration.models import DeferredAction

    assert integration.DeferredForm is DeferredForm and integration.DeferredAction is DeferredAction
    assert importlib.import_module("deferred_confirmation.workers").__all__ == ["app"]


@pytest.mark.parametrize("name", ["confirm", "peek_link", "apply", "resend", "cancel", "stage"])
def test_public_lifecycle_functions_name_their_actions_and_secrets(name):
    """Their secret, token and action parameters say what they take (ActionRef, Secret...), never Any."""
    lifecycle = importlib.import_module("deferred_confirmation.pipeline.lifecycle")
    signature = inspect.signature(getattr(lifecycle, name))
    assert signature.return_annotation is not inspect.Signature.empty
    for parameter in signature.parameters.values():
        assert parameter.annotation is not inspect.Parameter.empty, (name, parameter.name)
        if parameter.name in ("secret", "token", "action", "action_id", "form"):
            assert "Any" not in str(parameter.annotation), (name, parameter.name, parameter.annotation)


def test_the_packages_import_without_django_settings():
    """A project's tooling (celery -A, type checkers, docs) imports them before Django is set up."""
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    code = ("import sys\n"
            + "".join(f"import {package}\n" for package in PACKAGES if not package.endswith(".lifecycle"))
            + "from deferred_confirmation.pipeline import ActionRef, Secret\n"
            + "assert 'deferred_confirmation.django_integration.models' not in sys.modules\n"
            + "assert 'django.apps' not in sys.modules or not __import__('django.apps').apps.ready\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
