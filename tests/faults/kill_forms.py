"""Forms for the worker-killed tests, importable by dotted path in a worker subprocess.

Each blocks in one step (the send hook, or the apply after its write) until the file ``release`` appears in
the directory ``DC_TEST_KILL_DIR``, after writing ``started-<step>-<action id>`` there: the test waits for
those markers, then SIGKILLs the worker while every action is inside the step.
"""

import os
import time
from pathlib import Path

from django.db.models import Value
from django.db.models.functions import Concat

from deferred_confirmation.pipeline.channels import get_channel
from tests.testapp.forms import ProfileEmailForm
from tests.testapp.models import Profile

BLOCK_LIMIT = 60.0  # seconds; a worker nobody kills goes on after this


def block(step: str, action_id) -> None:
    """Mark ``step`` started for the action, then wait for the release (if the test runs one)."""
    directory = os.environ.get("DC_TEST_KILL_DIR")
    if not directory:
        return
    marker_dir = Path(directory)
    release = marker_dir / "release"
    if release.exists():
        return
    (marker_dir / f"started-{step}-{action_id}").touch()
    deadline = time.monotonic() + BLOCK_LIMIT
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


class KillDuringSendForm(ProfileEmailForm):
    """Its send hook blocks before the mail goes out, then sends it through the email channel."""

    def send_notification(self, user=None, instance=None):
        block("send", instance.pk)
        delivery = instance.deliveries.get(channel="email")
        get_channel("email").send(delivery=delivery, action=instance, secret=instance.token)


class KillDuringApplyForm(ProfileEmailForm):
    """Its apply writes the email and one "+" on the nickname (the count of applies), then blocks inside the
    apply's transaction."""

    def save_confirmed(self):
        profile = super().save_confirmed()
        Profile.objects.filter(pk=profile.pk).update(nickname=Concat("nickname", Value("+")))
        block("apply", profile.pk)
        return profile
