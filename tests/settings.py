"""Test settings: the example project's, plus the test app.

The broker folder (filesystem transport) is new for each test session; the
worker subprocess inherits it through the environment.
"""

import os
import tempfile

os.environ.setdefault("DW_BROKER_DIR", tempfile.mkdtemp(prefix="dw-test-broker-"))

from example_project.settings import *  # noqa: E402,F403
from example_project.settings import DATABASES, INSTALLED_APPS, VAR_DIR  # noqa: E402

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not memory: the worker process must see the same database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
else:
    DATABASES["default"]["TEST"] = {"NAME": "test_django_workflows"}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Guardrails small enough for the tests to cross (tests/test_guardrails.py); the
# worker process reads them from here.
DJANGO_WORKFLOWS = {
    **globals().get("DJANGO_WORKFLOWS", {}),
    "MAX_NODES": 2000,
    "MAX_RESULT_SIZE": 100_000,
}
