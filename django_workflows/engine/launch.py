"""Launching a run: the run and its whole DAG saved in one transaction, the
first tasks sent when it commits.

Everything that can be refused (unknown name, bad payload, a canvas that
cannot be tracked, too many tasks) is refused before anything is kept: the
canvas is compiled as its nodes are saved, in that transaction, which a
refusal rolls back before any task is sent.
"""

import logging
import time
import uuid
import warnings
from collections.abc import Iterator
from traceback import format_exception
from typing import Any

from django.db import DataError, IntegrityError, transaction
from django.utils import timezone

from ..canvas import CHORD, CHORD_BODIES, Graph, LazyHeader, compile_canvas
from ..codec import encode
from ..conf import get_setting
from ..definitions import registry
from ..exceptions import (
    BrokerUnavailable,
    CanvasError,
    InvalidPayload,
    NativeCeleryWarning,
    NodeLimitExceeded,
)
from ..ids import uuid7
from ..models import TaskRun, Workflow
from ..models import TaskRunStatus as T
from ..models import WorkflowStatus as W
from ..signals import workflow_started
from . import chords, eager, progress
from .graph import RunWriter
from .transitions import move_workflow

logger = logging.getLogger(__name__)

#: Roots sent per batch when a launch starts (each batch read back from the database).
ROOTS_PER_SEND = 1000
#: Seconds between two notes that a chord's header generator is being read
#: (``Workflow.header_read_at``): far below the recovery pass's grace, and a
#: write a second rather than one a member (5% of a 1,000-member launch).
READ_NOTED_EVERY = 1.0


def launch(
    name: str,
    payload: Any = None,
    *,
    user: Any = None,
    idempotency_key: str | None = None,
    relaunched_from: Workflow | None = None,
    schedule: Any = None,
) -> Workflow:
    """Start a run of the registered workflow ``name`` with ``payload``.

    Raises :class:`~django_workflows.exceptions.UnknownWorkflow` or
    :class:`~django_workflows.exceptions.InvalidPayload` before anything is
    saved. The first tasks are sent when the current transaction commits.
    With ``idempotency_key``, a run of ``name`` launched with the same key
    is returned instead of a new one, also under concurrent launches; the
    returned run's ``launched_now`` says which happened.
    """
    definition = registry.get(name)
    payload = {} if payload is None else payload
    if idempotency_key and (existing := _existing(name, idempotency_key)):
        return existing
    check_payload(name, payload)
    definition.validate(payload)
    workflow_id = uuid7()  # director-style tasks are given it as an argument
    return create(
        definition.build(payload, workflow_id),
        id=workflow_id,
        name=name,
        payload=payload,
        user=user,
        idempotency_key=idempotency_key or "",
        relaunched_from=relaunched_from,
        schedule=schedule,
        hooks=definition.hooks(),
    )


def launch_canvas(
    canvas: Any,
    *,
    name: str = "adhoc",
    payload: Any = None,
    user: Any = None,
    idempotency_key: str | None = None,
) -> Workflow:
    """Start a tracked run of any Celery canvas, without registering it."""
    if idempotency_key and (existing := _existing(name, idempotency_key)):
        return existing
    check_payload(name, payload)
    return create(
        canvas,
        name=name,
        payload={} if payload is None else payload,
        user=user,
        idempotency_key=idempotency_key or "",
    )


def check_payload(name: str, payload: Any) -> None:
    """The payload must be JSON, and no larger than MAX_PAYLOAD_SIZE bytes."""
    try:
        size = len(encode(payload).encode())
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(name, [{"path": "", "message": f"Not JSON: {exc}"}]) from exc
    limit = get_setting("MAX_PAYLOAD_SIZE")
    if limit is not None and size > limit:
        message = (
            f"The payload is {size} bytes as JSON; the limit is {limit} "
            "(DJANGO_WORKFLOWS['MAX_PAYLOAD_SIZE'])."
        )
        raise InvalidPayload(name, [{"path": "", "message": message}])


