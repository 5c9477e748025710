"""Channel backends, looked up by the channel names configured in ``DEFERRED_CONFIRMATION["CHANNELS"]``."""

from __future__ import annotations

from deferred_confirmation.pipeline.channels.base import (
    BaseChannel,
    ChannelConfigurationError,
    ChannelError,
    PermanentChannelError,
    TransientChannelError,
)
from deferred_confirmation.pipeline.conf import app_settings
from deferred_confirmation.pipeline.paths import import_path

__all__ = [
    "BaseChannel",
    "ChannelConfigurationError",
    "ChannelError",
    "PermanentChannelError",
    "TransientChannelError",
    "configured_channel",
    "get_channel",
]


def configured_channel(name: str) -> BaseChannel | None:
    """The channel, or None if it is no longer configured (secrets of a removed channel are just invalid)."""
    return get_channel(name) if name in app_settings.CHANNELS else None


def get_channel(name: str) -> BaseChannel:
    conf = app_settings.channel(name)
    backend = import_path(conf["BACKEND"])
    return backend(name, conf)
