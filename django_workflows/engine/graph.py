"""A run's DAG as rows: task runs made from compiled nodes, and their edges.

One home for the edge table (``TaskRun.parents.through``: ``from_taskrun``
is the child, ``to_taskrun`` the parent), the queries over it, and the
mapping between :class:`~django_workflows.canvas.Node` and :class:`TaskRun`
in both directions.
"""

import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from django.db.models import Max
from django.utils import timezone

from ..canvas import NODE_OPTIONS, Node
from ..conf import get_setting
from ..exceptions import NodeLimitExceeded
from ..ids import packed
from ..models import Edge, TaskRun, Workflow
from ..models import TaskRunStatus as T
from . import rows

#: The columns of a task run that vary from node to node, in :func:`save_runs`' rows.
_RUN_COLUMNS = (
    "id",
    "node",
    "task",
    "args",
    "kwargs",
    "options",
    "immutable",
    "input",
    "is_map",
    "waiting",
    "status",
    "queued_at",
    "claim",
)


#: Nodes a launch saves at a time (then lets go) as its canvas compiles: one
#: statement per table each, as many statements as saving them all at once.
NODES_PER_WRITE = rows.BATCH_SIZE


class NodeIds:
    """The task run ids of new nodes, drawn as the nodes come: time-ordered
    UUIDs (:mod:`..ids`), kept as 16 bytes each rather than as objects, so a
    DAG's edges can name both ends without holding every row."""

    def __init__(self) -> None:
        self._bytes = bytearray()

    def __getitem__(self, node: int) -> uuid.UUID:
        end = 16 * node + 16
        if end > len(self._bytes):
            self._bytes += packed(max(end - len(self._bytes), 16 * NODES_PER_WRITE) // 16)
        return uuid.UUID(bytes=bytes(self._bytes[end - 16 : end]))


class RunWriter:
    """Saves a new run's nodes as they come (:func:`save_runs`, :func:`save_edges`),
    ``NODES_PER_WRITE`` at a time, and lets them go: a launch's memory stays
    flat in its number of tasks. Past ``limit`` nodes are only counted (the
    launch is refused, and its transaction rolled back)."""

    def __init__(self, workflow_id: Any, *, claim: Any, now: Any, limit: int | None) -> None:
        self.workflow_id, self.claim, self.now, self.limit = workflow_id, claim, now, limit
        self.ids = NodeIds()
        self.count = 0
        self._batch: list[Node] = []

    def add(self, node: Node) -> None:
        self.count += 1
        if self.limit is not None and self.count > self.limit:
            return
        self._batch.append(node)
        if len(self._batch) >= NODES_PER_WRITE:
            self.flush()

    def flush(self) -> None:
        if self._batch:
            save_runs(self._batch, self.workflow_id, self.ids, claim=self.claim, now=self.now)
            save_edges(node_edges_of(self._batch, self.ids))
            self._batch = []


def save_runs(
    nodes: Iterable[Node], workflow_id: Any, ids: NodeIds, *, claim: Any, now: Any
) -> None:
    """Insert a task run for each node, streamed in batches, without model
    instances. A root (no parents) is saved claimed by the launch (``claim``):
    queued at ``now``, ready to send; the others wait for their parents, and a
    ``held`` node for one more release (:func:`.chords.read_header`)."""

    def values(node: Node) -> tuple:
        root = not node.parents and not node.held
        return (
            ids[node.index],
            node.index,
            node.task,
            node.args,
            node.kwargs,
            node.options,
            node.immutable,
            node.input,
            node.map,
            len(node.parents) + node.held,
            T.QUEUED if root else T.PENDING,
            now if root else None,
            claim if root else None,
        )

    rows.insert(TaskRun, _RUN_COLUMNS, map(values, nodes), workflow=workflow_id)


def node_edges_of(nodes: Iterable[Node], ids: NodeIds) -> Iterator[tuple[uuid.UUID, uuid.UUID]]:
    """(child id, parent id) pairs of ``nodes``, by the ids of :func:`save_runs`."""
    for node in nodes:
        for parent in node.parents:
            yield ids[node.index], ids[parent]


def task_run(node: Node, workflow_id: Any, **fields: Any) -> TaskRun:
    """An unsaved task run for ``node``; ``fields`` set status, timestamps, item links."""
    return TaskRun(
        workflow_id=workflow_id,
        node=node.index,
        task=node.task,
        args=node.args,
        kwargs=node.kwargs,
        options=node.options,
        immutable=node.immutable,
        input=node.input,
        is_map=node.map,
        **fields,
    )


def node_of(run: TaskRun, parents: Iterable[int]) -> Node:
    """The compiled node a task run was made from (to copy a run node for node)."""
    return Node(
        index=run.node,
        task=run.task,
        args=run.args,
        kwargs=run.kwargs,
        options=run.options,
        immutable=run.immutable,
        input=run.input,
        parents=sorted(parents),
        map=run.is_map,
    )


def reserve_nodes(workflow_id: Any, count: int, adding: str) -> int:
    """Make room for ``count`` more task runs of a run growing at run time
    (a foreach expanding, a task replacing itself); return the first free
    node number. Call inside a transaction: the run's row stays locked, so
    one expansion at a time per run allocates numbers.

    Raises :class:`NodeLimitExceeded` past ``MAX_NODES``, ``adding`` saying what grows.
    """
    total = (
        Workflow.objects.select_for_update()
        .filter(pk=workflow_id)
        .values_list("tasks_total", flat=True)
        .get()
    )
    limit = get_setting("MAX_NODES")
    if limit is not None and total + count > limit:
        raise NodeLimitExceeded(
            f"{adding} {count} task runs, {total + count} in this run: the limit is "
            f"{limit} (DJANGO_WORKFLOWS['MAX_NODES'])."
        )
    last = TaskRun.objects.filter(workflow_id=workflow_id).aggregate(last=Max("node"))["last"]
    return last + 1


def ends(graph: Any) -> list[int]:
    """The nodes of a compiled ``graph`` that no other node follows: its last tasks."""
    followed = {parent for node in graph.nodes for parent in node.parents}
    return [node.index for node in graph.nodes if node.index not in followed]


def shift(ref: Any, offset: int) -> Any:
    """A node reference (an index, a list of them, or None) moved by ``offset``."""
    if ref is None:
        return None
    if isinstance(ref, list):
        return [shift(item, offset) for item in ref]
    return ref + offset


def move(graph: Any, offset: int) -> None:
    """Number a canvas compiled at run time from ``offset`` on, in place: its
    nodes, their inputs, parents and node options, its result and header nodes."""
    for node in graph.nodes:
        node.index += offset
        node.input = shift(node.input, offset)
        node.parents = [parent + offset for parent in node.parents]
        for name in NODE_OPTIONS:
            if name in node.options:
                node.options[name] = shift(node.options[name], offset)
    graph.result = shift(graph.result, offset)
    graph.in_header = {index + offset for index in graph.in_header}


def graft(
    graph: Any, workflow_id: Any, *, beside: Any, into: Iterable[Any], **fields: Any
) -> list[TaskRun]:
    """Save a canvas compiled at run time (a replacement, a member added to a
    chord) and numbered for the run (:func:`move`) as task runs of the run:
    its first tasks claimed for sending and drawn from the parents of task
    run ``beside`` (None: from nothing), its last tasks as parents of the task
    runs ``into``. Call it in the transaction that reserved the numbers;
    ``fields`` go on every task run (``map_index`` is each one's position).
    Returns the task runs, in order.
    """
    from . import counters

    last = ends(graph)
    now, claim = timezone.now(), uuid.uuid4()
    runs = []
    for position, node in enumerate(graph.nodes):
        item = {"map_index": position} if "mapped_from_id" in fields else {}
        runs.append(
            task_run(
                node,
                workflow_id,
                waiting=len(node.parents),
                status=T.PENDING if node.parents else T.QUEUED,
                queued_at=None if node.parents else now,
                claim=None if node.parents else claim,
                **fields,
                **item,
            )
        )
    TaskRun.objects.bulk_create(runs, batch_size=500)
    by_node = {run.node: run.pk for run in runs}
    outside = parents_of(beside) if beside is not None else []
    save_edges(
        [
            *((by_node[node.index], by_node[up]) for node in graph.nodes for up in node.parents),
            *((run.pk, parent) for run in runs if not run.waiting for parent in outside),
            *((target, by_node[index]) for target in into for index in last),
        ]
    )
    counters.count(workflow_id, total=len(runs))
    return runs


def save_edges(pairs: Iterable[tuple[Any, Any]]) -> None:
    """Insert (child id, parent id) edges in batches."""
    rows.insert(Edge, ("from_taskrun", "to_taskrun"), pairs)


def edges(workflow_id: Any) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(child id, parent id) pairs of a run, in one query."""
    return list(
        Edge.objects.filter(from_taskrun__workflow_id=workflow_id).values_list(
            "from_taskrun_id", "to_taskrun_id"
        )
    )


def parents_by_child(workflow_id: Any) -> defaultdict[uuid.UUID, list[uuid.UUID]]:
    parents = defaultdict(list)
    for child, parent in edges(workflow_id):
        parents[child].append(parent)
    return parents


def parents_of(task_run_id: Any) -> list[uuid.UUID]:
    """Parent ids of one task run."""
    return list(
        Edge.objects.filter(from_taskrun_id=task_run_id).values_list("to_taskrun_id", flat=True)
    )


def children_of(task_run_id: Any):
    """A queryset of the task runs that wait for ``task_run_id``."""
    return TaskRun.objects.filter(
        pk__in=Edge.objects.filter(to_taskrun_id=task_run_id).values("from_taskrun_id")
    )


def descendants(workflow_id: Any, task_ids: Iterable[Any]) -> list[uuid.UUID]:
    """Ids of every task run downstream of ``task_ids``."""
    children = defaultdict(list)
    for child, parent in edges(workflow_id):
        children[parent].append(child)
    seen: set = set()
    frontier = [uuid.UUID(str(t)) for t in task_ids]
    while frontier:
        frontier = [c for p in frontier for c in children[p] if c not in seen]
        seen.update(frontier)
    return list(seen)


def node_edges(workflow_id: Any) -> list[dict[str, int]]:
    """The run's edges as node indexes, parent (source) to child (target), in one query."""
    rows = Edge.objects.filter(from_taskrun__workflow_id=workflow_id).values_list(
        "to_taskrun__node", "from_taskrun__node"
    )
    return [{"source": parent, "target": child} for parent, child in sorted(rows)]
