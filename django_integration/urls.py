from django.urls import path

from deferred_confirmation.django_integration import views

app_name = "confirmation"

urlpatterns = [
    path("status/<uuid:action_id>/", views.status, name="status"),
    path("code/<uuid:action_id>/", views.code, name="code"),
    path("deposits/<uuid:action_id>/", views.deposits, name="deposits"),
    path("resend/<uuid:action_id>/", views.resend, name="resend"),
    path("webhooks/twilio/status/", views.twilio_status, name="twilio_status"),
    path("<str:token>/", views.link, name="link"),
]