def _existing(name: str, key: str) -> Workflow | None:
    workflow = Workflow.objects.filter(name=name, idempotency_key=key).first()
    if workflow is not None:
        workflow.launched_now = False
    return workflow


def create(source: Any, *, name: str, payload: Any, user: Any, **fields: Any) -> Workflow:
    """Save the run and its whole DAG in one transaction; send the roots on commit.

    ``source`` is a canvas, compiled as its nodes are saved (they are not
    all held at once), or an already compiled :class:`Graph` (a relaunch's copy).
    """
    limit = get_setting("MAX_NODES")
    now = timezone.now()
    claim = uuid.uuid4()  # the roots' dispatch attempt
    try:
        with transaction.atomic():
            workflow = Workflow.objects.create(
                name=name,
                payload=payload,
                launched_by=user if getattr(user, "is_authenticated", False) else None,
                **fields,
            )
            writer = RunWriter(workflow.pk, claim=claim, now=now, limit=limit)
            if isinstance(source, Graph):
                graph = source
                for node in graph.nodes:
                    writer.add(node)
            else:
                graph = compile_canvas(source, emit=writer.add, lazy=True)
            writer.flush()
            if limit is not None and writer.count > limit:
                raise NodeLimitExceeded(
                    f"Workflow {name!r} has {writer.count} tasks; the limit is {limit} "
                    "(DJANGO_WORKFLOWS['MAX_NODES'])."
                )
            for warning in graph.native_warnings:
                logger.warning("Workflow %r: %s", name, warning)
                warnings.warn(f"Workflow {name!r}: {warning}", NativeCeleryWarning, stacklevel=4)
            workflow.result_ref, workflow.tasks_total = graph.result, writer.count
            if graph.lazy_headers:  # bodies held until the start reads their headers
                workflow.headers_held = [n for header in graph.lazy_headers for n in header.entries]
                workflow.header_read_at = now
            workflow.save(
                update_fields=["result_ref", "tasks_total", "headers_held", "header_read_at"]
            )
    except DataError as exc:
        raise CanvasError(
            f"Workflow {name!r} could not be saved: the database refused its arguments "
            f"({exc}). PostgreSQL cannot store a NUL character (\\u0000) in JSON."
        ) from exc
    except IntegrityError:
        key = fields.get("idempotency_key")
        if key and (existing := _existing(name, key)):
            return existing  # a concurrent launch with the same key won
        raise
    eager.after_commit(
        lambda: _start(workflow, claim, has_roots=writer.count > 0, headers=graph.lazy_headers)
    )
    if eager.enabled():
        workflow.refresh_from_db()  # it ran inline: show how it ended
    workflow.launched_now = True
    return workflow


def _start(
    workflow: Workflow, claim: uuid.UUID, *, has_roots: bool, headers: list[LazyHeader]
) -> None:
    now = timezone.now()
    mark_started(workflow.pk, workflow.name, now)
    workflow.status, workflow.started = W.RUNNING, now
    if not has_roots:
        progress.finish_if_done(workflow.pk)
        workflow.refresh_from_db()
        return
    try:
        for roots in _roots(workflow.pk, claim):
            progress.dispatch(roots, {})
        for header in headers:
            read_header(workflow.pk, header)
    except BrokerUnavailable as exc:
        # The caller is told now: what the broker did not take (roots, members
        # of a header read as a generator) fails (rather than wait for the
        # recovery pass), and the run with it.
        unsent = TaskRun.objects.filter(
            workflow_id=workflow.pk, status=T.QUEUED, sent_at=None
        ).values_list("pk", flat=True)
        for pk in unsent:
            progress.task_failed(str(pk), exc.__cause__)
        for header in headers:  # not read to the end: their chords fail too
            _fail_held(workflow.pk, header, exc.__cause__)
        message = f"The broker could not be reached to send the first tasks: {exc.__cause__}"
        Workflow.objects.filter(pk=workflow.pk).update(error=message)
        workflow.refresh_from_db()
        error = BrokerUnavailable(message)
        error.workflow = workflow
        raise error from exc.__cause__
    if headers:
        workflow.refresh_from_db()


