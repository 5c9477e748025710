"""DeferredAction (a stored change waiting for its secret) and Delivery (one per channel)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils import timezone

from deferred_confirmation.pipeline.redaction import ACCOUNT_KEY_PARTS as ACCOUNT_KEY_PARTS
from deferred_confirmation.pipeline.redaction import ACCOUNT_MASK, mask_account, mask_account_number, mask_recipient
from deferred_confirmation.pipeline.redaction import NAME_KEY_PARTS as NAME_KEY_PARTS
from deferred_confirmation.pipeline.redaction import is_account_key as is_account_key
from deferred_confirmation.pipeline.states import OPEN, TERMINAL, DeliveryStatus, State

#: pipeline.crypto purpose of sealed recipients (Delivery.recipient_sealed) and payout accounts.
RECIPIENT_PURPOSE = "recipient"


class DeferredActionQuerySet(models.QuerySet):
    def open(self) -> DeferredActionQuerySet:
        return self.filter(state__in=OPEN)

    def for_object(self, obj: models.Model) -> DeferredActionQuerySet:
        return self.filter(content_type=ContentType.objects.get_for_model(obj), object_pk=str(obj.pk))

    def pending_for(self, obj: models.Model) -> int:
        """How many changes to ``obj`` are waiting for confirmation (docs/api.md#lifecycle-functions)."""
        return self.for_object(obj).open().filter(valid_until__gt=timezone.now()).count()


class DeferredAction(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    form_class = models.CharField(max_length=255, help_text="Dotted path of the DeferredForm.")
    form_data = models.JSONField(default=dict, help_text="The form's raw input; sensitive values sealed.")
    form_prefix = models.CharField(max_length=100, null=True, blank=True)
    content_type = models.ForeignKey(ContentType, null=True, blank=True, on_delete=models.CASCADE)
    object_pk = models.CharField(max_length=255, null=True, blank=True)
    target = GenericForeignKey("content_type", "object_pk")
    # Keyed hash of the target's values in the fields the form touches, taken at save(): the stale check.
    target_fingerprint = models.CharField(max_length=64, blank=True, default="")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+")
    description = models.TextField(blank=True, default="")
    channel_policy = models.CharField(max_length=8, default="any")  # any: one confirmed secret suffices
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    valid_until = models.DateTimeField()
    # Keyed hash of who saved it (the signed-in user, else the client address; "" if unknown): its resends and
    # redrives count in that requester's allowance of the recipient's SEND_LIMIT, as its first send did.
    requester_key = models.CharField(max_length=64, blank=True, default="")
    # The language active at save() (translation.get_language()): the worker renders the message in it, so a
    # change asked for in French is confirmed in French whatever the worker's LANGUAGE_CODE.  "": LANGUAGE_CODE.
    language = models.CharField(max_length=35, blank=True, default="")
    # The valid_until given to save(), else the first expiry: no resend or redrive moves the action's expiry past
    # it.  Null only on actions stored before it was always set.
    deadline = models.DateTimeField(null=True, blank=True,
                                    help_text="The latest expiry: valid_until given to save(), else the first one.")
    redrives = models.PositiveIntegerField(
        default=0, help_text="Times the outbox sweep re-queued this action; past MAX_REDRIVES it fails.")
    # A create confirmed from a browser session other than the one that saved it (a sign-up takeover):
    # sealed password fields are not applied; the account gets an unusable password.
    confirmed_elsewhere = models.BooleanField(
        default=False, help_text="Confirmed from another browser session: sealed passwords are not applied.")
    confirmed_at = models.DateTimeField(null=True, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    failure_reason = models.TextField(blank=True, default="")

    objects = DeferredActionQuerySet.as_manager()

    class Meta:
        app_label = "confirmation"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["state", "valid_until"], name="confirmation_state_valid"),
            models.Index(fields=["state", "updated_at"], name="confirmation_state_updated"),
            models.Index(fields=["content_type", "object_pk"], name="confirmation_target"),
        ]

    def __str__(self) -> str:
        return f"{self.description or self.form_class.rsplit('.', 1)[-1]} ({self.state})"

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def is_open(self) -> bool:
        return self.state in OPEN

    def has_expired(self, now=None) -> bool:
        return (now or timezone.now()) >= self.valid_until

    @property
    def model_class(self) -> type[models.Model] | None:
        if self.content_type_id:
            return self.content_type.model_class()
        from deferred_confirmation.pipeline.paths import import_path

        try:
            return import_path(self.form_class)._meta.model
        except Exception:  # a form module that no longer imports (renamed, a syntax error): no model to name
            return None


class Delivery(models.Model):
    action = models.ForeignKey(DeferredAction, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=32)
    # An address, a phone number (E.164), or for letters and bank accounts a JSON object; PII, purged.  For a
    # sensitive recipient (a bank account) only a masked form (last 4) is kept here, the value in recipient_sealed.
    recipient = models.TextField()
    recipient_sealed = models.TextField(
        blank=True, default="", help_text="A sensitive recipient, sealed (pipeline.crypto); empty otherwise.")
    secret_digest = models.CharField(max_length=64, blank=True, default="", db_index=True)
    generation = models.PositiveIntegerField(default=0, help_text="Bumped by resend: older secrets die.")
    attempts = models.PositiveIntegerField(default=0, help_text="Wrong secrets entered.")
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.QUEUED)
    status_detail = models.TextField(blank=True, default="", help_text="Provider's reason on failure.")
    provider_ref = models.CharField(max_length=255, blank=True, default="")
    expires_at = models.DateTimeField(null=True, blank=True, help_text="When this channel's secret dies.")
    send_attempts = models.PositiveIntegerField(
        default=0, help_text="Calls to the provider for this generation (>0: an earlier call may have reached it).")
    sending_until = models.DateTimeField(
        null=True, blank=True, help_text="A send task holds this delivery until then: one sender at a time.")
    sent_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "confirmation"
        verbose_name_plural = "deliveries"
        indexes = [models.Index(fields=["channel", "provider_ref"], name="confirmation_provider_ref")]
        constraints = [models.UniqueConstraint(fields=["action", "channel"], name="confirmation_one_per_channel")]

    def __str__(self) -> str:
        return f"{self.channel} delivery of {self.action_id} ({self.status})"

    @property
    def masked_recipient(self) -> str:
        return mask_recipient(self.recipient)

    @property
    def recipient_value(self) -> str:
        """The full recipient, for the sender and the send limits: the sealed copy opened, if there is one."""
        return open_recipient(self.recipient, self.recipient_sealed)

    @property
    def idempotency_key(self) -> str:
        """One key per delivery and generation: a provider that sees it twice sends once.  The action's
        UUID makes it unique across sites (staging and production sharing a provider account)."""
        return f"dc-{self.action_id}-{self.pk}-{self.generation}"

    def has_expired(self, now=None) -> bool:
        return self.expires_at is not None and (now or timezone.now()) >= self.expires_at


