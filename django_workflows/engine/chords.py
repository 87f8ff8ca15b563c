"""Chords at run time: ``Task.add_to_chord``, and a chord body's errbacks when
its header fails.

Natively a header task adds a member to its chord with ``add_to_chord``
(the Redis backend grows the chord's counter). In a run the new member's
canvas is compiled and joins the run like a replacement does (:mod:`.replace`):
the chord's body, named by the calling task (``CHORD``), waits for it too
and gets its result after the others' (:func:`join`). With ``lazy=True`` its
first tasks stay claimed and unsent, for the caller to send. The members of a
chord header given as a generator join the same way as the launch reads them
(:func:`~django_workflows.engine.launch.read_header`).

When a header task fails, Celery calls the errbacks of the chord's body
(``chord_error_from_stack``) once, with the body's id and a ``ChordError``.
Each header node names those bodies (``CHORD_BODIES``, set by
:mod:`~django_workflows.canvas`); the failure that moves a body to
``upstream_failed`` calls its errbacks, as Celery would, after it committed.
"""

import logging
from typing import Any

from celery import current_app
from celery.app.task import Context
from celery.exceptions import ChordError
from celery.result import AsyncResult, ResultSet
from django.db import transaction

from ..canvas import CHORD, CHORD_BODIES, compile_canvas
from ..models import TaskRun
from ..models import TaskRunStatus as T
from .graph import ends, graft, move, reserve_nodes

logger = logging.getLogger(__name__)


# -- add_to_chord ------------------------------------------------------------------------


def add(task_id: str, workflow_id: str, signature: Any, attempt: Any) -> tuple[list[TaskRun], Any]:
    """Save ``signature`` as a new member of the chord running task run
    ``task_id`` is in; return its first tasks, claimed for sending, and
    its result (an ``AsyncResult``, or a ``ResultSet`` for a group).

    Raises ``ValueError`` as Celery does when the task is in no chord.
    """
    graph = compile_canvas(signature)
    with transaction.atomic():
        current = TaskRun.objects.filter(pk=task_id, status=T.RUNNING)
        if attempt is not None:
            current = current.filter(claim=attempt)
        caller = current.select_for_update().values("options", "mapped_from_id").first()
        if caller is None:
            return [], None  # canceled, or a stale attempt: nothing joins
        options = _chord_of(caller)
        if not options.get(CHORD):
            raise ValueError("Current task is not member of any chord")
        # Drawn as the calling task's sibling: from its parents, into the bodies.
        runs = join(workflow_id, graph, options, beside=task_id)
    if runs is None:
        return [], None  # the chord failed or was canceled: nothing joins
    by_node = {run.node: run.pk for run in runs}
    return [run for run in runs if not run.waiting], _result(graph.result, by_node)


def _chord_of(caller: dict) -> dict:
    """The options naming the chord the caller is in: its own, or, for a task of
    a replacement (``Task.replace``), those of the task it replaced, as Celery
    passes a replaced header task's chord on to its replacement."""
    options = caller["options"]
    while not options.get(CHORD) and caller["mapped_from_id"] is not None:
        caller = (
            TaskRun.objects.filter(pk=caller["mapped_from_id"], replacement__isnull=False)
            .values("options", "mapped_from_id")
            .first()
        )
        if caller is None:  # a foreach item: in no chord of its own
            break
        options = caller["options"]
    return options


def join(workflow_id: Any, graph: Any, chord: dict, *, beside: Any) -> list[TaskRun] | None:
    """Save compiled ``graph`` as a new member of a chord, in the caller's
    transaction: the chord's body (``chord[CHORD]``, its first nodes) waits
    for its last tasks too and gets its result after the others'. The member
    is in the chord as a header member is: its last tasks name the body
    (:data:`CHORD`), its nodes the body's errbacks (:data:`CHORD_BODIES`).
    Returns its task runs (the first ones claimed for sending), or None if
    the body no longer waits (a header task failed, the run was canceled).
    """
    bodies = list(
        TaskRun.objects.select_for_update().filter(
            workflow_id=workflow_id, node__in=chord[CHORD], status=T.PENDING
        )
    )
    if not bodies:
        return None
    last = ends(graph)
    move(graph, reserve_nodes(workflow_id, len(graph.nodes), "A member added to a chord adds"))
    for index in last:  # numbered as compiled: each node's position
        graph.nodes[index].options[CHORD] = chord[CHORD]
    if chord.get(CHORD_BODIES):
        for node in graph.nodes:
            if node.index not in graph.in_header:
                node.options[CHORD_BODIES] = chord[CHORD_BODIES]
    for body in bodies:
        TaskRun.objects.filter(pk=body.pk).update(
            input=body.input if body.input is None else [*body.input, graph.result],
            waiting=body.waiting + len(last),
        )
    return graft(graph, workflow_id, beside=beside, into=[body.pk for body in bodies])


def _result(ref: Any, by_node: dict[int, Any]) -> Any:
    if isinstance(ref, list):
        return ResultSet([_result(item, by_node) for item in ref])
    return AsyncResult(str(by_node[ref]), app=current_app)


# -- a failed header -----------------------------------------------------------------------


def failing_bodies(run: TaskRun) -> list[TaskRun]:
    """The chord bodies ``run``'s failure fails, and that no other failure of
    their header has failed yet (Celery calls their errbacks once). Call in
    the failure's transaction, before the bodies move to ``upstream_failed``."""
    indexes = set(run.options.get(CHORD_BODIES) or ())
    source = run
    while source.mapped_from_id is not None:  # a replacement's or a foreach item's task
        source = TaskRun.objects.only("options", "mapped_from_id").get(pk=source.mapped_from_id)
        indexes.update(source.options.get(CHORD_BODIES) or ())
    if not indexes:
        return []
    return list(
        TaskRun.objects.select_for_update().filter(
            workflow_id=run.workflow_id, node__in=indexes, status=T.PENDING
        )
    )


def call_body_errbacks(bodies: list[TaskRun], failed: TaskRun, exception: Any) -> None:
    """Call each body's errbacks as Celery's ``chord_error_from_stack`` does:
    old-style ones as tasks given the body's id, new-style ones here with a
    request standing for the body and a ``ChordError``. An errback that fails
    is logged: it never changes the run."""
    error = ChordError(f"Dependency {failed.pk} raised {exception!r}")
    for body in bodies:
        request = Context(
            {
                "id": str(body.pk),
                "errbacks": body.options.get("link_error") or [],
                "delivery_info": {},
                "task": body.task,
                "args": body.args,
                "kwargs": body.kwargs,
            }
        )
        try:
            current_app.backend._call_task_errbacks(request, error, None)
        except Exception:
            logger.exception("The errbacks of chord body %s (%s) failed", body.pk, body.task)
