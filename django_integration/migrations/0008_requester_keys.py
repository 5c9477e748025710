"""Who asked for a send, as a keyed hash: each requester (the client address, else the user) has their own
allowance of a recipient's SEND_LIMIT, and an action's resends and redrives count where its save did; rows written
before count as one unknown requester's.  The language a change was saved in: the worker renders its mail, SMS and
letter in it.  The deadline's help text says it is always set now."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("confirmation", "0007_namespaced_form_paths"),
    ]

    operations = [
        migrations.AddField(
            model_name="deferredaction",
            name="requester_key",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.AddField(
            model_name="deferredaction",
            name="language",
            field=models.CharField(blank=True, default="", max_length=35),
        ),
        migrations.AddField(
            model_name="sendrecord",
            name="sender_key",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.AlterField(
            model_name="deferredaction",
            name="deadline",
            field=models.DateTimeField(blank=True, null=True,
                                       help_text="The latest expiry: valid_until given to save(), else the first one."),
        ),
    ]
