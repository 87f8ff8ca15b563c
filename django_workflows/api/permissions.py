"""Who may do what: Django's model permissions; starting a run asks ``policy`` too.

- reading needs ``view`` (or ``change``, which implies it as in Django's admin; DRF's
  DjangoModelPermissions would let any user read),
- launching needs ``add_workflow``; a relaunch is a launch (``add_workflow``), of a
  run the user can see,
- other operations on an existing run or task run (resume, rerun, cancel,
  mark-success) need ``change`` on its model,
- definitions need ``view_workflow``,
- ``DJANGO_WORKFLOWS["CAN_LAUNCH"]`` may refuse a launch or relaunch of a definition
  (``policy.check_launch``, asked by the views: a 403).
"""

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission, DjangoModelPermissions

from ..models import Workflow

VIEW = "%(app_label)s.view_%(model_name)s"
ADD = "%(app_label)s.add_%(model_name)s"
CHANGE = "%(app_label)s.change_%(model_name)s"


class ModelPermissions(DjangoModelPermissions):
    """DjangoModelPermissions that also require ``view`` (or ``change``) to read."""

    def has_permission(self, request: Any, view: Any) -> bool:
        if request.method not in SAFE_METHODS:
            return super().has_permission(request, view)
        return sees(request.user, self._queryset(view).model)


class OperationPermissions(ModelPermissions):
    """An operation changes an existing row: POST needs ``change``, not ``add``."""

    perms_map = {**DjangoModelPermissions.perms_map, "POST": [CHANGE]}


class RelaunchPermissions(ModelPermissions):
    """A relaunch starts a run (``add``) from one the user can see (``view`` or ``change``)."""

    def has_permission(self, request: Any, view: Any) -> bool:
        model = self._queryset(view).model
        return sees(request.user, model) and request.user.has_perm(ADD % _names(model))


class DefinitionPermissions(BasePermission):
    """Definitions are not rows: reading them needs ``view_workflow`` (or ``change``)."""

    def has_permission(self, request: Any, view: Any) -> bool:
        return sees(request.user, Workflow)


def sees(user: Any, model: Any) -> bool:
    """``view`` or ``change`` permission on ``model``, as Django's admin reads them."""
    names = _names(model)
    return bool(
        user
        and user.is_authenticated
        and (user.has_perm(VIEW % names) or user.has_perm(CHANGE % names))
    )


def _names(model: Any) -> dict[str, str]:
    return {"app_label": model._meta.app_label, "model_name": model._meta.model_name}
