"""The hot path's writes: a task's start, and its success with what it releases.

Once per task, so written for the database's sake: a plain UPDATE for the
start (the ORM would spend longer building it than the database running
it), and on PostgreSQL a success in one statement. Each stays within the
transitions of :mod:`.transitions`, asserted where the SQL names statuses.
"""

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Case, F, Q, QuerySet, Value, When
from django.db.models.sql import Query

from ..models import TaskRun, Workflow
from ..models import TaskRunStatus as T
from . import counters
from .graph import Edge, children_of
from .transitions import ACTIVE_TASK, TASK_TRANSITIONS, move_tasks


def release_children(children: QuerySet, *, claim: Any, queued_at: Any) -> int:
    """A parent succeeded: one fewer parent to wait for, for each of ``children``.

    The child whose last parent this was (waiting 1 -> 0) is claimed in the
    same conditional UPDATE, pending -> queued with ``claim``: the SET
    expressions see the row as locked, so of two parents finishing at once
    exactly one claims a join. A claimed child that is sent as it is (not a
    foreach node, nor a task that replaced itself) is marked sent with the
    claim: its message goes before the claim commits
    (:func:`.send.send_in_claim`). Returns how many children were touched.
    """
    assert T.PENDING in TASK_TRANSITIONS[T.QUEUED]
    last_parent = Q(waiting=1, status=T.PENDING)
    sent_as_is = last_parent & Q(is_map=False, replacement__isnull=True)
    return children.update(
        waiting=F("waiting") - 1,
        status=Case(When(last_parent, then=Value(T.QUEUED)), default=F("status")),
        claim=Case(When(last_parent, then=Value(claim)), default=F("claim")),
        queued_at=Case(When(last_parent, then=Value(queued_at)), default=F("queued_at")),
        sent_at=Case(When(sent_as_is, then=Value(queued_at)), default=F("sent_at")),
    )


