"""One exceptions module: every exception the library raises derives from ConfirmationError (and from the built-in
its callers already catch), and the modules that defined them before still export the very same classes."""

from __future__ import annotations

import pytest

from deferred_confirmation.pipeline import exceptions
from deferred_confirmation.pipeline.exceptions import (
    ApplyRefused,
    ChannelConfigurationError,
    ChannelError,
    ConfirmationError,
    InvalidRecipient,
    InvalidTransition,
    PermanentChannelError,
    SendLimitExceeded,
    TransientChannelError,
)
from deferred_confirmation.pipeline.limits import SendRefusal


@pytest.mark.parametrize("error, bases", [
    (InvalidRecipient, (ConfirmationError, ValueError)),
    (SendLimitExceeded, (ConfirmationError, ValueError)),
    (InvalidTransition, (ConfirmationError,)),
    (ApplyRefused, (ConfirmationError,)),
    (ChannelError, (ConfirmationError,)),
    (TransientChannelError, (ChannelError, ConfirmationError)),
    (PermanentChannelError, (ChannelError, ConfirmationError)),
    (ChannelConfigurationError, (ChannelError, ConfirmationError)),
])
def test_hierarchy(error, bases):
    for base in bases:
        assert issubclass(error, base), (error, base)


def test_every_exported_exception_derives_from_the_base():
    for name in exceptions.__all__:
        assert issubclass(getattr(exceptions, name), ConfirmationError), name


@pytest.mark.parametrize("module, name", [
    ("deferred_confirmation.pipeline.limits", "SendLimitExceeded"),
    ("deferred_confirmation.pipeline.states", "InvalidTransition"),
    ("deferred_confirmation.pipeline.lifecycle", "ApplyRefused"),
    ("deferred_confirmation.pipeline.lifecycle.applying", "ApplyRefused"),
    ("deferred_confirmation.pipeline.channels", "ChannelError"),
    ("deferred_confirmation.pipeline.channels", "TransientChannelError"),
    ("deferred_confirmation.pipeline.channels", "PermanentChannelError"),
    ("deferred_confirmation.pipeline.channels", "ChannelConfigurationError"),
    ("deferred_confirmation.pipeline.channels.base", "ChannelError"),
    ("deferred_confirmation.pipeline.channels.base", "TransientChannelError"),
    ("deferred_confirmation.pipeline.channels.base", "PermanentChannelError"),
    ("deferred_confirmation.pipeline.channels.base", "ChannelConfigurationError"),
])
def test_old_import_paths_give_the_same_class(module, name):
    imported = __import__(module, fromlist=[name])
    assert getattr(imported, name) is getattr(exceptions, name)


def test_send_limit_exceeded_is_still_caught_as_a_value_error():
    refusal = SendRefusal(reason="limit", retry_after=600)
    with pytest.raises(ValueError, match="sms: Too many confirmation messages") as raised:
        raise SendLimitExceeded("sms", refusal)
    assert raised.value.channel == "sms"
    assert raised.value.refusal is refusal


def test_channel_errors_mask_contacts_in_their_reason():
    error = PermanentChannelError("550 <bob@example.org> unknown", code="550")
    assert "bob@example.org" not in str(error)
    assert str(error).startswith("550: 550 <b***@example.org>")


def test_a_form_without_a_recipient_raises_invalid_recipient(db):
    from django import forms

    from deferred_confirmation.pipeline.lifecycle.staging import recipients_for

    class NoRecipient(forms.Form):
        def get_recipient(self, channel: str) -> str:
            return ""

    with pytest.raises(InvalidRecipient, match="no recipient for channel"):
        recipients_for(NoRecipient(), ["email"])
