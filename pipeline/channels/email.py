"""Email: a link to a confirmation page, sent as text + HTML from overridable templates.

The link is built from ``SITE_URL`` and never from a request's Host header, so a forged Host cannot
make us mail a link to an attacker's domain (the password-reset poisoning bug).
"""

from __future__ import annotations

import logging
import smtplib
from email.utils import make_msgid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation

from deferred_confirmation.pipeline.channels import mailconn
from deferred_confirmation.pipeline.channels.base import (
    BaseChannel,
    ChannelConfigurationError,
    PermanentChannelError,
    TransientChannelError,
)
from deferred_confirmation.pipeline.conf import app_settings
from deferred_confirmation.pipeline.siteurl import absolute_url

if TYPE_CHECKING:
    from deferred_confirmation.django_integration.models import DeferredAction, Delivery

logger = logging.getLogger("deferred_confirmation.channels")

TEMPLATES = {
    "subject": "confirmation/email/subject.txt",
    "text": "confirmation/email/body.txt",
    "html": "confirmation/email/body.html",
}


def confirm_link(token: str) -> str:
    return absolute_url(reverse("confirmation:link", args=[token]))


class EmailChannel(BaseChannel):
    """OPTIONS: ``MAILER`` (Django 6.1+ with settings.MAILERS: the entry to send with, default "default"),
    ``EMAIL_BACKEND`` (without MAILERS: a backend's dotted path, default the project's mail backend),
    ``FROM_EMAIL``, ``KEEP_ALIVE`` (seconds an idle connection to the mail server is kept for the next send,
    default 30; 0 opens one per mail)."""

    secret_kind = "link"

    def limit_identity(self, recipient: str) -> str:
        """The mailbox, whatever its spelling: case folded and a ``+tag`` dropped (``victim+1@``, ``victim+2@``
        ... reach one inbox, so they share its send limits)."""
        local, at, domain = super().limit_identity(recipient).rpartition("@")
        return f"{local.split('+', 1)[0]}{at}{domain}" if at else domain

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> list[str]:
        """Problems with OPTIONS, for a system check (empty when fine)."""
        problems = []
        if not _is_seconds(options.get("KEEP_ALIVE", mailconn.DEFAULT_KEEP_ALIVE)):
            problems.append("OPTIONS['KEEP_ALIVE'] must be a number of seconds, 0 or more.")
        # An option the running Django's mail settings cannot honour would fail every send.
        mailer = mailconn.mailer_problem(options.get("MAILER"), options.get("EMAIL_BACKEND"))
        return [*problems, mailer] if mailer else problems

    @classmethod
    def warn_options(cls, options: dict[str, Any]) -> list[str]:
        """OPTIONS that work but are deprecated, for a system check warning (empty when none)."""
        if mailconn.mailers is not None and options.get("EMAIL_BACKEND") is not None and not mailconn.has_mailers():
            return ["OPTIONS['EMAIL_BACKEND'] picks a mail backend by path, which Django 6.1 deprecates with the "
                    "EMAIL_* settings: move the mail settings to settings.MAILERS and name the entry in "
                    "OPTIONS['MAILER']."]
        return []

    def send(self, *, delivery: Delivery, action: DeferredAction, secret: str) -> str:
        context = self.context(delivery=delivery, action=action, secret=secret)
        context["link"] = confirm_link(secret)
        message_id = make_msgid(domain=urlsplit(app_settings.SITE_URL).hostname or None)
        subject = " ".join(render_to_string(TEMPLATES["subject"], context).split())
        message = EmailMultiAlternatives(
            subject=subject,
            body=render_to_string(TEMPLATES["text"], context),
            from_email=self.options.get("FROM_EMAIL") or app_settings.from_email,
            to=[delivery.recipient_value],
            # The language it was rendered in (the action's, docs/concepts.md#languages), for mail clients and
            # screen readers.
            headers={"X-Deferred-Action": str(action.pk), "Message-ID": message_id,
                     "Content-Language": translation.get_language() or settings.LANGUAGE_CODE},
        )
        message.attach_alternative(render_to_string(TEMPLATES["html"], context), "text/html")
        keep_alive = self.options.get("KEEP_ALIVE", mailconn.DEFAULT_KEEP_ALIVE)
        if not _is_seconds(keep_alive):  # the system check reports it; a worker does not run the checks
            keep_alive = mailconn.DEFAULT_KEEP_ALIVE
        try:
            with mailconn.kept_open(self.options.get("EMAIL_BACKEND"), keep_alive,
                                    mailer=self.options.get("MAILER")) as connection:
                connection.send_messages([message])
        except mailconn.MailerUnavailable as exc:  # the system check reports it at start-up; a worker does not run it
            raise ChannelConfigurationError(f"CHANNELS[{self.name!r}] {exc}") from exc
        except smtplib.SMTPRecipientsRefused as exc:
            if all(400 <= code < 500 for code, _msg in exc.recipients.values()):  # greylisting, mailbox busy
                raise TransientChannelError(_smtp_reason(exc), code="recipient-deferred") from exc
            raise PermanentChannelError(_smtp_reason(exc), code="recipient-refused") from exc
        except (smtplib.SMTPAuthenticationError, smtplib.SMTPSenderRefused) as exc:
            # Our own mail settings are wrong (password, sender): not the recipient's fault, so no action fails
            # for it; retried with backoff while an operator fixes the settings.
            logger.error("email channel: the mail server refused our credentials or sender: %s", exc.smtp_code)
            raise TransientChannelError(f"SMTP {exc.smtp_code}: mail settings refused by the server",
                                        code=str(exc.smtp_code)) from exc
        except smtplib.SMTPResponseException as exc:
            error = PermanentChannelError if 500 <= exc.smtp_code < 600 else TransientChannelError
            raise error(f"SMTP {exc.smtp_code}: {_text(exc.smtp_error)}", code=str(exc.smtp_code)) from exc
        except (TimeoutError, smtplib.SMTPException, ConnectionError, OSError) as exc:
            raise TransientChannelError(f"mail server unreachable: {exc.__class__.__name__}") from exc
        except Exception as exc:  # ESP backends (django-anymail) raise their own errors
            raise _from_esp(exc) from exc
        status = getattr(message, "anymail_status", None)  # set by django-anymail backends
        if status is not None and getattr(status, "message_id", None):
            return str(status.message_id)
        return message_id


def _is_seconds(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _smtp_reason(exc: smtplib.SMTPRecipientsRefused) -> str:
    # Servers often echo the address ("550 5.1.1 <bob@…> unknown"): ChannelError masks it before storing.
    reasons = [f"{code} {_text(msg)}" for code, msg in exc.recipients.values()]
    return "recipient refused: " + "; ".join(reasons)


def _from_esp(exc: Exception) -> Exception:
    """Map django-anymail's errors (duck-typed, anymail is optional) to ours."""
    name = type(exc).__name__
    if name == "AnymailRecipientsRefused":
        return PermanentChannelError(str(exc), code="recipient-refused")
    status = getattr(exc, "status_code", None)
    if name.startswith("Anymail") and status is not None and 400 <= status < 500 and status != 429:
        return PermanentChannelError(str(exc), code=str(status))
    if name.startswith("Anymail"):
        return TransientChannelError(str(exc), code=str(status) if status else None)
    return exc
