"""Letters: a code printed on paper and mailed to a postal address, typed back on the code page.

Two backends:

- :class:`PDFLetterChannel` renders the letter (an overridable HTML template) to PDF with WeasyPrint and
  stores it in a Django storage, for a print-and-mail batch of your own: the stored file's name is the
  delivery's ``provider_ref``.
- :class:`LobLetterChannel` sends the same letter through Lob's print-and-mail API.

The secret is :data:`CODE_LENGTH` characters of :data:`ALPHABET`, printed ``XXXX-XXXX``.  The alphabet leaves
out every character a person could misread on paper or mistype (0/O/Q/D, 1/I/L, 2/Z, 5/S, 8/B, U/V and G, 6's twin):
20 symbols, 8 of them, about 34.6 bits, against an attempt limit of 5 (MAX_ATTEMPTS).  Typed back, case,
spaces and dashes do not matter.

**The letter holds the raw code.**  That is what a letter is for, but it means the letter storage (the PDF
files, or Lob's copy) must be treated as secret as a password: use a private storage (OPTIONS["STORAGE"],
an alias of settings.STORAGES) that no web server serves — the default, ``MEDIA_ROOT/letters``, is only
safe if MEDIA_ROOT is not published as a whole.  File names carry no personal data and cannot be guessed
without SECRET_KEY.  :meth:`PDFLetterChannel.discard` deletes a delivery's letters: the purge task calls it
before it deletes the delivery (after RETENTION), and a new letter for the same delivery (a resend) deletes
the older one's file at once.  Both also find letters named under a key of ``SECRET_KEY_FALLBACKS``, so a key
rotation leaves no letter (and its live code) behind.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.crypto import salted_hmac

from deferred_confirmation.django_integration.postal import address_lines
from deferred_confirmation.pipeline import tokens
from deferred_confirmation.pipeline.channels.base import (
    BaseChannel,
    ChannelConfigurationError,
    PermanentChannelError,
    TransientChannelError,
)
from deferred_confirmation.pipeline.redaction import parse_structured
from deferred_confirmation.pipeline.siteurl import absolute_url

if TYPE_CHECKING:
    from deferred_confirmation.django_integration.models import DeferredAction, Delivery

logger = logging.getLogger("deferred_confirmation.channels.letter")

ALPHABET = "ACEFHJKMNPRTWXY34679"
CODE_LENGTH = 8
TEMPLATE = "confirmation/letter/letter.html"
_CODE_RE = re.compile(rf"[{ALPHABET}]{{{CODE_LENGTH}}}")
# What a person may put between the characters: whitespace and dashes (ASCII and typographic ones).
_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015\u2212\u30fc\ufe63\uff0d]+")
_MAX_TYPED = 64  # nothing longer is looked at

# WeasyPrint builds on Pango/fontconfig, whose first-use initialisation is not thread-safe: one letter at a
# time per process (a thread-pool worker renders letters in parallel otherwise).
_render_lock = threading.Lock()


def format_code(code: str) -> str:
    """``ACEF3479`` -> ``ACEF-3479``, as printed."""
    return f"{code[:4]}-{code[4:]}"


def code_url(action: DeferredAction) -> str:
    """The code page of ``action``, from SITE_URL (never from a request's Host header)."""
    return absolute_url(reverse("confirmation:code", args=[action.pk]), needed_for="letters (they print its URL)")


def recipient_address(delivery: Delivery) -> dict[str, str]:
    """The postal address stored on the delivery (JSON, written by DeferredForm.save)."""
    address = parse_structured(delivery.recipient_value)
    if address is None or not address.get("line1") or not address.get("country"):
        raise PermanentChannelError("the recipient is not a postal address (a dict with line1, city, postal_code "
                                    "and country is expected)", code="not-an-address")
    return {key: str(value or "") for key, value in address.items()}


class PDFLetterChannel(BaseChannel):
    """OPTIONS:

    - ``STORAGE``: alias of a storage in ``settings.STORAGES`` for the PDFs; None (default): a
      FileSystemStorage at ``MEDIA_ROOT/letters``.  Treat it as secret: every file holds a live code.
    - ``FROM``: the sender's address (a dict like the recipient's), printed above the address window.
    - ``PAGE_SIZE``: CSS page size, default ``"A4"`` (``"letter"`` in the US).
    - ``TEMPLATE``: the letter template, default ``confirmation/letter/letter.html``.
    - ``ALLOWED_PROTOCOLS``: URL schemes the template may load images/CSS from; default ``["data"]`` only,
      so rendering never fetches anything from the network or the file system.
    """

    secret_kind = "code"

    # --- secrets -----------------------------------------------------------------------------------
    def make_secret(self) -> str:
        return tokens.make_code(CODE_LENGTH, ALPHABET)

    def normalize(self, raw: object) -> str | None:
        if not isinstance(raw, str) or len(raw) > _MAX_TYPED:
            return None
        compact = _SEPARATORS.sub("", raw)
        # ASCII first: upper() would make "ﬀ" into "FF" and "ı" into "I".
        if len(compact) != CODE_LENGTH or not compact.isascii():
            return None
        compact = compact.upper()
        return compact if _CODE_RE.fullmatch(compact) else None

    # --- the letter --------------------------------------------------------------------------------
    def context(self, *, delivery: Delivery, action: DeferredAction, secret: str) -> dict[str, Any]:
        context = super().context(delivery=delivery, action=action, secret=secret)
        address = recipient_address(delivery)
        sender = self.options.get("FROM")
        sender_country = sender.get("country") if isinstance(sender, dict) else None
        context.update({
            "address": address,
            "address_lines": address_lines(address, sender_country=sender_country),
            "sender_lines": address_lines(sender, sender_country=address.get("country"))
            if isinstance(sender, dict) else [],
            "code": format_code(self.normalize(secret) or secret),
            "code_url": code_url(action),
            "expires_at": delivery.expires_at or action.valid_until,
            "page_size": self.options.get("PAGE_SIZE", "A4"),
            "show_address": True,
        })
        return context

    def render_html(self, *, delivery: Delivery, action: DeferredAction, secret: str, **extra: Any) -> str:
        context = self.context(delivery=delivery, action=action, secret=secret)
        context.update(extra)
        return render_to_string(self.options.get("TEMPLATE", TEMPLATE), context)

    def render_pdf(self, *, delivery: Delivery, action: DeferredAction, secret: str) -> bytes:
        import weasyprint

        html = self.render_html(delivery=delivery, action=action, secret=secret)
        with _render_lock:
            return weasyprint.HTML(string=html, url_fetcher=self._url_fetcher()).write_pdf()

    def _url_fetcher(self) -> Any:
        allowed = tuple(scheme.lower() for scheme in self.options.get("ALLOWED_PROTOCOLS", ("data",)))
        try:
            from weasyprint.urls import URLFetcher  # WeasyPrint >= 65
        except ImportError:  # pragma: no cover - older WeasyPrint: a plain function
            from weasyprint import default_url_fetcher

            def fetch(url: str, *args: Any, **kwargs: Any) -> Any:
                if url.split(":", 1)[0].lower() not in allowed:
                    raise ValueError(f"URI uses disallowed protocol: {url[:40]}")
                return default_url_fetcher(url, *args, **kwargs)

            return fetch
        return URLFetcher(allowed_protocols=allowed, allow_redirects=False, timeout=10)

    # --- storage -----------------------------------------------------------------------------------
    def storage(self) -> Storage:
        alias = self.options.get("STORAGE")
        if alias:
            try:
                return storages[alias]
            except Exception as exc:
                raise ChannelConfigurationError(f"letter STORAGE {alias!r} is not in settings.STORAGES") from exc
        if not settings.MEDIA_ROOT:
            raise ChannelConfigurationError("letters need MEDIA_ROOT or OPTIONS['STORAGE'] to store the PDFs")
        # base_url None-ish: these files must never get a public URL.
        return FileSystemStorage(location=os.path.join(settings.MEDIA_ROOT, "letters"),
                                 base_url="/unpublished-letters/", file_permissions_mode=0o600,
                                 directory_permissions_mode=0o700)

    @staticmethod
    def file_name(delivery: Delivery, generation: int | None = None, secret: str | None = None) -> str:
        """The PDF's name for one generation of ``delivery``: keyed hash of its idempotency key, so a retry
        overwrites its own file (one letter per secret), no personal data, not guessable without the key.
        New letters are named under ``SECRET_KEY``; ``secret`` gives the name under another key."""
        gen = delivery.generation if generation is None else generation
        # The action's UUID keeps two sites sharing a storage (and a SECRET_KEY) from overwriting each other.
        digest = salted_hmac("deferred_confirmation.letter.file", f"dc-{delivery.action_id}-{delivery.pk}-{gen}",
                             secret=secret, algorithm="sha256").hexdigest()[:32]
        return f"letter-{digest}.pdf"

    @classmethod
    def file_names(cls, delivery: Delivery, generation: int) -> list[str]:
        """The names one generation's PDF may have: under ``SECRET_KEY`` and under each key of
        ``SECRET_KEY_FALLBACKS`` (a letter stored before a key rotation), so none is left behind with its code."""
        keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
        return list(dict.fromkeys(cls.file_name(delivery, generation, secret=key) for key in keys))

    def send(self, *, delivery: Delivery, action: DeferredAction, secret: str) -> str:
        pdf = self.render_pdf(delivery=delivery, action=action, secret=secret)
        storage = self.storage()
        name = self.file_name(delivery)
        try:
            if storage.exists(name):  # an earlier try of this generation stored it: same code, replace it
                storage.delete(name)
            stored = storage.save(name, ContentFile(pdf))
        except OSError as exc:
            raise TransientChannelError(f"letter storage unavailable: {exc.__class__.__name__}") from exc
        # Older generations' letters (a resend), and this one's stored under a key since rotated away.
        self._delete_generations(storage, delivery, range(delivery.generation + 1), keep={name, stored})
        return stored

    def discard(self, delivery: Delivery) -> int:
        """Delete every stored letter of ``delivery`` (each holds a code); returns how many were found.

        Called by the purge task before the delivery row is deleted; safe to call at any time and twice."""
        storage = self.storage()
        removed = self._delete_generations(storage, delivery, range(delivery.generation + 1))
        ref = delivery.provider_ref
        if ref and ref.startswith("letter-") and "/" not in ref and ".." not in ref:
            removed += self._delete(storage, ref)
        return removed

    def _delete_generations(self, storage: Storage, delivery: Delivery, generations: range,
                            keep: frozenset[str] | set[str] = frozenset()) -> int:
        return sum(self._delete(storage, name) for gen in generations for name in self.file_names(delivery, gen)
                   if name not in keep)

    @staticmethod
    def _delete(storage: Storage, name: str) -> int:
        try:
            if storage.exists(name):
                storage.delete(name)
                return 1
        except OSError:
            logger.warning("could not delete a stored letter", exc_info=True)
        return 0


# --- Lob ----------------------------------------------------------------------------------------------
LOB_BASE_URL = "https://api.lob.com/v1"
LOB_HTML_LIMIT = 10_000  # Lob's limit for an inline HTML file
# Retried: no answer, timeouts, conflicts, rate limits, every 5xx; also 401/403 (a key being rotated) and 404
# (a wrong BASE_URL): configuration errors are not the recipient's fault, so they must not fail the action at
# once.  Every other 4xx (422 address errors, 400) is permanent.
LOB_TRANSIENT_STATUSES = {0, 401, 403, 404, 408, 409, 425, 429}


class LobLetterChannel(PDFLetterChannel):
    """Letters printed and mailed by Lob (``lob-python``).  OPTIONS:

    - ``API_KEY`` (required): a ``test_...`` key prints nothing, a ``live_...`` key mails letters.
    - ``FROM`` (required): the return address, a dict like the recipient's (``name``, ``line1``, ``line2``,
      ``city``, ``state``, ``postal_code``, ``country``), or the id of an address saved at Lob (``adr_...``).
    - ``BASE_URL``: default ``https://api.lob.com/v1``.
    - ``COLOR`` (default False), ``USE_TYPE`` (default ``"operational"``), ``DOUBLE_SIDED`` (default False),
      ``MAIL_TYPE`` (default Lob's: first class), ``TIMEOUT``: (connect, read) seconds, default (5, 30).
    - ``TEMPLATE``: as for PDF letters; rendered without the address block (Lob prints the address).

    The letter is sent as HTML, rendered by Lob; each request carries the delivery's idempotency key, so a
    retry after a lost answer gets back the letter already made instead of mailing a second one.  Lob keeps
    its copy of the letter (with the code): restrict who can see your Lob dashboard.
    """

    def send(self, *, delivery: Delivery, action: DeferredAction, secret: str) -> str:
        import lob_python
        import urllib3
        from lob_python.api.letters_api import LettersApi

        html = self.render_html(delivery=delivery, action=action, secret=secret, show_address=False,
                                page_size="letter")
        if len(html) > LOB_HTML_LIMIT:
            raise ChannelConfigurationError(f"the letter template renders {len(html)} characters; Lob takes "
                                            f"HTML up to {LOB_HTML_LIMIT}")
        letter = self._letter(delivery, action, html)
        configuration = lob_python.Configuration(host=self.options.get("BASE_URL") or LOB_BASE_URL,
                                                 username=self._api_key())
        configuration.retries = 0  # retries are the task's, with backoff and the same idempotency key
        timeout = tuple(self.options.get("TIMEOUT") or (5, 30))
        try:
            with lob_python.ApiClient(configuration) as client:
                created = LettersApi(client).create(letter, idempotency_key=delivery.idempotency_key,
                                                    _request_timeout=timeout, _check_return_type=False)
        except lob_python.ApiException as exc:
            raise _lob_error(exc) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:  # timeouts, refused or dropped connections
            raise TransientChannelError(f"Lob unreachable: {exc.__class__.__name__}", code="network") from exc
        letter_id = created.get("id") if isinstance(created, dict) else getattr(created, "id", "")
        return str(letter_id or "")

    def discard(self, delivery: Delivery) -> int:
        """Nothing is stored here; Lob's copy stays at Lob (a mailed letter cannot be cancelled)."""
        return 0

    def _api_key(self) -> str:
        key = self.options.get("API_KEY")
        if not key:
            raise ChannelConfigurationError("LobLetterChannel needs OPTIONS['API_KEY']")
        return str(key)

    def _letter(self, delivery: Delivery, action: DeferredAction, html: str) -> Any:
        from lob_python.exceptions import ApiTypeError, ApiValueError
        from lob_python.model.letter_editable import LetterEditable
        from lob_python.model.ltr_use_type import LtrUseType
        from lob_python.model.metadata_model import MetadataModel

        sender = self.options.get("FROM")
        if not sender:
            raise ChannelConfigurationError("LobLetterChannel needs OPTIONS['FROM'], the return address")
        try:
            from_address = sender if isinstance(sender, str) else lob_address(sender)
        except (ApiTypeError, ApiValueError, KeyError, TypeError) as exc:
            raise ChannelConfigurationError(f"OPTIONS['FROM'] is not a valid Lob address: {exc}") from exc
        try:
            to_address = lob_address(recipient_address(delivery))
        except (ApiTypeError, ApiValueError, KeyError, TypeError) as exc:
            raise PermanentChannelError(f"address refused before sending: {_first_line(exc)}",
                                        code="invalid-address") from exc
        extra: dict[str, Any] = {"double_sided": bool(self.options.get("DOUBLE_SIDED", False))}
        if self.options.get("MAIL_TYPE"):
            extra["mail_type"] = self.options["MAIL_TYPE"]
        return LetterEditable(
            color=bool(self.options.get("COLOR", False)),
            to=to_address,
            _from=from_address,
            file=html,
            use_type=LtrUseType(self.options.get("USE_TYPE", "operational")),
            description=f"confirmation letter {delivery.pk}",
            metadata=MetadataModel(delivery=str(delivery.pk), generation=str(delivery.generation)),
            **extra,
        )


def lob_address(address: dict[str, Any]) -> Any:
    """Our address dict as Lob's ``AddressEditable``."""
    from lob_python.model.address_editable import AddressEditable
    from lob_python.model.country_extended import CountryExtended

    fields = {"name": address.get("name"), "company": address.get("company"),
              "address_line1": address.get("line1"), "address_line2": address.get("line2"),
              "address_city": address.get("city"), "address_state": address.get("state"),
              "address_zip": address.get("postal_code")}
    fields = {key: str(value) for key, value in fields.items() if value}
    country = str(address.get("country") or "").upper()
    if country:
        fields["address_country"] = CountryExtended(country)
    return AddressEditable(**fields)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else exc.__class__.__name__


def _lob_error(exc: Any) -> Exception:
    """Lob's answer as our error, with Lob's own message as the reason."""
    status = int(getattr(exc, "status", 0) or 0)
    message, code = "", ""
    body = getattr(exc, "body", None)
    if body:
        try:
            error = json.loads(body).get("error") or {}
            message, code = str(error.get("message") or ""), str(error.get("code") or "")
        except (ValueError, AttributeError, TypeError):
            message = str(body)[:300]
    reason = f"Lob: {message or getattr(exc, 'reason', '') or 'no details'}"
    if code:
        reason += f" ({code})"
    if status in LOB_TRANSIENT_STATUSES or status >= 500:
        return TransientChannelError(reason, code=str(status) if status else "network")
    return PermanentChannelError(reason, code=str(status))
