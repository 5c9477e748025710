from django.apps import AppConfig


class ConfirmationConfig(AppConfig):
    name = "django_integration"
    label = "confirmation"
    verbose_name = "Deferred confirmation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Register the shared tasks in every process, not only in workers (where autodiscovery runs), so
        # dispatch finds them by name and CELERY_TASK_ALWAYS_EAGER runs them in place.
        from django_integration import (
            checks,  # noqa: F401  (registers the system check)
            tasks,  # noqa: F401
        )
