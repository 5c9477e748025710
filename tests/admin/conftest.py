"""Fixtures of the admin and operator-command tests: a superuser's and a staff user's admin client, and
changes staged through a DeferredForm with the tasks run in place (eager) or not at all."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from deferred_confirmation.django_integration.models import DeferredAction, Delivery
from tests.testapp.forms import ProfileEmailForm
from tests.testapp.models import Profile

_numbers = itertools.count(1)


def unique_email(stem: str = "person") -> str:
    return f"{stem}{next(_numbers)}@example.org"


def save_change(form_class: type = ProfileEmailForm, data: dict[str, Any] | None = None,
                instance: Profile | None = None, **save_kwargs: Any) -> DeferredAction:
    """Validate and save a deferred change; what it enqueues runs only if the caller captures and runs the
    on-commit callbacks (the test transaction never commits)."""
    if instance is None:
        instance = Profile.objects.create(email=unique_email("old"))
    form = form_class(data if data is not None else {"email": unique_email("new")}, instance=instance)
    assert form.is_valid(), form.errors
    return form.save(**save_kwargs)


@pytest.fixture
def stage_sent(db, eager, django_capture_on_commit_callbacks):
    """Save a change and run its deliveries in place: the action comes back notified."""

    def stage(*args: Any, **kwargs: Any) -> DeferredAction:
        with django_capture_on_commit_callbacks(execute=True):
            action = save_change(*args, **kwargs)
        action.refresh_from_db()
        assert action.state == "notified", [d.status_detail for d in action.deliveries.all()]
        return action

    return stage


def age(actions: list[DeferredAction], **delta: Any) -> None:
    """Make ``actions`` look last touched ``delta`` ago (updated_at is auto_now, so through update())."""
    then = timezone.now() - timedelta(**delta)
    DeferredAction.objects.filter(pk__in=[a.pk for a in actions]).update(updated_at=then)
    Delivery.objects.filter(action__in=[a.pk for a in actions]).update(updated_at=then)


def overdue(actions: list[DeferredAction]) -> None:
    DeferredAction.objects.filter(pk__in=[a.pk for a in actions]).update(
        valid_until=timezone.now() - timedelta(minutes=1))


@pytest.fixture
def staff_client(db, client):
    """``staff_client(*codenames)``: the test client logged in as a staff user (not a superuser) holding only
    these permissions of the confirmation app (default: view only)."""

    def login(*codenames: str) -> Any:
        user = User.objects.create_user(f"staff{next(_numbers)}", password="x", is_staff=True)
        codenames = codenames or ("view_deferredaction", "view_delivery", "view_payout")
        user.user_permissions.set(Permission.objects.filter(content_type__app_label="confirmation",
                                                            codename__in=codenames))
        client.force_login(user)
        return client

    return login
