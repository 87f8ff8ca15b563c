"""Benchmark settings: the tests' (example project + test app), as a production
site would run them: without the tests' small guardrails, and with DEBUG off
(under DEBUG, Django keeps a log of every query in the worker)."""

from tests.settings import *  # noqa: F403

DEBUG = False
DJANGO_WORKFLOWS: dict = {}
