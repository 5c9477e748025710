"""Settings of the worker and Flower processes the secrets audit starts: the test settings, plus the channels the
audit configures in the test process (passed as JSON in DC_AUDIT_CHANNELS: the fake Twilio's port is only known
at run time), and every logger at DEBUG on the console (the process's log file)."""

import json
import os

from tests.settings import *  # noqa: F403 - the test settings, extended

if os.environ.get("DC_AUDIT_CHANNELS"):
    DEFERRED_CONFIRMATION = {**DEFERRED_CONFIRMATION,  # noqa: F405
                             "CHANNELS": json.loads(os.environ["DC_AUDIT_CHANNELS"])}

DEBUG = True  # django.db.backends logs every query (with its parameters) only then

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler", "level": "DEBUG"}},
    "root": {"handlers": ["console"], "level": "DEBUG"},
    "loggers": {"django.db.backends": {"level": "DEBUG"}},
}
