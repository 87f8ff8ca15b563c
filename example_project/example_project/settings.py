"""Settings of the example project.

With no environment variables it runs on what any machine has: SQLite and
kombu's filesystem broker under ``.var/``. Point it at real services with:

- ``DW_DATABASE=postgres`` (and ``DW_DB_NAME``, ``DW_DB_HOST``, ``DW_DB_PORT``,
  ``DW_DB_USER``, ``DW_DB_PASSWORD``),
- ``CELERY_BROKER_URL`` (``redis://localhost:6379/0``, ``amqp://guest@localhost//``),
- ``CELERY_RESULT_BACKEND`` (default: django-celery-results' ``django-db``).
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("DW_VAR_DIR", BASE_DIR.parent / ".var"))

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-workflows-example-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_results",
    "django_celery_beat",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "django_workflows",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "example_project.wsgi.application"

if os.environ.get("DW_DATABASE", "sqlite") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("DW_DB_NAME", "django_workflows"),
            "HOST": os.environ.get("DW_DB_HOST", "localhost"),
            "PORT": os.environ.get("DW_DB_PORT", "5432"),
            "USER": os.environ.get("DW_DB_USER", "postgres"),
            "PASSWORD": os.environ.get("DW_DB_PASSWORD", ""),
            # Keep connections between tasks: Celery's Django fixup closes them
            # after every task otherwise, and a new PostgreSQL connection costs
            # more than all the queries that track a task.
            "CONN_MAX_AGE": 600,
            "CONN_HEALTH_CHECKS": True,
        }
    }
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)  # SQLite creates the file, not its folder
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("DW_DB_NAME", str(VAR_DIR / "db.sqlite3")),
            # A worker in another process writes too: WAL lets readers and one
            # writer work at once, IMMEDIATE takes the write lock up front, and
            # the timeout waits for it instead of failing with "database is locked".
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

# -- django-workflows -----------------------------------------------------------

DJANGO_WORKFLOWS = {
    # Workflows written in celery-director's workflows.yml format.
    "DEFINITION_FILES": [BASE_DIR / "demo" / "workflows.yml"],
}

# -- REST API (django_workflows.api) --------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "django-workflows",
    "DESCRIPTION": "Launch, inspect, resume, rerun, relaunch and cancel Celery workflows.",
    "VERSION": "1",
}

# -- Celery -------------------------------------------------------------------

BROKER_DIR = Path(os.environ.get("DW_BROKER_DIR", VAR_DIR / "broker"))
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    # kombu's own filesystem transport, with messages written atomically.
    CELERY_BROKER_TRANSPORT = "example_project.broker:Transport"
    for _folder in ("queue", "processed", "control"):
        (BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        # The default polls once a second: every hop of a chain would wait that long.
        "polling_interval": 0.01,
    }
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", "django-db")
CELERY_RESULT_EXTENDED = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Fails task runs whose worker died whole (see README, "When a run breaks").
CELERY_BEAT_SCHEDULE = {
    "django-workflows-reaper": {"task": "django_workflows.reap", "schedule": 60.0},
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's Django fixup closes the database connection before and after every
# task, whatever CONN_MAX_AGE says, unless this is set: then it closes it every
# 2 x N tasks. A new PostgreSQL connection costs more than tracking a task.
CELERY_DB_REUSE_MAX = 200
