"""The example channel end to end: save a change, the secret goes out through the fake API (tasks run in place, no
worker), the code typed back confirms it and the change is applied; provider errors map to ours."""

from __future__ import annotations

import re

import pytest
from django.core.checks import run_checks

from deferred_confirmation.django_integration.models import Delivery
from deferred_confirmation.pipeline import ConfirmStatus, confirm
from deferred_confirmation.pipeline.channels import get_channel
from deferred_confirmation.pipeline.states import DeliveryStatus, State
from tests.channels.acme import settings as example
from tests.channels.acme.channel import AcmeChannel
from tests.channels.acme.fake import FakeAcme
from tests.channels.acme.forms import AcmePhoneForm
from tests.testapp.models import Profile

PHONE = "+12025550123"


@pytest.fixture
def fake_acme():
    with FakeAcme() as fake:
        yield fake


def with_options(**options: object) -> dict:
    """The example settings with the channel's OPTIONS replaced."""
    acme = {**example.DEFERRED_CONFIRMATION["CHANNELS"]["acme"], "OPTIONS": options}
    channels = {**example.DEFERRED_CONFIRMATION["CHANNELS"], "acme": acme}
    return {**example.DEFERRED_CONFIRMATION, "CHANNELS": channels}


@pytest.fixture(autouse=True)
def acme_channel(settings, fake_acme):
    settings.DEFERRED_CONFIRMATION = {
        **settings.DEFERRED_CONFIRMATION,
        **with_options(API_KEY=fake_acme.api_key, URL=fake_acme.url, TIMEOUT=2),
    }


@pytest.fixture
def save_change(db, eager, django_capture_on_commit_callbacks):
    """Save a phone change; the tasks it queues run in this process when the save commits."""

    def save(profile: Profile):
        form = AcmePhoneForm({"phone": PHONE}, instance=profile)
        assert form.is_valid(), form.errors
        with django_capture_on_commit_callbacks(execute=True):
            return form.save()

    return save


def test_save_send_confirm_apply(save_change, fake_acme, django_capture_on_commit_callbacks):
    profile = Profile.objects.create(email="acme@example.org")
    action = save_change(profile)

    [message] = fake_acme.messages
    assert message["to"] == PHONE
    code = re.match(r"(\d{6}) is your code", message["text"]).group(1)
    delivery = Delivery.objects.get(action=action)
    assert delivery.status == DeliveryStatus.SENT and delivery.provider_ref == message["id"]
    assert code not in delivery.secret_digest
    profile.refresh_from_db()
    assert profile.phone == ""  # nothing changes before the code comes back

    assert confirm("000000" if code != "000000" else "111111", action=action).status == ConfirmStatus.INVALID
    with django_capture_on_commit_callbacks(execute=True):
        result = confirm(f"{code[:3]} {code[3:]}", action=action)  # typed with a space
    assert result.status == ConfirmStatus.CONFIRMED
    action.refresh_from_db()
    profile.refresh_from_db()
    assert action.state == State.APPLIED
    assert profile.phone == PHONE


def test_a_refused_number_fails_the_delivery_with_the_number_masked(save_change, fake_acme):
    fake_acme.fail_next.append(400)
    action = save_change(Profile.objects.create(email="acme-refused@example.org"))
    delivery = Delivery.objects.get(action=action)
    assert delivery.status == DeliveryStatus.FAILED
    assert "Acme refused: cannot deliver to +12***23" in delivery.status_detail
    assert PHONE not in delivery.status_detail


def test_provider_errors_map_to_ours(fake_acme, db):
    from deferred_confirmation.pipeline.exceptions import PermanentChannelError, TransientChannelError

    channel = get_channel("acme")

    class Stub:  # the two delivery attributes send() reads
        recipient_value = PHONE
        idempotency_key = "k1"

    class Action:
        description = "a new phone number"

    fake_acme.fail_next += [503, 404]
    with pytest.raises(TransientChannelError, match="HTTP 503"):
        channel.send(delivery=Stub(), action=Action(), secret="123456")
    with pytest.raises(PermanentChannelError, match="404"):
        channel.send(delivery=Stub(), action=Action(), secret="123456")
    assert channel.send(delivery=Stub(), action=Action(), secret="123456") == "msg_1"
    assert channel.send(delivery=Stub(), action=Action(), secret="123456") == "msg_1"  # same key: sent once
    assert len(fake_acme.messages) == 1


def test_the_system_check_runs_the_channels_check_options(settings, fake_acme):
    assert not [e for e in run_checks() if "acme" in e.msg]  # the example settings pass
    settings.DEFERRED_CONFIRMATION = {**settings.DEFERRED_CONFIRMATION, **with_options(URL=fake_acme.url)}
    assert [e for e in run_checks() if "acme" in e.msg and "OPTIONS['API_KEY'] is required." in e.msg]


def test_check_options():
    assert AcmeChannel.check_options({"API_KEY": "k"}) == []
    assert AcmeChannel.check_options({"TIMEOUT": 0}) == [
        "OPTIONS['API_KEY'] is required.", "OPTIONS['TIMEOUT'] must be a positive number of seconds."]


def test_normalize():
    channel = AcmeChannel("acme", {"OPTIONS": {}})
    assert channel.normalize(" 123-456 ") == "123456"
    assert channel.normalize("12345") is None
    assert channel.normalize("١٢٣٤٥٦") is None  # other scripts' digits are not ASCII
    assert channel.normalize(123456) is None
