"""Settings of the app, read from ``settings.DJANGO_WORKFLOWS`` (a dict)."""

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    #: The reaper checks only tasks started at least this many seconds ago.
    "REAPER_GRACE": 30.0,
    #: Seconds after which a running task is failed by the reaper (None: never).
    "TASK_TIMEOUT": None,
    #: REST API: dotted path to ``callable(user, definition) -> bool`` deciding who may
    #: launch (or relaunch) runs of a definition, on top of the ``add`` permission.
    #: None: anyone with the permission.
    "CAN_LAUNCH": None,
    #: Admin: Flower's address, to link each task run to its Flower page (None: no link).
    "FLOWER_URL": None,
}


def get_setting(name: str) -> Any:
    return getattr(settings, "DJANGO_WORKFLOWS", {}).get(name, DEFAULTS[name])
