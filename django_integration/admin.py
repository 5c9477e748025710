"""Admin for operators: read-only, recipients masked, digests never shown, stored form data shown redacted.

- ``DeferredAction``: filters (state, channel, created, valid until, overdue = open but past ``valid_until``),
  search by exact id (a UUID) or by user (username, email); the detail shows the stored form data redacted
  (sealed values, the form's sensitive fields and sensitive-looking fields as ``••••``, recipients and other
  personal data masked) and the deliveries with their provider status.  Actions "Resend secrets", "Cancel" and
  "Expire now" go through the same lifecycle functions as the workers, need the change permission on
  deferred actions, and report how many succeeded and why the others did not.
- ``Delivery`` and ``Payout``: read-only lists; recipients and bank accounts masked, payout amounts never
  shown (they stay sealed; only ``manage.py export_payouts`` opens them).

Nothing here can edit or delete a row: state changes only through the actions, deletion only by the purge.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from deferred_confirmation.django_integration.models import (
    MASK,
    DeferredAction,
    Delivery,
    Payout,
    is_account_key,
    mask_recipient,
)
from deferred_confirmation.pipeline import crypto, lifecycle
from deferred_confirmation.pipeline.formdata import NUL_SAFE, SEALED
from deferred_confirmation.pipeline.lifecycle import maintenance
from deferred_confirmation.pipeline.paths import import_path

REDACTED = "••••"
# Parts of a field name whose value is never shown, whatever the form says.
SENSITIVE_NAME_PARTS = ("password", "passwd", "iban", "account", "routing", "card", "secret", "token", "pin",
                        "cvv", "cvc")

_EMAIL_RE = re.compile(r"[^\s@<>\"'(),;:\[\]]+@[^\s@<>\"'(),;:\[\]]+\.[A-Za-z]{2,}")
_IBAN_RE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b", re.IGNORECASE)
_NUMBER_RE = re.compile(r"\+?\d(?:[ ().-]{0,2}\d){6,}")  # phone, account or card numbers: 7+ digits
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}\b")


# --- masking ----------------------------------------------------------------------------------------------
def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def recipient_values(deliveries: Iterable[Delivery]) -> set[str]:
    """Every recipient text, and every text inside a JSON recipient (an address's lines, a bank account's
    holder and numbers): values the admin must never show in clear.  A sealed recipient is opened for this
    (only to find it in free texts and mask it there), never shown."""
    values: set[str] = set()
    for delivery in deliveries:
        try:
            recipient = (delivery.recipient_value or "").strip()
        except crypto.InvalidToken:  # sealed under a key no longer configured: the masked form is all we have
            recipient = (delivery.recipient or "").strip()
        if not recipient:
            continue
        values.add(recipient)
        if recipient.startswith("{"):
            try:
                data = json.loads(recipient)
            except ValueError:
                continue
            if isinstance(data, dict):
                values |= {str(v).strip() for v in data.values() if isinstance(v, str | int) and str(v).strip()}
    return values


def mask_text(text: str, known: Iterable[str] = ()) -> str:
    """``text`` with personal data masked: the ``known`` recipient values, email addresses, IBANs and long
    numbers (phones, accounts, cards).  Dates stay readable."""
    if not text:
        return text
    for value in sorted(known, key=len, reverse=True):
        if len(value) >= 4 and value.lower() in text.lower():
            text = re.sub(re.escape(value), lambda m: mask_recipient(m.group()), text, flags=re.IGNORECASE)
    text = _EMAIL_RE.sub(lambda m: mask_recipient(m.group()) if "***@" not in m.group() else m.group(), text)
    text = _IBAN_RE.sub(lambda m: mask_recipient(m.group().replace(" ", "")), text)
    return _NUMBER_RE.sub(_mask_number, text)


def _mask_number(match: re.Match) -> str:
    found = match.group()
    if _DATE_RE.match(found):  # 2025-01-31 (and a time after it): not personal data
        return found
    return mask_recipient(re.sub(r"[^\d+]", "", found))


def _is_known(value: str, known: set[str]) -> bool:
    """Whether ``value`` is (or is a way of typing) one of the recipients: the same text, or a phone number
    typed differently (``(202) 555-0123`` for ``+12025550123``)."""
    lowered = value.strip().lower()
    if any(lowered == k.lower() for k in known):
        return True
    digits = _digits(value)
    return len(digits) >= 6 and any(len(_digits(k)) >= 6 and (_digits(k).endswith(digits) or
                                                               digits.endswith(_digits(k))) for k in known)


def _sensitive_names(form_class_path: str) -> set[str]:
    """The form's ``sensitive_fields`` and its ``PasswordInput`` fields, if the form can be imported."""
    try:
        form_class = import_path(form_class_path)
    except Exception:  # a form since removed or renamed: the name patterns and sealing still apply
        return set()
    names = set(getattr(form_class, "sensitive_fields", ()) or ())
    names |= {name for name, field in getattr(form_class, "base_fields", {}).items()
              if isinstance(field.widget, forms.PasswordInput)}
    return names