def start(task_id: Any, *, started_at: Any, worker: str, retries: int, attempt: Any = None) -> bool:
    """A worker starts a task run: the guarded move to running, one more attempt.

    With ``attempt`` (the message's dispatch attempt), only if it is the
    task run's current one: a stale message starts nothing.

    A message can arrive before the claim that sent it has committed
    (:func:`.send.send_in_claim`). SQLite's write lock makes the UPDATE wait
    for that commit; PostgreSQL's UPDATE skips a row whose committed version
    does not match without waiting, so when nothing matched, it waits for any
    transaction holding the row, then tries once more.

    On PostgreSQL the start commits without waiting for its WAL flush
    (``synchronous_commit`` off for this statement's own transaction, so
    not inside a caller's): the mark is
    advisory, the task's outcome overwrites it, and that outcome's own
    synchronous commit flushes the start with it. A database crash in
    between loses the mark, never an outcome.
    """
    sources = sorted(TASK_TRANSITIONS[T.RUNNING])
    table = connection.ops.quote_name(TaskRun._meta.db_table)
    current = "" if attempt is None else " AND claim = %s"
    run_id = db_value("id", task_id)
    no_flush, flushed = "", ""
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        no_flush = "WITH no_flush AS (SELECT set_config('synchronous_commit', 'off', true)) "
        flushed = " AND EXISTS (SELECT 1 FROM no_flush)"
    sql = (
        f"{no_flush}UPDATE {table} SET status = %s, started_at = %s, worker = %s, "
        f"attempts = attempts + 1, retries = %s "
        f"WHERE id = %s AND status IN ({', '.join(['%s'] * len(sources))}){current}{flushed}"
    )
    params = [
        T.RUNNING,
        db_value("started_at", started_at),
        worker,
        retries,
        run_id,
        *sources,
        *([] if attempt is None else [db_value("claim", attempt)]),
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if cursor.rowcount == 1 or attempt is None or connection.vendor != "postgresql":
            return cursor.rowcount == 1
        cursor.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR NO KEY UPDATE", [run_id])
        cursor.execute(sql, params)
        return cursor.rowcount == 1


def db_value(field: str, value: Any) -> Any:
    """``value`` as the ORM would write it to that column (SQLite: UUIDs as 32
    hex digits, datetimes as naive UTC text)."""
    return TaskRun._meta.get_field(field).get_db_prep_value(value, connection)


@dataclass
class Succeeded:
    """What a task's success did to its children."""

    #: Children now ready, claimed by this success for dispatch.
    claimed: list[TaskRun]
    #: False when a child of it is still pending (waiting for another parent):
    #: then the run cannot have finished with this task, no need to look.
    may_finish: bool = True


def succeed(
    task_id: Any,
    workflow_id: Any,
    *,
    result: Any,
    result_json: str,
    finished_at: Any,
    claim: Any,
    attempt: Any = None,
) -> Succeeded | None:
    """A task succeeded: store its result, count it, release its children
    (claiming the ready ones with ``claim``, see :func:`release_children`).
    Run it in a transaction: the claimed children are sent before it commits.

    Returns None if the task run was not active (a message delivered twice,
    a canceled run) or ``attempt`` is not its current one. On PostgreSQL
    this is one statement, on SQLite three (the success, the count, the
    release returning the children); elsewhere the same steps through the ORM.
    """
    if connection.vendor == "postgresql":
        return _succeed_in_one_statement(
            task_id, workflow_id, result_json, finished_at, claim, attempt
        )
    if connection.vendor == "sqlite":
        return _succeed_in_three_statements(
            task_id, workflow_id, result_json, finished_at, claim, attempt
        )
    current = TaskRun.objects.filter(pk=task_id)
    if attempt is not None:
        current = current.filter(claim=attempt)
    if not move_tasks(
        current,
        T.SUCCESS,
        from_=ACTIVE_TASK,
        result=result,
        finished_at=finished_at,
    ):
        return None
    counters.count(workflow_id, **counters.SUCCESS)
    children = children_of(task_id)
    if not release_children(children, claim=claim, queued_at=finished_at):
        return Succeeded(claimed=[])
    touched = list(children.filter(Q(claim=claim) | Q(status=T.PENDING)))
    return Succeeded(
        claimed=[child for child in touched if child.status == T.QUEUED and child.claim == claim],
        may_finish=not any(child.status == T.PENDING for child in touched),
    )


#: The three writes of :func:`succeed` in one round trip, with the same
#: guarded transitions: ``done`` moves the task run only from an active state;
#: ``released`` is :func:`release_children`'s conditional UPDATE; the claimed
#: children come back whole (RETURNING), so nothing is read again.
_SUCCEED_SQL = """
WITH done AS (
    UPDATE {run}
    SET status = %(success)s, result = NULLIF(%(result)s::jsonb, 'null'), finished_at = %(now)s
    WHERE id = %(id)s AND status = ANY(%(active)s)
        AND (%(attempt)s::uuid IS NULL OR claim = %(attempt)s::uuid)
    RETURNING id
), counted AS (
    UPDATE {workflow}
    SET tasks_finished = tasks_finished + %(finished)s,
        tasks_succeeded = tasks_succeeded + %(succeeded)s
    WHERE id = %(workflow)s AND EXISTS (SELECT 1 FROM done)
), released AS (
    UPDATE {run} AS child SET
        waiting = child.waiting - 1,
        status = CASE WHEN child.waiting = 1 AND child.status = %(pending)s
                      THEN %(queued)s ELSE child.status END,
        claim = CASE WHEN child.waiting = 1 AND child.status = %(pending)s
                     THEN %(claim)s::uuid ELSE child.claim END,
        queued_at = CASE WHEN child.waiting = 1 AND child.status = %(pending)s
                         THEN %(now)s ELSE child.queued_at END,
        sent_at = CASE WHEN child.waiting = 1 AND child.status = %(pending)s
                            AND NOT child.is_map AND child.replacement IS NULL
                       THEN %(now)s ELSE child.sent_at END
    FROM {edge} AS edge, done
    WHERE edge.to_taskrun_id = done.id AND child.id = edge.from_taskrun_id
    RETURNING child.*
)
SELECT (SELECT count(*) FROM done) AS moved,
    (SELECT count(*) FROM released WHERE status = %(pending)s) AS still_pending, {claimed}
FROM (SELECT 1) AS one LEFT JOIN released AS claimed ON claimed.claim = %(claim)s::uuid
"""


def _succeed_in_one_statement(
    task_id: Any, workflow_id: Any, result_json: str, finished_at: Any, claim: Any, attempt: Any
) -> Succeeded | None:
    sql = _SUCCEED_SQL.format(
        run=connection.ops.quote_name(TaskRun._meta.db_table),
        workflow=connection.ops.quote_name(Workflow._meta.db_table),
        edge=connection.ops.quote_name(Edge._meta.db_table),
        claimed=task_run_columns("claimed."),
    )
    assert TASK_TRANSITIONS[T.SUCCESS] >= ACTIVE_TASK
    params = {
        "id": str(task_id),
        "workflow": str(workflow_id),
        "result": result_json,
        "now": finished_at,
        "claim": str(claim),
        "attempt": None if attempt is None else str(attempt),
        "success": T.SUCCESS,
        "active": sorted(ACTIVE_TASK),
        "pending": T.PENDING,
        "queued": T.QUEUED,
        **counters.SUCCESS,
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    moved, still_pending = rows[0][:2]
    if not moved:
        return None
    claimed = [row[2:] for row in rows if row[2] is not None]
    return Succeeded(claimed=as_task_runs(claimed), may_finish=not still_pending)


def task_run_columns(prefix: str = "") -> str:
    """A task run's columns in the model's field order, for a RETURNING or a
    SELECT that :func:`as_task_runs` reads back."""
    quote = connection.ops.quote_name
    return ", ".join(prefix + quote(field.column) for field in TaskRun._meta.concrete_fields)


def as_task_runs(rows: Iterable[Sequence[Any]]) -> list[TaskRun]:
    """Rows of :func:`task_run_columns` as task runs, converted as the ORM converts them.

    What ``TaskRun.objects.raw()`` does, without its set-up on every call
    (resolving the columns, the converters): that cost more than the success
    statement's own round trip.
    """
    return [
        TaskRun.from_db(connection.alias, None, values) for values in converted(rows, _ALL_FIELDS)
    ]


def converted(rows: Iterable[Sequence[Any]], fields: tuple[str, ...]) -> list[list[Any]]:
    """Rows of plain SQL selecting the task run ``fields``' columns, with their
    values converted by the ORM's own converters (JSON decoded, SQLite's text
    UUIDs and dates)."""
    compiler = Query(TaskRun).get_compiler(connection=connection)
    return list(compiler.apply_converters(rows, _converters(connection.vendor, fields)))


_ALL_FIELDS = tuple(field.name for field in TaskRun._meta.concrete_fields)


@functools.cache
def _converters(vendor: str, fields: tuple[str, ...]) -> dict[int, Any]:
    """The ORM compiler's converters for ``fields``' columns, found once per
    vendor (finding them on every call is what made ``raw()`` slow)."""
    compiler = Query(TaskRun).get_compiler(connection=connection)
    table = TaskRun._meta.db_table
    return compiler.get_converters(
        [TaskRun._meta.get_field(name).get_col(table) for name in fields]
    )


#: :func:`succeed` on SQLite: the three writes of ``_SUCCEED_SQL`` as three
#: statements (SQLite has no UPDATE in a WITH), the last returning the children it
#: touched. Plain SQL: the ORM spent several times SQLite's own time building
#: these, while every other worker process waited for the one write lock.
_SQLITE_DONE = """
UPDATE {run} SET status = %s, result = NULLIF(%s, 'null'), finished_at = %s
WHERE id = %s AND status IN ({active}){current}
"""
_SQLITE_COUNTED = """
UPDATE {workflow}
SET tasks_finished = tasks_finished + %s, tasks_succeeded = tasks_succeeded + %s WHERE id = %s
"""
_SQLITE_RELEASED = """
UPDATE {run} SET
    waiting = waiting - 1,
    status = CASE WHEN waiting = 1 AND status = %(pending)s THEN %(queued)s ELSE status END,
    claim = CASE WHEN waiting = 1 AND status = %(pending)s THEN %(claim)s ELSE claim END,
    queued_at = CASE WHEN waiting = 1 AND status = %(pending)s THEN %(now)s ELSE queued_at END,
    sent_at = CASE WHEN waiting = 1 AND status = %(pending)s
                        AND NOT is_map AND replacement IS NULL
                   THEN %(now)s ELSE sent_at END
WHERE id IN (SELECT from_taskrun_id FROM {edge} WHERE to_taskrun_id = %(id)s)
RETURNING {columns}
"""


def _succeed_in_three_statements(
    task_id: Any, workflow_id: Any, result_json: str, finished_at: Any, claim: Any, attempt: Any
) -> Succeeded | None:
    assert TASK_TRANSITIONS[T.SUCCESS] >= ACTIVE_TASK
    assert T.PENDING in TASK_TRANSITIONS[T.QUEUED]
    names = {
        "run": connection.ops.quote_name(TaskRun._meta.db_table),
        "workflow": connection.ops.quote_name(Workflow._meta.db_table),
        "edge": connection.ops.quote_name(Edge._meta.db_table),
    }
    active = sorted(ACTIVE_TASK)
    run_id, now = db_value("id", task_id), db_value("finished_at", finished_at)
    done = _SQLITE_DONE.format(
        active=", ".join(["%s"] * len(active)),
        current="" if attempt is None else " AND claim = %s",
        **names,
    )
    params = [T.SUCCESS, result_json, now, run_id, *active]
    with connection.cursor() as cursor:
        cursor.execute(done, params + ([] if attempt is None else [db_value("claim", attempt)]))
        if cursor.rowcount != 1:
            return None
        cursor.execute(
            _SQLITE_COUNTED.format(**names),
            [
                counters.SUCCESS["finished"],
                counters.SUCCESS["succeeded"],
                db_value("workflow", workflow_id),
            ],
        )
        cursor.execute(
            _SQLITE_RELEASED.format(columns=task_run_columns(), **names),
            {
                "pending": T.PENDING,
                "queued": T.QUEUED,
                "claim": db_value("claim", claim),
                "now": now,
                "id": run_id,
            },
        )
        touched = as_task_runs(cursor.fetchall())
    return Succeeded(
        claimed=[child for child in touched if child.status == T.QUEUED and child.claim == claim],
        may_finish=not any(child.status == T.PENDING for child in touched),
    )
