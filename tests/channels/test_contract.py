"""The channel contract of BaseChannel: every hook declared, with its default or a NotImplementedError naming the
class and the hook; secret kinds checked when a channel class is defined; the built-in channels' options checked by
a direct call of the declared check_options hook; LedgerChannel kept as a deprecated name of MicroDepositChannel."""

from __future__ import annotations

import pytest

from deferred_confirmation.pipeline.channels import BaseChannel
from deferred_confirmation.pipeline.channels.base import SECRET_KINDS
from deferred_confirmation.pipeline.channels.email import EmailChannel
from deferred_confirmation.pipeline.channels.letter import LobLetterChannel, PDFLetterChannel
from deferred_confirmation.pipeline.channels.microdeposit import MicroDepositChannel
from deferred_confirmation.pipeline.channels.sms import TwilioSMSChannel


class OnlyACode(BaseChannel):
    """A channel that says it sends codes and implements nothing."""

    secret_kind = "code"


class LinkWithoutSend(BaseChannel):
    pass


def test_a_missing_hook_names_the_class_and_the_hook():
    channel = OnlyACode("partial", {"OPTIONS": {}})
    for hook, call in [("make_secret", channel.make_secret), ("normalize", lambda: channel.normalize("123"))]:
        with pytest.raises(NotImplementedError, match=rf"{__name__}\.OnlyACode must implement the channel hook "
                                                      rf"{hook}\(\)"):
            call()
    with pytest.raises(NotImplementedError, match=r"\.LinkWithoutSend must implement the channel hook send\(\)"):
        LinkWithoutSend("partial", {}).send(delivery=None, action=None, secret="x")


def test_a_link_channel_needs_only_send():
    channel = LinkWithoutSend("links", {})
    token = channel.make_secret()
    assert channel.normalize(token) == token
    assert channel.discard(None) == 0
    assert LinkWithoutSend.check_options({}) == []
    assert LinkWithoutSend.warn_options({}) == []


@pytest.mark.parametrize("kind", SECRET_KINDS)
def test_secret_kinds(kind):
    assert type("Fine", (BaseChannel,), {"secret_kind": kind}).secret_kind == kind


def test_an_unknown_secret_kind_is_refused_when_the_class_is_defined():
    with pytest.raises(TypeError, match=r"secret_kind is 'pin'; it must be one of 'link', 'code', 'amounts'"):
        type("Pin", (BaseChannel,), {"secret_kind": "pin"})


@pytest.mark.parametrize("channel", [EmailChannel, TwilioSMSChannel, PDFLetterChannel, LobLetterChannel,
                                     MicroDepositChannel])
def test_built_in_channels_declare_every_hook(channel):
    assert channel.secret_kind in SECRET_KINDS
    assert isinstance(channel.check_options({}), list)  # direct calls: every channel has the hooks
    assert isinstance(channel.warn_options({}), list)
    if channel.secret_kind != "link":  # the hooks a code or amounts channel must implement
        for hook in ("make_secret", "normalize"):
            assert getattr(channel, hook) is not getattr(BaseChannel, hook), (channel, hook)
    assert channel.send is not BaseChannel.send


def test_ledger_channel_is_a_deprecated_name_of_micro_deposit_channel():
    from deferred_confirmation.pipeline.channels import microdeposit
    from deferred_confirmation.pipeline.paths import import_path

    with pytest.deprecated_call(match="now MicroDepositChannel"):
        assert microdeposit.LedgerChannel is MicroDepositChannel
    with pytest.deprecated_call():  # settings written before the rename still load
        assert import_path("deferred_confirmation.pipeline.channels.microdeposit.LedgerChannel") is MicroDepositChannel
    with pytest.raises(AttributeError):
        microdeposit.NoSuchChannel  # noqa: B018


def test_micro_deposit_channel_is_the_default_backend(settings):
    from deferred_confirmation.pipeline.channels import get_channel

    settings.DEFERRED_CONFIRMATION = {**settings.DEFERRED_CONFIRMATION, "CHANNELS": {"microdeposit": {}}}
    assert type(get_channel("microdeposit")) is MicroDepositChannel
