"""The example channel registered in a project's settings (the test settings take this dict, pointing OPTIONS at
the fake API)."""

import os
from datetime import timedelta

DEFERRED_CONFIRMATION = {
    "SITE_URL": "https://example.com",
    "CHANNELS": {
        "email": {},
        "acme": {
            "BACKEND": "tests.channels.acme.channel.AcmeChannel",  # the dotted path of your channel class
            "OPTIONS": {"API_KEY": os.environ.get("ACME_API_KEY", "")},
            "EXPIRES": timedelta(minutes=10),  # how long a code is valid
            "MAX_ATTEMPTS": 5,  # wrong codes before the action is locked: a short code is guessable
            "SEND_LIMIT": 5,  # codes texted to one number per SEND_WINDOW (SMS pumping)
            "SEND_WINDOW": timedelta(minutes=10),
        },
    },
    "ROUTES": {"tests.channels.acme.forms.AcmePhoneForm": ["acme"]},
}
