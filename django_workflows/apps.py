from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.module_loading import autodiscover_modules
from django.utils.translation import gettext_lazy as _


class DjangoWorkflowsConfig(AppConfig):
    name = "django_workflows"
    verbose_name = _("Workflows")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, schedules, tracking, yaml_files  # noqa: F401 - checks registers

        tracking.connect()
        # Definitions live in ``workflows.py`` of installed apps, like tasks.py.
        autodiscover_modules("workflows")
        # Then the YAML files (celery-director's format); never raises, the
        # system check reports their problems.
        yaml_files.load_definition_files()
        post_migrate.connect(
            yaml_files.sync_after_migrate,
            sender=self,
            dispatch_uid="django_workflows.sync_yaml_schedules",
        )
