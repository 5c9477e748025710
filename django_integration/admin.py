"""Admin for operators: recipients masked; digests and stored form data never shown.

Actions go through the same lifecycle functions as the workers.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from django_integration.models import DeferredAction, Delivery
from pipeline import lifecycle


class DeliveryInline(admin.TabularInline):
    model = Delivery
    extra = 0
    can_delete = False
    fields = ["channel", "masked_recipient", "status", "status_detail", "provider_ref", "attempts", "generation",
              "sent_at", "confirmed_at"]
    readonly_fields = fields
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="recipient")
    def masked_recipient(self, obj: Delivery) -> str:
        return obj.masked_recipient


@admin.register(DeferredAction)
class DeferredActionAdmin(admin.ModelAdmin):
    list_display = ["id", "state", "short_form", "recipients", "user", "created_at", "valid_until"]
    list_filter = ["state", "deliveries__channel", "created_at", "valid_until"]
    search_fields = ["=id", "user__username", "user__email", "description"]
    date_hierarchy = "created_at"
    inlines = [DeliveryInline]
    fields = ["id", "state", "form_class", "description", "user", "content_type", "object_pk", "channel_policy",
              "created_at", "valid_until", "confirmed_at", "applied_at", "failure_reason"]
    readonly_fields = fields
    actions = ["resend_secrets", "cancel_actions", "expire_now"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("user").prefetch_related("deliveries").distinct()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # read-only: state changes only through the actions below

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("confirmation.change_deferredaction")

    @admin.display(description="form")
    def short_form(self, obj: DeferredAction) -> str:
        return obj.form_class.rsplit(".", 1)[-1]

    @admin.display(description="recipients")
    def recipients(self, obj: DeferredAction) -> str:
        return ", ".join(f"{d.channel}: {d.masked_recipient}" for d in obj.deliveries.all())

    def _report(self, request: HttpRequest, verb: str, done: int, total: int) -> None:
        level = messages.SUCCESS if done else messages.WARNING
        self.message_user(request, f"{verb} {done} of {total} selected actions.", level)

    @admin.action(description="Resend secrets (old ones stop working)", permissions=["operate"])
    def resend_secrets(self, request: HttpRequest, queryset: QuerySet) -> None:
        done = sum(bool(lifecycle.resend(action)) for action in queryset)
        self._report(request, "Resent", done, queryset.count())

    @admin.action(description="Cancel", permissions=["operate"])
    def cancel_actions(self, request: HttpRequest, queryset: QuerySet) -> None:
        done = sum(lifecycle.cancel(action) for action in queryset)
        self._report(request, "Cancelled", done, queryset.count())

    @admin.action(description="Expire now", permissions=["operate"])
    def expire_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        done = sum(lifecycle.expire_now(action) for action in queryset)
        self._report(request, "Expired", done, queryset.count())