def _field_name(key: str, prefix: str | None) -> str:
    return key[len(prefix) + 1:] if prefix and key.startswith(prefix + "-") else key


def is_sensitive_key(key: str, sensitive: set[str], prefix: str | None = None) -> bool:
    name = _field_name(key, prefix)
    if any(name == s or name.startswith((s + "_", s + "-")) for s in sensitive):
        return True
    lowered = key.lower()
    return any(part in lowered for part in SENSITIVE_NAME_PARTS)


def _shown_value(value: Any, known: set[str]) -> str:
    if isinstance(value, dict) and set(value) == {SEALED}:
        return REDACTED  # never the ciphertext either
    if isinstance(value, dict) and set(value) == {NUL_SAFE}:
        try:
            decoded = base64.b64decode(value[NUL_SAFE], validate=True).decode("utf-8", "replace")
            value = decoded.replace("\x00", "\ufffd")
        except (ValueError, TypeError):
            return "[unreadable]"
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        if _contains_sealed(value):
            return REDACTED
        text = json.dumps(value, ensure_ascii=False)
    if _is_known(text, known):
        return mask_recipient(text.strip())
    return mask_text(text, known)


def _contains_sealed(value: Any) -> bool:
    if isinstance(value, dict):
        return SEALED in value or any(_contains_sealed(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_sealed(v) for v in value)
    return False


def redacted_form_data(action: DeferredAction, deliveries: Iterable[Delivery] | None = None) -> list[tuple[str, str]]:
    """(key, shown values) for each stored form key: sealed values and sensitive fields as ``••••``, the
    rest with personal data masked."""
    known = recipient_values(action.deliveries.all() if deliveries is None else deliveries)
    sensitive = _sensitive_names(action.form_class)
    stored = action.form_data if isinstance(action.form_data, dict) else {"": [action.form_data]}
    rows = []
    for key, values in stored.items():
        values = values if isinstance(values, list) else [values]
        if is_sensitive_key(str(key), sensitive, action.form_prefix):
            shown = [REDACTED for _ in values] or [REDACTED]
        else:
            shown = [_shown_value(v, known) for v in values]
        rows.append((str(key), ", ".join(shown)))
    return rows


def _action_link(action_id: Any) -> str:
    if action_id is None:
        return "-"
    url = reverse("admin:confirmation_deferredaction_change", args=[action_id])
    return format_html('<a href="{}">{}</a>', url, action_id)


# --- deferred actions -------------------------------------------------------------------------------------
class OverdueFilter(admin.SimpleListFilter):
    """Open actions past ``valid_until`` (expired, but not yet swept by ``confirmation.expire_stale``)."""

    title = "overdue (open, past valid until)"
    parameter_name = "overdue"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "Yes: expired, not yet swept"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        stale = maintenance.stale_actions(timezone.now()).values("pk")
        if self.value() == "yes":
            return queryset.filter(pk__in=stale)
        if self.value() == "no":
            return queryset.exclude(pk__in=stale)
        return None


class DeliveryInline(admin.TabularInline):
    model = Delivery
    extra = 0
    can_delete = False
    fields = ["channel", "masked_recipient", "status", "masked_status_detail", "provider_ref", "attempts",
              "send_attempts", "generation", "sent_at", "expires_at", "confirmed_at"]
    readonly_fields = fields
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="recipient")
    def masked_recipient(self, obj: Delivery) -> str:
        return obj.masked_recipient

    @admin.display(description="status detail")
    def masked_status_detail(self, obj: Delivery) -> str:
        return mask_text(obj.status_detail, recipient_values([obj]))


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # deletion is the purge's job (it also removes what channels stored elsewhere)


