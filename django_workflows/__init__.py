"""Celery workflows you can see, schedule and resume, from the Django admin."""

from typing import TYPE_CHECKING, Any

from .canvas import foreach
from .definitions import workflow

if TYPE_CHECKING:
    from .models import Workflow

__all__ = ["foreach", "launch", "launch_canvas", "workflow"]

__version__ = "0.1.0.dev0"


# The engine imports the models, which exist only once Django's apps are
# loaded; these wrappers keep ``import django_workflows`` safe before that.


def launch(name: str, payload: Any = None, **kwargs: Any) -> "Workflow":
    """Start a run of a registered workflow; see :func:`django_workflows.engine.launch`."""
    from .engine import launch as _launch

    return _launch(name, payload, **kwargs)


def launch_canvas(canvas: Any, **kwargs: Any) -> "Workflow":
    """Start a tracked run of any canvas; see :func:`django_workflows.engine.launch_canvas`."""
    from .engine import launch_canvas as _launch_canvas

    return _launch_canvas(canvas, **kwargs)