def mark_started(workflow_id: Any, name: str, now: Any) -> bool:
    """Move a launched run from pending to running, and say so to
    ``workflow_started``'s receivers; False if it was started already (by
    its launch, or by the recovery pass when the launch's start never ran)."""
    if not move_workflow(
        Workflow.objects.filter(pk=workflow_id), W.RUNNING, from_={W.PENDING}, started=now
    ):
        return False
    workflow_started.send_robust(Workflow, workflow_id=workflow_id, name=name, resumed=False)
    return True


def read_header(workflow_id: Any, header: LazyHeader) -> None:
    """Read a chord's header given as a generator, as Celery does when it
    sends the chord: each member joins the run as it is read (like a member
    added with ``add_to_chord``) and is sent at once; at the end the body
    waits no more for the header to be read.

    Reading stops when the body no longer waits (a member failed, the run
    was canceled). A generator that raises, or gives what the engine cannot
    run, fails the body with that error (natively ``apply_async`` raises it
    and the chord never completes). :class:`BrokerUnavailable` is raised,
    for the launch to fail what was not sent, as it does for its roots.

    That it is being read is noted on the run (``header_read_at``, at most
    every :data:`READ_NOTED_EVERY` seconds, as a member is read): a reader
    quiet for the recovery pass's grace is taken for gone (its process
    died), and the pass fails the body; then the member read next is the last.
    """
    chord = {CHORD: header.entries, CHORD_BODIES: header.errback_bodies}
    reading = Workflow.objects.filter(pk=workflow_id, headers_held__isnull=False)
    reading.update(header_read_at=timezone.now())  # the launch may have taken a while
    noted = time.monotonic()
    try:
        for member in header.tasks:
            if time.monotonic() - noted >= READ_NOTED_EVERY:
                reading.update(header_read_at=timezone.now())
                noted = time.monotonic()
            graph = compile_canvas(header.member.of(member))
            with transaction.atomic():
                runs = chords.join(workflow_id, graph, chord, beside=None)
            if runs is None:
                # the chord failed, the run was canceled, or the recovery pass
                # failed the body: the header is read no further
                progress.unhold(workflow_id, header.entries)
                return
            first = [run for run in runs if not run.waiting]
            progress.changed(workflow_id, [run.pk for run in first], T.QUEUED)
            progress.dispatch(first, {})
    except BrokerUnavailable:
        raise  # the launch fails what the broker did not take
    except Exception as exc:
        logger.exception("Reading a chord's header of workflow %s failed", workflow_id)
        _fail_held(workflow_id, header, exc)
        return
    progress.release_held(workflow_id, header.entries)


def _fail_held(workflow_id: Any, header: LazyHeader, error: BaseException) -> None:
    """The body of a chord whose header could not be read fails with ``error``."""
    bodies = TaskRun.objects.filter(
        workflow_id=workflow_id, node__in=header.entries, status=T.PENDING
    ).values_list("pk", flat=True)
    trace = "".join(format_exception(error))
    for pk in bodies:
        progress.task_failed(str(pk), error, trace, from_={T.PENDING})
    progress.unhold(workflow_id, header.entries)


def _roots(workflow_id: Any, claim: uuid.UUID) -> Iterator[list[TaskRun]]:
    """The roots the launch claimed, read back ``ROOTS_PER_SEND`` at a time in
    node order: a chord's header may hold 100,000 of them."""
    last = -1
    while True:
        batch = list(
            TaskRun.objects.filter(workflow_id=workflow_id, claim=claim, node__gt=last).order_by(
                "node"
            )[:ROOTS_PER_SEND]
        )
        if batch:
            yield batch
        if len(batch) < ROOTS_PER_SEND:
            return
        last = batch[-1].node