@admin.register(DeferredAction)
class DeferredActionAdmin(ReadOnlyAdmin):
    list_display = ["id", "state", "short_form", "recipients", "user", "created_at", "valid_until"]
    list_filter = ["state", "deliveries__channel", "created_at", "valid_until", OverdueFilter]
    search_fields = ["user__username", "user__email"]  # and the exact id: get_search_results
    date_hierarchy = "created_at"
    inlines = [DeliveryInline]
    fields = ["id", "state", "form_class", "description", "user", "content_type", "object_pk", "channel_policy",
              "recipients", "form_data_redacted", "created_at", "valid_until", "confirmed_at", "applied_at",
              "failure_reason"]
    readonly_fields = fields
    actions = ["resend_secrets", "cancel_actions", "expire_now"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("user").prefetch_related("deliveries")

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None):
        """The action with its free texts masked for display: the page's title and breadcrumbs show
        ``str(action)``, which is its description.  Never saved: nothing here can change an action."""
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            known = recipient_values(obj.deliveries.all())
            obj.description = mask_text(obj.description, known)
            obj.failure_reason = mask_text(obj.failure_reason, known)
        return obj

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        """An action id (a UUID, in any of its spellings) finds that action by primary key; anything else
        searches the user's username and email."""
        try:
            action_id = uuid.UUID(search_term.strip())
        except ValueError:
            return super().get_search_results(request, queryset, search_term)
        return queryset.filter(pk=action_id), False

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("confirmation.change_deferredaction")

    @admin.display(description="form")
    def short_form(self, obj: DeferredAction) -> str:
        return obj.form_class.rsplit(".", 1)[-1]

    @admin.display(description="recipients")
    def recipients(self, obj: DeferredAction) -> str:
        return ", ".join(f"{d.channel}: {d.masked_recipient}" for d in obj.deliveries.all())

    @admin.display(description="form data (redacted)")
    def form_data_redacted(self, obj: DeferredAction) -> str:
        rows = redacted_form_data(obj)
        if not rows:
            return "-"
        body = format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows)
        return format_html('<table class="confirmation-form-data"><tbody>{}</tbody></table>', body)

    # --- actions: the workers' lifecycle functions, one action at a time ------------------------------------
    @admin.action(description="Resend secrets (old ones stop working)", permissions=["operate"])
    def resend_secrets(self, request: HttpRequest, queryset: QuerySet) -> None:
        refused = []
        actions = list(queryset)
        for action in actions:
            result = lifecycle.resend(action)
            if not result:
                if result.refusal is not None:
                    reason = f"refused ({result.refusal.reason}): {result.refusal.message}"
                else:
                    reason = _why_not(action) or "nothing to resend (no delivery waiting for its secret)"
                refused.append((action, reason))
        self._report(request, "Resent", "resent", actions, refused)

    @admin.action(description="Cancel", permissions=["operate"])
    def cancel_actions(self, request: HttpRequest, queryset: QuerySet) -> None:
        actions = list(queryset)
        refused = [(action, _why_not(action, expired_ok=True) or "not cancelled")
                   for action in actions if not lifecycle.cancel(action)]
        self._report(request, "Cancelled", "cancelled", actions, refused)

    @admin.action(description="Expire now", permissions=["operate"])
    def expire_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        actions = list(queryset)
        refused = [(action, _why_not(action, expired_ok=True) or "not expired")
                   for action in actions if not lifecycle.expire_now(action)]
        self._report(request, "Expired", "expired", actions, refused)

    def _report(self, request: HttpRequest, verb: str, participle: str, actions: list[DeferredAction],
                refused: list[tuple[DeferredAction, str]]) -> None:
        total, done = len(actions), len(actions) - len(refused)
        if done:
            self.message_user(request, f"{verb} {done} of {total} selected action{'s' if total != 1 else ''}.",
                              messages.SUCCESS)
        if refused:
            by_reason: dict[str, list[str]] = defaultdict(list)
            for action, reason in refused:
                by_reason[reason].append(str(action.pk)[:8])
            details = "; ".join(
                f"{len(ids)} {reason} [{', '.join(ids[:5])}{', …' if len(ids) > 5 else ''}]"
                for reason, ids in by_reason.items())
            self.message_user(request, f"Not {participle}: {len(refused)} of {total}: {details}", messages.WARNING)


