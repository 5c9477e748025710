"""A form for the database-fault tests, importable by dotted path in the worker's threads.

Its apply writes in three steps: the email, one "+" on the nickname (the database's own count of applies
that got as far as that write), then whatever ``FaultForm.after_write`` (set by a test) does.  A fault
injected in ``after_write`` hits an apply that has already written: if the rollback were incomplete the
nickname would keep that attempt's "+".
"""

from collections.abc import Callable

from django.db.models import Value
from django.db.models.functions import Concat

from tests.testapp.forms import ProfileEmailForm
from tests.testapp.models import Profile


class FaultForm(ProfileEmailForm):
    after_write: Callable[["FaultForm"], None] | None = None

    def save_confirmed(self):
        profile = super().save_confirmed()
        Profile.objects.filter(pk=profile.pk).update(nickname=Concat("nickname", Value("+")))
        hook = type(self).after_write
        if hook is not None:
            hook(self)
        return profile
