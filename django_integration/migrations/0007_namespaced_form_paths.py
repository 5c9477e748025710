"""Stored form class paths under the package's one namespace.

Earlier releases installed ``pipeline``, ``workers`` and ``django_integration`` as top-level packages; they now
live under ``deferred_confirmation``.  An action whose form class was named by an old path (a form shipped in
one of those packages) is rewritten to the new one, so it still applies.  Project forms are untouched.
"""

from django.db import migrations
from django.db.models import Value
from django.db.models.functions import Concat

OLD_ROOTS = ("pipeline.", "workers.", "django_integration.")


def to_namespace(apps, schema_editor):
    DeferredAction = apps.get_model("confirmation", "DeferredAction")
    actions = DeferredAction.objects.using(schema_editor.connection.alias)
    for root in OLD_ROOTS:
        actions.filter(form_class__startswith=root).update(
            form_class=Concat(Value("deferred_confirmation."), "form_class"))


def to_top_level(apps, schema_editor):
    DeferredAction = apps.get_model("confirmation", "DeferredAction")
    actions = DeferredAction.objects.using(schema_editor.connection.alias)
    for root in OLD_ROOTS:
        for action in actions.filter(form_class__startswith=f"deferred_confirmation.{root}").only("form_class"):
            action.form_class = action.form_class.removeprefix("deferred_confirmation.")
            action.save(update_fields=["form_class"])


class Migration(migrations.Migration):
    dependencies = [("confirmation", "0006_seal_sensitive_recipients")]
    operations = [migrations.RunPython(to_namespace, to_top_level, elidable=True)]
