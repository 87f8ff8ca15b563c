"""Benchmark settings: the tests' (example project + test app), without their small guardrails."""

from tests.settings import *  # noqa: F403

DJANGO_WORKFLOWS: dict = {}
