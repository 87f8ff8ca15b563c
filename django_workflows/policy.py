"""Who may do what with runs: one policy, asked by the API, the admin and the schedules.

- Starting a run (a launch, a relaunch, a schedule's fire) needs ``add_workflow`` and,
  for a registered definition, the project's ``DJANGO_WORKFLOWS["CAN_LAUNCH"]`` hook.
- A task's data (args, kwargs, result, exception, traceback, attempts) needs
  ``view_taskrun`` (or ``change_taskrun``, which implies it as in Django's admin);
  ``view_workflow`` alone shows a run's DAG, statuses and timings.

A shell (``manage.py workflows``) is trusted: it asks nothing.
"""

from collections.abc import Callable
from typing import Any

from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

from .conf import get_setting
from .definitions import Definition, registry
from .exceptions import LaunchRefused

APP = "django_workflows"


def can_launch(user: Any, definition: Definition) -> bool:
    """Whether the project's ``CAN_LAUNCH`` hook lets ``user`` launch ``definition``."""
    hook: Callable[[Any, Definition], bool] | str | None = get_setting("CAN_LAUNCH")
    if hook is None:
        return True
    if isinstance(hook, str):
        hook = import_string(hook)
    return bool(hook(user, definition))


def may_launch(user: Any, name: str) -> bool:
    """Whether ``user`` may start a run of ``name`` (a definition, or an ad-hoc run's name)."""
    if user is None or not user.has_perm(f"{APP}.add_workflow"):
        return False
    definition = registry.find(name)
    return definition is None or can_launch(user, definition)


def check_launch(user: Any, name: str) -> None:
    """Raise :class:`LaunchRefused` unless ``user`` may start a run of ``name``."""
    if not may_launch(user, name):
        raise LaunchRefused(_("You are not allowed to launch workflow %(name)r.") % {"name": name})


def sees_task_data(user: Any) -> bool:
    """Whether ``user`` may read what tasks were given and returned (see ``details``)."""
    return user is not None and (
        user.has_perm(f"{APP}.view_taskrun") or user.has_perm(f"{APP}.change_taskrun")
    )
