"""Benchmark settings with ``STORE_CELERY_RESULTS`` off (the hop row's second worker)."""

from benchmarks.settings import *  # noqa: F403

DJANGO_WORKFLOWS = {"STORE_CELERY_RESULTS": False}
