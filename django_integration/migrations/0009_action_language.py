"""The language a change was saved in: the worker renders its mail, SMS and letter in it."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("confirmation", "0008_requester_keys"),
    ]

    operations = [
        migrations.AddField(
            model_name="deferredaction",
            name="language",
            field=models.CharField(blank=True, default="", max_length=35),
        ),
    ]
