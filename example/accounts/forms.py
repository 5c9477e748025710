"""The demo's deferred forms: an email change (edit) and a sign-up (create)."""

from django import forms
from django.contrib.auth import get_user_model, password_validation

from django_integration.forms import DeferredForm

User = get_user_model()


def _email_taken(email: str, exclude_pk=None) -> bool:
    return User.objects.filter(email__iexact=email).exclude(pk=exclude_pk).exists()


class EmailChangeForm(DeferredForm):
    """The new address is applied only once it is confirmed; uniqueness is checked again at that moment."""

    recipient_field = "email"
    email = forms.EmailField(label="New email address", max_length=254)

    class Meta:
        model = User
        fields = ["email"]

    def clean_email(self):
        email = self.cleaned_data["email"].strip().lower()
        if _email_taken(email, exclude_pk=self.instance.pk):
            raise forms.ValidationError("This email address is already in use.")
        return email


class SignUpForm(DeferredForm):
    """The account is created on confirmation; the password is sealed at rest until then."""

    recipient_field = "email"
    email = forms.EmailField(max_length=254)
    password = forms.CharField(widget=forms.PasswordInput, strip=False)

    class Meta:
        model = User
        fields = ["username", "email"]

    def clean_email(self):
        email = self.cleaned_data["email"].strip().lower()
        if _email_taken(email):
            raise forms.ValidationError("This email address is already in use.")
        return email

    def clean_password(self):
        password = self.cleaned_data["password"]
        password_validation.validate_password(password, User(username=self.cleaned_data.get("username")))
        return password

    def save_confirmed(self):
        user = super(DeferredForm, self).save(commit=False)
        user.set_password(self.cleaned_data["password"])
        user.save()
        return user
