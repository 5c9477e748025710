"""Raw input with NUL characters that validation lets through (PostgreSQL's jsonb cannot hold U+0000)."""

from django import forms

from deferred_confirmation.django_integration.forms import DeferredForm
from tests.testapp.models import Profile


class AgreeForm(DeferredForm):
    recipient_field = "email"
    agree = forms.BooleanField()  # a checkbox: any non-empty value is "checked", NUL or not

    class Meta:
        model = Profile
        fields = ["email"]


def test_a_nul_byte_in_a_tolerated_value_is_stored_and_applied(flow):
    action, token = flow.request(AgreeForm, {"email": "nul@example.org", "agree": "on\x00"},
                                 description="desc with \x00 inside")
    action.refresh_from_db()
    assert "\x00" not in action.description
    assert flow.confirm(token).status == "confirmed"
    action.refresh_from_db()
    assert action.state == "applied", action.failure_reason
    assert Profile.objects.get().email == "nul@example.org"
