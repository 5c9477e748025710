from django.apps import AppConfig


class ConfirmationConfig(AppConfig):
    name = "deferred_confirmation.django_integration"
    label = "confirmation"
    verbose_name = "Deferred confirmation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # checks: registers the system check.  tasks: registers the shared tasks in every process, not only
        # in workers (where autodiscovery runs), so dispatch finds them by name and eager mode runs them.
        from deferred_confirmation.django_integration import checks, logs, tasks  # noqa: F401

        logs.install()  # link tokens out of django.request / django.security.csrf records
