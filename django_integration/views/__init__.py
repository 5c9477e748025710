"""Confirmation pages (DESIGN §5); each a thin caller of one lifecycle function."""

from django_integration.views.entry import code, deposits
from django_integration.views.link import link
from django_integration.views.status import resend, status
from django_integration.views.webhooks import twilio_status

__all__ = ["code", "deposits", "link", "resend", "status", "twilio_status"]
