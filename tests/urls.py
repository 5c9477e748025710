from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("confirm/", include("deferred_confirmation.django_integration.urls")),
]
