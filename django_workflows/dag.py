"""A run's DAG as the picture needs it: nodes with live status, and edges.

The one shape of a run's DAG: the admin's run page draws it and the API's
``workflows/{id}/dag/`` returns it (``api.serializers.DagSerializer`` documents it).
Two queries whatever the size (nodes, then edges), only the columns drawn.

A big DAG is unreadable node by node: with ``fold`` (the run page's), siblings
(tasks with the same parents and the same children: a group, a chord header, a
foreach's items) beyond that many are drawn as one node with their counts by
status; :func:`group_members` pages through them and :func:`find` finds a task
in or out of a fold.
"""

from collections import Counter, defaultdict
from typing import Any

from django.core.paginator import Paginator
from django.db.models import Case, IntegerField, Value, When

from .engine.graph import node_edges
from .models import TaskRun, TaskRunStatus, Workflow

#: Siblings beyond this many fold into one node on the run page.
FOLD_OVER = 20
#: Members of an opened fold shown per page.
MEMBERS_PER_PAGE = 100
#: Failures first, success last: the order of a fold's members and of its colour.
STATUS_ORDER = [
    str(status.value)
    for status in (
        TaskRunStatus.FAILURE,
        TaskRunStatus.RETRYING,
        TaskRunStatus.RUNNING,
        TaskRunStatus.QUEUED,
        TaskRunStatus.UPSTREAM_FAILED,
        TaskRunStatus.CANCELED,
        TaskRunStatus.PENDING,
        TaskRunStatus.SUCCESS,
    )
]
_COLUMNS = (
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


def dag_data(workflow: Workflow, fold: int | None = None) -> dict[str, Any]:
    """The run, its progress, its nodes (hooks included, flagged) and edges: all a picture needs.

    Hooks are not nodes of the DAG (they have no edges) but are drawn, flagged, as the
    run's detail lists them: what the run sent is all visible. With ``fold``, more than
    ``fold`` siblings come as one node with a ``group`` (size, counts by status), and
    the edges join it once.
    """
    edges = node_edges(workflow.pk)
    if fold is None:
        nodes = [_node(row) for row in _rows(workflow)]
    else:
        # Ids (UUIDs, slow to read by the thousand) only of the nodes drawn one by one.
        rows = _rows(workflow, ids=False)
        folds = _folds(rows, edges, fold)
        folded = {node for members in folds.values() for node in members}
        runs = TaskRun.objects.filter(workflow=workflow)
        kept = [row["node"] for row in rows if row["node"] not in folded]
        if len(kept) <= 500:  # else reading them all costs no more than listing them
            runs = runs.filter(node__in=kept)
        ids = dict(runs.values_list("node", "id"))
        nodes = [_node({**row, "id": ids.get(row["node"], "")}) for row in rows]
        nodes, edges = _folded(nodes, edges, folds)
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
        "nodes": nodes,
        "edges": edges,
    }


def group_members(
    workflow: Workflow, first: int, page: int = 1, fold: int = FOLD_OVER
) -> dict[str, Any] | None:
    """One page of the fold whose first node is ``first``: failures first, then by node.

    None when no fold starts at that node (the DAG changed, or never had one).
    """
    rows = _rows(workflow, ids=False)
    members = _folds(rows, node_edges(workflow.pk), fold).get(first)
    if members is None:
        return None
    queryset = (
        TaskRun.objects.filter(workflow=workflow, node__in=members)
        .annotate(rank=_rank())
        .order_by("rank", "node")
        .values(*_COLUMNS)
    )
    current = Paginator(queryset, MEMBERS_PER_PAGE).get_page(page)
    return {
        "group": first,
        "size": len(members),
        "page": current.number,
        "pages": current.paginator.num_pages,
        "start": current.start_index(),
        "end": current.end_index(),
        "nodes": [_node(row) for row in current],
    }


