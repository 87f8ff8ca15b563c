"""Who may do what: Django's model permissions, plus a per-definition launch hook.

- reading needs ``view`` (DRF's DjangoModelPermissions lets any user read),
- launching needs ``add_workflow``,
- operations on an existing run or task run (resume, rerun, relaunch, cancel,
  mark-success) need ``change`` on its model,
- definitions need ``view_workflow``,
- ``DJANGO_WORKFLOWS["CAN_LAUNCH"]`` may refuse a launch of a given definition.
"""

from collections.abc import Callable
from typing import Any

from django.utils.module_loading import import_string
from rest_framework.permissions import BasePermission, DjangoModelPermissions

from ..conf import get_setting
from ..definitions import Definition
from ..models import Workflow

VIEW = "%(app_label)s.view_%(model_name)s"
CHANGE = "%(app_label)s.change_%(model_name)s"


class ModelPermissions(DjangoModelPermissions):
    """DjangoModelPermissions that also require ``view`` to read."""

    perms_map = {
        **DjangoModelPermissions.perms_map,
        "GET": [VIEW],
        "HEAD": [VIEW],
        "OPTIONS": [VIEW],
    }


class OperationPermissions(ModelPermissions):
    """An operation changes an existing row: POST needs ``change``, not ``add``."""

    perms_map = {**ModelPermissions.perms_map, "POST": [CHANGE]}


class DefinitionPermissions(BasePermission):
    """Definitions are not rows: reading them needs ``view_workflow``."""

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm(view_workflow_perm()))


def view_workflow_perm() -> str:
    return f"{Workflow._meta.app_label}.view_workflow"


def add_workflow_perm() -> str:
    return f"{Workflow._meta.app_label}.add_workflow"


def can_launch(user: Any, definition: Definition) -> bool:
    """Whether the project's ``CAN_LAUNCH`` hook lets ``user`` launch ``definition``."""
    hook: Callable[[Any, Definition], bool] | str | None = get_setting("CAN_LAUNCH")
    if hook is None:
        return True
    if isinstance(hook, str):
        hook = import_string(hook)
    return bool(hook(user, definition))
