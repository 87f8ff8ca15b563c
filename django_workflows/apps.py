from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules
from django.utils.translation import gettext_lazy as _


class DjangoWorkflowsConfig(AppConfig):
    name = "django_workflows"
    verbose_name = _("Workflows")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import schedules, tracking  # noqa: F401 - schedules connects its receiver

        tracking.connect()
        # Definitions live in ``workflows.py`` of installed apps, like tasks.py.
        autodiscover_modules("workflows")
