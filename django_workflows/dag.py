"""A run's DAG as the picture needs it: nodes with live status, and edges.

The one shape of a run's DAG: the admin's run page draws it and the API's
``workflows/{id}/dag/`` returns it (``api.serializers.DagSerializer`` documents it).
Two queries whatever the size (nodes, then edges), only the columns drawn.
"""

from typing import Any

from .engine.graph import node_edges
from .models import TaskRun, Workflow


def dag_data(workflow: Workflow) -> dict[str, Any]:
    """The run, its progress, its nodes (hooks included, flagged) and edges: all a picture needs.

    Hooks are not nodes of the DAG (they have no edges) but are drawn, flagged, as the
    run's detail lists them: what the run sent is all visible.
    """
    nodes = list(
        TaskRun.objects.filter(workflow=workflow)
        .order_by("node")
        .values(
            "id",
            "node",
            "task",
            "status",
            "attempts",
            "is_hook",
            "marked_success",
            "is_map",
            "map_size",
            "map_index",
        )
    )
    return {
        "id": str(workflow.pk),
        "name": workflow.name,
        "status": workflow.status,
        "finished": workflow.is_finished,
        "progress": {
            "total": workflow.tasks_total,
            "finished": workflow.tasks_finished,
            "succeeded": workflow.tasks_succeeded,
            "failed": workflow.tasks_failed,
        },
        "nodes": [
            {
                "id": str(row["id"]),
                "node": row["node"],
                "task": row["task"],
                "label": _label(row),
                "status": row["status"],
                "attempts": row["attempts"],
                "hook": row["is_hook"],
                "marked_success": row["marked_success"],
            }
            for row in nodes
        ],
        "edges": node_edges(workflow.pk),
    }


def _label(row: dict[str, Any]) -> str:
    """The task's short name; a foreach node says how many items, an item which one."""
    name = row["task"].rsplit(".", 1)[-1]
    if row["is_map"]:
        return f"foreach {name}" + ("" if row["map_size"] is None else f" ×{row['map_size']}")
    if row["map_index"] is not None:
        return f"{name} [{row['map_index']}]"
    return name