class SendRecord(models.Model):
    """One secret sent to one recipient: the basis of per-recipient send limits and resend cooldowns.

    The recipient is kept only as a keyed hash, so these rows hold no personal data."""

    channel = models.CharField(max_length=32)
    recipient_key = models.CharField(max_length=64)
    # Keyed hash of who asked (the signed-in user, else the client address; "" if unknown): each requester has
    # their own allowance of a recipient's SEND_LIMIT.
    sender_key = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        app_label = "confirmation"
        indexes = [models.Index(fields=["channel", "recipient_key", "created_at"], name="confirmation_sends")]

    def __str__(self) -> str:
        return f"{self.channel} send at {self.created_at:%Y-%m-%d %H:%M:%S}"


class Payout(models.Model):
    """A micro-deposit to make, written by the default (ledger) payout backend for the operator to export.

    The amounts and the full bank account are sealed (deferred_confirmation.pipeline.crypto): readable by ``manage.py
    export_payouts`` with the site's key, not from a database dump; ``account`` holds the account masked (last 4), for
    display."""

    class Status(models.TextChoices):
        INITIATED = "initiated", "initiated"
        EXPORTED = "exported", "exported"
        SETTLED = "settled", "settled"
        FAILED = "failed", "failed"

    delivery = models.ForeignKey(Delivery, null=True, blank=True, on_delete=models.SET_NULL, related_name="payouts")
    idempotency_key = models.CharField(max_length=100, unique=True)
    account = models.TextField(help_text="Bank account as JSON, account numbers masked (last 4).")
    account_sealed = models.TextField(blank=True, default="", help_text="The bank account as JSON, sealed.")
    amounts_sealed = models.TextField()
    currency = models.CharField(max_length=3, default="USD")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.INITIATED)
    created_at = models.DateTimeField(default=timezone.now)
    exported_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "confirmation"

    def __str__(self) -> str:
        return f"payout {self.pk} ({self.status})"

    @property
    def account_value(self) -> str:
        """The full bank account (JSON), for the export: the sealed copy opened, if there is one."""
        return open_recipient(self.account, self.account_sealed)


# Masking lives in deferred_confirmation.pipeline.redaction; these names stay importable from here (migration 0006
# and projects import them).
MASK = ACCOUNT_MASK
mask_number = mask_account_number

def open_recipient(clear: str, sealed: str) -> str:
    """The full value of a recipient stored as :func:`seal_recipient` left it (``sealed`` opened), or ``clear``
    when nothing was sealed; raises ``deferred_confirmation.pipeline.crypto.InvalidToken`` if it cannot be opened with
    SECRET_KEY or its fallbacks."""
    if not sealed:
        return clear
    from deferred_confirmation.pipeline import crypto

    return crypto.open_sealed(RECIPIENT_PURPOSE, sealed)


def seal_recipient(value: str) -> tuple[str, str]:
    """``(masked, sealed)`` of a sensitive recipient: what may be stored in clear (:func:`mask_account`) and the
    full value sealed (deferred_confirmation.pipeline.crypto, purpose :data:`RECIPIENT_PURPOSE`), for Delivery.recipient
    and Delivery.recipient_sealed, or Payout.account and Payout.account_sealed."""
    from deferred_confirmation.pipeline import crypto

    return mask_account(value), crypto.seal(RECIPIENT_PURPOSE, value)
