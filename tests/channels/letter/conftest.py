"""Fixtures of the letter tests: the letter channel configured (PDFs under a temporary MEDIA_ROOT, or Lob at
a loopback fake), a way to stage an address change, and readers that get the code back out of the letter
the way a person would (from the PDF's text, or from the HTML Lob was sent)."""

from __future__ import annotations

import io
import itertools
import re
from datetime import timedelta
from typing import Any

import pypdf
import pytest
from django.core.files.storage import FileSystemStorage

from deferred_confirmation import workers
from deferred_confirmation.django_integration.models import DeferredAction, Delivery
from deferred_confirmation.pipeline.channels.letter import ALPHABET
from example.fakes.lob import FakeLob
from tests.channels.letter.forms import AddressChangeForm
from tests.testapp.models import Profile
from tests.workers.conftest import (  # noqa: F401  (fixtures shared with the worker tests)
    clean_queues,
    confirmation_settings,
    fast_retries,
    signal_log,
    task_log,
    wait_for,
    worker,
)

# Not inside a longer token: the code page's URL holds a UUID whose middle groups can look like a code.
CODE_RE = re.compile(rf"(?<![\w/-])([{ALPHABET}]{{4}}-[{ALPHABET}]{{4}})(?![\w/-])")
SENDER = {"name": "Example Ltd", "line1": "185 Berry St", "line2": "Suite 6100", "city": "San Francisco",
          "state": "CA", "postal_code": "94107", "country": "US"}
NEW_ADDRESS = {"address_name": "Erika Mustermann", "address_line1": "Heidestraße 17", "address_line2": "",
               "address_city": "Köln", "address_postal_code": "51147", "address_country": "de"}
_numbers = itertools.count(1)


def configure_letter(settings, **channel: Any) -> None:
    conf = dict(settings.DEFERRED_CONFIRMATION)
    letter = {"BACKEND": "deferred_confirmation.pipeline.channels.letter.PDFLetterChannel",
              "OPTIONS": {"FROM": SENDER}, **channel}
    conf["CHANNELS"] = {"email": {}, "letter": letter}
    settings.DEFERRED_CONFIRMATION = conf


@pytest.fixture(autouse=True)
def letter_settings(settings, tmp_path):
    """The letter channel on, PDFs stored under this test's own MEDIA_ROOT."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    configure_letter(settings)
    # The in-process worker consumes the queues the Celery app was configured with (from the test settings,
    # where only email is on): add the letter channel's queue.
    workers.app.amqp.queues.select_add("confirmation.letter")
    return settings


@pytest.fixture
def letter_conf(settings):
    """``letter_conf(MAX_ATTEMPTS=..., OPTIONS={...})``: change this test's letter channel settings."""
    def update(**values: Any) -> None:
        current = dict(settings.DEFERRED_CONFIRMATION["CHANNELS"]["letter"])
        current.update(values)
        configure_letter(settings, **current)
    return update


@pytest.fixture
def fake_lob(settings, letter_conf):
    """A fake Lob API on loopback, with the letter channel pointed at it (LobLetterChannel)."""
    with FakeLob() as lob:
        letter_conf(BACKEND="deferred_confirmation.pipeline.channels.letter.LobLetterChannel",
                    OPTIONS={"API_KEY": lob.api_key, "BASE_URL": lob.url, "FROM": SENDER, "TIMEOUT": (2, 1)})
        yield lob


def stage_address_change(**changes: str) -> tuple[Profile, DeferredAction]:
    """A profile with an old address and a deferred change of it to NEW_ADDRESS (with ``changes``)."""
    n = next(_numbers)
    profile = Profile.objects.create(
        email=f"letter{n}@example.org", address_name="Erika Mustermann", address_line1="Altweg 1",
        address_city="Bonn", address_postal_code="53111", address_country="DE")
    form = AddressChangeForm({**NEW_ADDRESS, **changes}, instance=profile)
    assert form.is_valid(), form.errors
    return profile, form.save()


def delivery_of(action: DeferredAction) -> Delivery:
    return Delivery.objects.get(action=action, channel="letter")


def letter_storage(settings) -> FileSystemStorage:
    return FileSystemStorage(location=f"{settings.MEDIA_ROOT}/letters")


def pdf_text(data: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() or "" for page in reader.pages)


def code_in(text: str) -> str:
    """The printed code (``XXXX-XXXX``) in a letter's text."""
    found = CODE_RE.findall(text)
    assert len(found) == 1, f"expected one code in the letter, found {found}: {text[:800]}"
    return found[0]


def read_letter(settings, delivery: Delivery) -> str:
    """The text of the stored PDF of ``delivery``."""
    with letter_storage(settings).open(delivery.provider_ref, "rb") as handle:
        data = handle.read()
    assert data.startswith(b"%PDF-")
    return pdf_text(data)


def code_url(action: DeferredAction) -> str:
    return f"/confirm/code/{action.pk}/"


def within(value, expected, slack=timedelta(minutes=5)) -> bool:
    return abs(value - expected) <= slack
