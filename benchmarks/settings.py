"""Benchmark settings: the tests' (example project + test app), as a production
site would run them: without the tests' small guardrails, and with DEBUG off
(under DEBUG, Django keeps a log of every query in the worker), and without the
test app's receivers (the tests' instruments, not a project's code)."""

from tests.settings import *  # noqa: F403

DEBUG = False
DJANGO_WORKFLOWS: dict = {}
INSTALLED_APPS = [
    "tests.testapp.apps.WithoutReceiversConfig" if app == "tests.testapp" else app
    for app in INSTALLED_APPS  # noqa: F405
]
