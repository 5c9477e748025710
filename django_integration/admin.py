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

import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from deferred_confirmation.django_integration.models import DeferredAction, Delivery, Payout
from deferred_confirmation.pipeline import lifecycle
from deferred_confirmation.pipeline.lifecycle import maintenance
from deferred_confirmation.pipeline.redaction import (
    ACCOUNT_MASK,
    is_account_key,
    known_values,
    mask_recipient,
    parse_structured,
    redact_contacts,
    redacted_form_data,
)


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


class NoEditingMixin:
    """Nothing can be added, changed or deleted here: state changes only through the admin actions (the
    lifecycle functions), deletion only by the purge (which also removes what channels stored elsewhere)."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class MaskedDeliveryMixin:
    """A delivery's recipient and status detail as operators may see them (pipeline.redaction)."""

    @admin.display(description="recipient")
    def masked_recipient(self, obj: Delivery) -> str:
        return obj.masked_recipient

    @admin.display(description="status detail")
    def masked_status_detail(self, obj: Delivery) -> str:
        return redact_contacts(obj.status_detail, known_values([obj]))


class DeliveryInline(NoEditingMixin, MaskedDeliveryMixin, admin.TabularInline):
    model = Delivery
    extra = 0
    can_delete = False
    fields = ["channel", "masked_recipient", "status", "masked_status_detail", "provider_ref", "attempts",
              "send_attempts", "generation", "sent_at", "expires_at", "confirmed_at"]
    readonly_fields = fields
    show_change_link = False


class ActionIdSearchMixin:
    """A search for an action id (a UUID, in any of its spellings) finds rows of that action by ``action_id_field``;
    anything else searches ``search_fields``."""

    action_id_field = "action_id"

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        try:
            action_id = uuid.UUID(search_term.strip())
        except ValueError:
            return super().get_search_results(request, queryset, search_term)
        return queryset.filter(**{self.action_id_field: action_id}), False


class ReadOnlyAdmin(NoEditingMixin, admin.ModelAdmin):
    pass


@admin.register(DeferredAction)
class DeferredActionAdmin(ActionIdSearchMixin, ReadOnlyAdmin):
    list_display = ["id", "state", "short_form", "recipients", "user", "created_at", "valid_until"]
    list_filter = ["state", "deliveries__channel", "created_at", "valid_until", OverdueFilter]
    search_fields = ["user__username", "user__email"]  # and the exact id: ActionIdSearchMixin
    action_id_field = "pk"
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
            known = known_values(obj.deliveries.all())
            obj.description = redact_contacts(obj.description, known)
            obj.failure_reason = redact_contacts(obj.failure_reason, known)
        return obj

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
        self._end_each(request, queryset, lifecycle.cancel, "Cancelled", "cancelled")

    @admin.action(description="Expire now", permissions=["operate"])
    def expire_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._end_each(request, queryset, lifecycle.expire_now, "Expired", "expired")

    def _end_each(self, request: HttpRequest, queryset: QuerySet, end: Callable[[DeferredAction], bool], verb: str,
                  participle: str) -> None:
        """``end`` (cancel, expire) each selected action; an expired one may still be ended."""
        actions = list(queryset)
        refused = [(action, _why_not(action, expired_ok=True) or f"not {participle}")
                   for action in actions if not end(action)]
        self._report(request, verb, participle, actions, refused)

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
class DeliveryAdmin(ActionIdSearchMixin, MaskedDeliveryMixin, ReadOnlyAdmin):
    list_display = ["id", "action_link", "channel", "masked_recipient", "status", "masked_status_detail",
                    "provider_ref", "attempts", "send_attempts", "sent_at", "expires_at"]
    list_filter = ["channel", "status"]
    search_fields = ["=provider_ref"]  # and the action's id: ActionIdSearchMixin
    fields = ["action_link", "channel", "masked_recipient", "generation", "status", "masked_status_detail",
              "provider_ref", "attempts", "send_attempts", "sent_at", "expires_at", "confirmed_at", "created_at",
              "updated_at"]
    readonly_fields = fields

    @admin.display(description="action")
    def action_link(self, obj: Delivery) -> str:
        return _action_link(obj.action_id)

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
        data = parse_structured(obj.account)
        if data is not None:
            last4 = [f"{key} {value}" for key, value in sorted(data.items())
                     if is_account_key(key) and isinstance(value, str) and value.startswith(ACCOUNT_MASK)]
            shown = " ".join([shown, *last4])
        return shown
