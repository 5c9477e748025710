from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from example.accounts import views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(template_name="accounts/form.html",
                                                extra_context={"title": "Log in"}), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/email/", views.change_email, name="change_email"),
    path("account/phone/", views.change_phone, name="change_phone"),
    path("account/address/", views.change_address, name="change_address"),
    path("account/bank/", views.change_bank_account, name="change_bank_account"),
    path("signup/", views.sign_up, name="sign_up"),
    # Where an account without a usable password gets one (a sign-up confirmed from another browser).
    path("password/reset/", auth_views.PasswordResetView.as_view(), name="password_reset"),
    path("password/reset/sent/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path("password/reset/<uidb64>/<token>/", auth_views.PasswordResetConfirmView.as_view(),
         name="password_reset_confirm"),
    path("password/reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path("admin/", admin.site.urls),
    path("confirm/", include("deferred_confirmation.django_integration.urls")),
]