def _why_not(action: DeferredAction, expired_ok: bool = False) -> str:
    """Why an operation refused ``action``, from its state now."""
    current = DeferredAction.objects.filter(pk=action.pk).first()
    if current is None:
        return "gone (purged meanwhile)"
    if not current.is_open:
        return f"no longer open ({current.state})"
    if not expired_ok and current.has_expired():
        return "past its valid until (expire it instead)"
    return ""


# --- deliveries and payouts -------------------------------------------------------------------------------
@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ["id", "action_link", "channel", "masked_recipient", "status", "masked_status_detail",
                    "provider_ref", "attempts", "send_attempts", "sent_at", "expires_at"]
    list_filter = ["channel", "status"]
    search_fields = ["=provider_ref"]  # and the action's id: get_search_results
    fields = ["action_link", "channel", "masked_recipient", "generation", "status", "masked_status_detail",
              "provider_ref", "attempts", "send_attempts", "sent_at", "expires_at", "confirmed_at", "created_at",
              "updated_at"]
    readonly_fields = fields

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        try:
            action_id = uuid.UUID(search_term.strip())
        except ValueError:
            return super().get_search_results(request, queryset, search_term)
        return queryset.filter(action_id=action_id), False

    @admin.display(description="action")
    def action_link(self, obj: Delivery) -> str:
        return _action_link(obj.action_id)

    @admin.display(description="recipient")
    def masked_recipient(self, obj: Delivery) -> str:
        return obj.masked_recipient

    @admin.display(description="status detail")
    def masked_status_detail(self, obj: Delivery) -> str:
        return mask_text(obj.status_detail, recipient_values([obj]))


@admin.register(Payout)
class PayoutAdmin(ReadOnlyAdmin):
    """The ledger's micro-deposits: never the amounts (sealed), the bank account masked."""

    list_display = ["id", "action_link", "masked_account", "currency", "status", "created_at", "exported_at"]
    list_filter = ["status", "currency"]
    fields = ["action_link", "masked_account", "currency", "status", "created_at", "exported_at"]
    readonly_fields = fields
    list_select_related = ["delivery"]

    @admin.display(description="action")
    def action_link(self, obj: Payout) -> str:
        return _action_link(obj.delivery.action_id if obj.delivery else None)

    @admin.display(description="account")
    def masked_account(self, obj: Payout) -> str:
        """The account's keys and country, and its numbers by their last 4 (as stored): enough to match a
        payout with a bank statement line, never the number."""
        shown = mask_recipient(obj.account)
        try:
            data = json.loads(obj.account) if obj.account.startswith("{") else None
        except ValueError:
            data = None
        if isinstance(data, dict):
            last4 = [f"{key} {value}" for key, value in sorted(data.items())
                     if is_account_key(key) and isinstance(value, str) and value.startswith(MASK)]
            shown = " ".join([shown, *last4])
        return shown
