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
    path("admin/", admin.site.urls),
    path("confirm/", include("django_integration.urls")),
]
