"""Sending claimed task runs to the broker, each with what Celery would pass it.

The task run's id is the Celery task id, and the headers of
:mod:`django_workflows.headers` tell the worker's signal handlers which run
and node the message belongs to. This module only sends and says what it
could not send; :mod:`.progress` decides what a failed send means.
"""

import contextlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from celery import Celery, Signature, current_app
from django.db import connection
from django.utils import timezone
from kombu.exceptions import OperationalError

from ..canvas import public_options, referenced, resolve
from ..conf import get_setting
from ..headers import ATTEMPT_HEADER, NODE_HEADER, RUN_HEADER
from ..models import TaskRun
from . import eager
from .fastpath import converted, db_value

logger = logging.getLogger(__name__)


@dataclass
class Sent:
    """What :func:`send` could not send, and why."""

    #: (task run, error) for each run not sent: a bad signature, or the broker.
    unsent: list[tuple[TaskRun, BaseException]] = field(default_factory=list)
    #: Set when the broker could not be reached: nothing after it was sent.
    broker_error: OperationalError | None = None
    #: The ids of the runs the broker took.
    delivered: list[Any] = field(default_factory=list)


def results_of(workflow_id: Any, nodes: Iterable[int]) -> dict[int, Any]:
    """node index -> stored result, for ``nodes`` of a run, in one query.

    Plain SQL, the nodes as one parameter (a PostgreSQL array, a SQLite JSON
    list): this is on a join's critical path, and for a 100-member chord the
    ORM took longer to build its ``IN`` of 100 parameters and convert the rows
    than the database took to answer.
    """
    nodes = list(nodes)
    if not nodes:
        return {}
    if connection.vendor == "postgresql":
        among, params = "= ANY(%s)", [nodes]
    elif connection.vendor == "sqlite":
        among, params = "IN (SELECT value FROM json_each(%s))", [json.dumps(nodes)]
    else:
        among, params = f"IN ({', '.join(['%s'] * len(nodes))})", nodes
    table = connection.ops.quote_name(TaskRun._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT node, result FROM {table} WHERE workflow_id = %s AND node {among}",
            [db_value("workflow", workflow_id), *params],
        )
        return dict(converted(cursor.fetchall(), ("node", "result")))


def with_inputs(runs: list[TaskRun], results: dict[int, Any]) -> dict[int, Any]:
    """``results`` completed with the stored results the runs' inputs read."""
    needed = set().union(*(referenced(run.input) for run in runs)) - results.keys()
    if not needed:
        return results
    return {**results, **results_of(runs[0].workflow_id, needed)}


def send(runs: list[TaskRun], results: dict[int, Any]) -> Sent:
    """Send each run with its input resolved from ``results`` (node -> result),
    then mark what reached the broker as sent (one UPDATE): what stays
    unmarked is the recovery pass's to send."""
    sent = publish(runs, results)
    if sent.delivered:
        TaskRun.objects.filter(pk__in=sent.delivered).update(sent_at=timezone.now())
    return sent


def send_in_claim(runs: list[TaskRun], results: dict[int, Any]) -> Sent:
    """Send runs claimed, and marked sent, by the current transaction, before it commits.

    The hot path's outbox: a success claims its children with ``sent_at``
    set (:func:`.fastpath.succeed`) and sends them before its commit, so no
    UPDATE follows the send. A child's message that arrives first waits for
    the commit (the claim holds its row); if the transaction rolls back, the
    message's attempt was never committed and its start skips it. What the
    broker refused is unmarked here, for the recovery pass.
    """
    assert connection.in_atomic_block, "send_in_claim() runs inside the claiming transaction"
    sent = publish(runs, results)
    if sent.unsent:
        TaskRun.objects.filter(pk__in=[run.pk for run, _ in sent.unsent]).update(sent_at=None)
    return sent


def publish(runs: list[TaskRun], results: dict[int, Any]) -> Sent:
    """Publish each run's message; say which reached the broker and which did not."""
    if eager.enabled():
        return _run_inline(runs, results)
    app = current_app._get_current_object()  # the proxy costs on each attribute
    sent = Sent()
    delivered = sent.delivered
    store = get_setting("STORE_CELERY_RESULTS")
    # Several messages share one producer; one message is sent as Celery
    # sends any (it acquires one), without a second acquisition around it.
    shared = app.producer_or_acquire() if len(runs) > 1 else contextlib.nullcontext()
    with shared as producer:
        for position, run in enumerate(runs):
            signature, headers = _message(app, run, results, store)
            try:
                signature.apply_async(task_id=str(run.pk), headers=headers, producer=producer)
                delivered.append(run.pk)
            except OperationalError as exc:
                # Nothing more can be sent: the rest is unsent too.
                sent.broker_error = exc
                sent.unsent.extend((unsent, exc) for unsent in runs[position:])
                break
            except Exception as exc:  # e.g. TypeError: the arguments do not fit the task
                logger.warning("Could not send task run %s (%s): %r", run.pk, run.task, exc)
                sent.unsent.append((run, exc))
    return sent


def _message(
    app: Celery, run: TaskRun, results: dict[int, Any], store: bool
) -> tuple[Signature, dict[str, Any]]:
    """The signature and headers that send ``run``; ``store``: ``STORE_CELERY_RESULTS``."""
    args = run.args if run.input is None else [resolve(run.input, results), *run.args]
    options = public_options(run.options)  # the engine's notes are not Celery options
    if not store:
        options["ignore_result"] = True  # the task run's row keeps it
    headers = {**options.pop("headers", {}), RUN_HEADER: str(run.workflow_id)}
    if not run.is_hook:
        headers[NODE_HEADER] = run.node
    if run.claim is not None:
        headers[ATTEMPT_HEADER] = str(run.claim)
    return app.signature(run.task, args=args, kwargs=run.kwargs, options=options), headers


def _run_inline(runs: list[TaskRun], results: dict[int, Any]) -> Sent:
    """Eager mode: the runs are "sent" to this process's inline queue."""
    app = current_app._get_current_object()
    store = get_setting("STORE_CELERY_RESULTS")
    sent = Sent()
    calls = []
    for run in runs:
        try:
            signature, headers = _message(app, run, results, store)
            signature.type  # noqa: B018 (raises NotRegistered for a task this process lacks)
        except Exception as exc:
            sent.unsent.append((run, exc))
            continue
        calls.append((signature, str(run.pk), headers))
        sent.delivered.append(run.pk)
    if calls:
        eager.run(calls)
    return sent
