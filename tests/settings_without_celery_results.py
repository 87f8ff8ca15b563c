"""The tests' settings with ``STORE_CELERY_RESULTS`` off, for a worker of its own."""

from tests.settings import *  # noqa: F403
from tests.settings import DJANGO_WORKFLOWS

DJANGO_WORKFLOWS = {**DJANGO_WORKFLOWS, "STORE_CELERY_RESULTS": False}