def find(workflow: Workflow, query: str, limit: int = 20, fold: int = FOLD_OVER) -> dict[str, Any]:
    """Tasks matching ``query``: a node number (``12`` or ``#12``), a status, or part of a name.

    The first ``limit`` matches each say which fold holds them (``group``, its first
    node, or None) and on which page of it, so the page can open it there; ``groups``
    lists every fold holding a match.
    """
    query = query.strip().lstrip("#").strip()
    runs = TaskRun.objects.filter(workflow=workflow)
    status = _status(query)
    if query.isdigit():
        runs = runs.filter(node=int(query))
    elif status:
        runs = runs.filter(status=status)
    elif query:
        runs = runs.filter(task__icontains=query)
    else:
        runs = runs.none()
    every = set(runs.values_list("node", flat=True))
    matches = [_node(row) for row in runs.order_by("node").values(*_COLUMNS)[:limit]]
    groups = []
    if matches:
        rows = _rows(workflow, ids=False)
        folds = _folds(rows, node_edges(workflow.pk), fold)
        groups = sorted(first for first, members in folds.items() if every.intersection(members))
        fold_of = {node: first for first, members in folds.items() for node in members}
        rank = {row["node"]: (STATUS_ORDER.index(row["status"]), row["node"]) for row in rows}
        for match in matches:
            first = fold_of.get(match["node"])
            match["group"] = first
            if first is not None:
                position = sorted(folds[first], key=rank.__getitem__).index(match["node"])
                match["page"] = position // MEMBERS_PER_PAGE + 1
    return {"query": query, "total": len(every), "matches": matches, "groups": groups}


def _rows(workflow: Workflow, ids: bool = True) -> list[dict[str, Any]]:
    columns = _COLUMNS if ids else _COLUMNS[1:]
    return list(TaskRun.objects.filter(workflow=workflow).order_by("node").values(*columns))


def _node(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "node": row["node"],
        "task": row["task"],
        "label": _label(row),
        "status": row["status"],
        "attempts": row["attempts"],
        "hook": row["is_hook"],
        "marked_success": row["marked_success"],
    }


def _folds(rows: list[dict], edges: list[dict], over: int) -> dict[int, list[int]]:
    """Sibling sets larger than ``over``, by their first node: each a sorted node list."""
    parents, children = defaultdict(list), defaultdict(list)
    for edge in edges:
        parents[edge["target"]].append(edge["source"])
        children[edge["source"]].append(edge["target"])
    siblings = defaultdict(list)
    for row in rows:
        if not row["is_hook"] and not row["is_map"]:
            node = row["node"]
            siblings[(tuple(sorted(parents[node])), tuple(sorted(children[node])))].append(node)
    return {members[0]: members for members in siblings.values() if len(members) > over}


def _folded(
    nodes: list[dict], edges: list[dict], folds: dict[int, list[int]]
) -> tuple[list[dict], list[dict]]:
    """Each fold as one node at its first member's number, edges joined once."""
    fold_of = {node: first for first, members in folds.items() for node in members}
    kept, grouped = [], defaultdict(list)
    for node in nodes:
        first = fold_of.get(node["node"])
        (grouped[first] if first is not None else kept).append(node)
    for first, members in grouped.items():
        kept.append(_fold_node(first, members))
    kept.sort(key=lambda node: node["node"])
    pairs = {
        (fold_of.get(e["source"], e["source"]), fold_of.get(e["target"], e["target"]))
        for e in edges
    }
    return kept, [{"source": s, "target": t} for s, t in sorted(pairs)]


def _fold_node(first: int, members: list[dict]) -> dict[str, Any]:
    counts = Counter(member["status"] for member in members)
    tasks = {member["task"] for member in members}
    task = tasks.pop() if len(tasks) == 1 else ""
    name = task.rsplit(".", 1)[-1] if task else "group"
    return {
        "id": f"group-{first}",
        "node": first,
        "task": task,
        "label": f"{name} ×{len(members):,}",
        "status": next(s for s in STATUS_ORDER if counts[s]),
        "attempts": 0,
        "hook": False,
        "marked_success": False,
        "group": {
            "size": len(members),
            "counts": {s: counts[s] for s in STATUS_ORDER if counts[s]},
        },
    }


def _rank() -> Case:
    return Case(
        *(When(status=s, then=Value(i)) for i, s in enumerate(STATUS_ORDER)),
        output_field=IntegerField(),
    )


def _status(query: str) -> str | None:
    """The status a query names, by value or label (``failure``, ``upstream failed``)."""
    wanted = query.lower().replace("_", " ")
    for status in TaskRunStatus:
        if wanted in {status.value.replace("_", " "), str(status.label).lower()}:
            return status.value
    return {"failed": "failure", "succeeded": "success"}.get(wanted)


def _label(row: dict[str, Any]) -> str:
    """The task's short name; a foreach node says how many items, an item which
    one; a task that replaced itself (Task.replace), by how many tasks."""
    name = row["task"].rsplit(".", 1)[-1]
    if row["is_map"]:
        return f"foreach {name}" + ("" if row["map_size"] is None else f" ×{row['map_size']}")
    if row["map_size"] is not None:
        return f"{name} → replaced by {row['map_size']}"
    if row["map_index"] is not None:
        return f"{name} [{row['map_index']}]"
    return name
