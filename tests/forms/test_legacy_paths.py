"""Paths of the old layout, when the library installed ``pipeline``, ``workers`` and ``django_integration`` as
top-level packages: settings that name them keep working (with a deprecation warning and check W003, never by
importing a second copy of the library), and stored form paths are moved under the namespace by migration 0007.
"""

from __future__ import annotations

import sys
from datetime import timedelta

import pytest
from django.core.checks import run_checks
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from deferred_confirmation.django_integration.models import DeferredAction
from deferred_confirmation.pipeline.channels import get_channel
from deferred_confirmation.pipeline.channels.email import EmailChannel
from deferred_confirmation.pipeline.paths import current_path, import_path
from tests.forms.test_checks import SHARED_CACHE, SITE

OLD_EMAIL = "pipeline.channels.email.EmailChannel"


def test_an_old_path_imports_the_namespaced_object_with_a_warning_naming_the_new_path():
    with pytest.warns(DeprecationWarning, match="deferred_confirmation.pipeline.channels.email.EmailChannel"):
        assert import_path(OLD_EMAIL) is EmailChannel
    # Never the old top-level module itself: in a checkout it would be a second copy of the library.
    assert "pipeline.channels.email" not in sys.modules
    assert current_path("myproject.channels.Pager") == "myproject.channels.Pager"
    assert current_path("pipelines.x") == "pipelines.x"  # only the library's own package names


def test_a_channel_configured_by_its_old_path_loads_and_the_check_names_the_new_one(settings):
    settings.CACHES = {"default": SHARED_CACHE}
    settings.DEFERRED_CONFIRMATION = {"SITE_URL": SITE, "CHANNELS": {"email": {"BACKEND": OLD_EMAIL}},
                                      "CELERY_APP": "workers.app"}
    with pytest.warns(DeprecationWarning):
        assert type(get_channel("email")) is EmailChannel

    found = [m for m in run_checks() if m.id.startswith("confirmation.")]
    assert sorted((m.id, m.is_serious()) for m in found) == [("confirmation.W003", False)] * 2
    hints = " ".join(m.hint for m in found)
    assert "'deferred_confirmation.pipeline.channels.email.EmailChannel'" in hints
    assert "'deferred_confirmation.workers.app'" in hints


APP = "confirmation"


@pytest.fixture
def at_0006(transactional_db):
    executor = MigrationExecutor(connection)
    executor.migrate([(APP, "0006_seal_sensitive_recipients")])
    yield MigrationExecutor(connection).loader.project_state([(APP, "0006_seal_sensitive_recipients")]).apps
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_migration_0007_moves_stored_form_paths_of_the_old_layout_and_only_those(at_0006):
    Action = at_0006.get_model(APP, "DeferredAction")
    until = timezone.now() + timedelta(days=1)
    old = Action.objects.create(form_class="django_integration.forms.SomeForm", valid_until=until)
    project = Action.objects.create(form_class="tests.testapp.forms.ProfileEmailForm", valid_until=until)

    MigrationExecutor(connection).migrate([(APP, "0007_namespaced_form_paths")])
    stored = DeferredAction.objects.values_list("form_class", flat=True)  # the columns 0007 knows
    assert stored.get(pk=old.pk) == "deferred_confirmation.django_integration.forms.SomeForm"
    assert stored.get(pk=project.pk) == "tests.testapp.forms.ProfileEmailForm"

    MigrationExecutor(connection).migrate([(APP, "0006_seal_sensitive_recipients")])
    assert Action.objects.get(pk=old.pk).form_class == "django_integration.forms.SomeForm"
