"""Confirmation pages (docs/concepts.md#confirmation-pages); each a thin caller of one lifecycle function."""

from deferred_confirmation.django_integration.views.entry import code, deposits
from deferred_confirmation.django_integration.views.link import link
from deferred_confirmation.django_integration.views.status import resend, status
from deferred_confirmation.django_integration.views.webhooks import twilio_status

__all__ = ["code", "deposits", "link", "resend", "status", "twilio_status"]
