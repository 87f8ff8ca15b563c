from django.apps import AppConfig


class TestAppConfig(AppConfig):
    default = True  # "tests.testapp" in INSTALLED_APPS: this one, not the one below
    name = "tests.testapp"
    label = "testapp"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import receivers  # noqa: F401


class WithoutReceiversConfig(TestAppConfig):
    """The test app without its receivers (benchmarks.settings): they are the
    tests' instruments (a file looked at on every signal, a line written for
    every task), not a project's code."""

    default = False

    def ready(self) -> None:
        pass
