"""Test settings: the example project's, plus the test app.

The broker folder (filesystem transport) is new for each test session; the
worker subprocess inherits it through the environment.
"""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("DW_BROKER_DIR", tempfile.mkdtemp(prefix="dw-test-broker-"))

from example_project.settings import *  # noqa: E402,F403
from example_project.settings import (  # noqa: E402
    DATABASES,
    DJANGO_WORKFLOWS,
    INSTALLED_APPS,
    VAR_DIR,
)

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp", "tests.director"]

# The demo's YAML workflows, the test app's, and celery-director's own test file.
DJANGO_WORKFLOWS = {
    **DJANGO_WORKFLOWS,
    "DEFINITION_FILES": [
        *DJANGO_WORKFLOWS.get("DEFINITION_FILES", []),
        Path(__file__).resolve().parent / "testapp" / "workflows.yml",
        Path(__file__).resolve().parent / "director" / "workflows.yml",
    ],
}

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not memory: the worker process must see the same database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
else:
    # DW_TEST_DB_NAME: for suites sharing one PostgreSQL server
    DATABASES["default"]["TEST"] = {
        "NAME": os.environ.get("DW_TEST_DB_NAME", "test_django_workflows")
    }

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Guardrails small enough for the tests to cross (tests/engine/test_guardrails.py); the
# worker process reads them from here.
DJANGO_WORKFLOWS = {
    **globals().get("DJANGO_WORKFLOWS", {}),
    "MAX_NODES": 2000,
    "MAX_RESULT_SIZE": 100_000,
}

if os.environ.get("DW_LOG_SQL"):
    # Every SQL statement a process runs, on stderr (a worker started with DW_LOG_SQL=1
    # shows what tracking costs; Django logs SQL only with DEBUG on).
    DEBUG = True
    LOGGING = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"stderr": {"class": "logging.StreamHandler"}},
        "loggers": {"django.db.backends": {"level": "DEBUG", "handlers": ["stderr"]}},
    }
