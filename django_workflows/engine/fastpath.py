"""The hot path's writes: a task's start, and its success with what it releases.

Once per task, so written for the database's sake: a plain UPDATE for the
start (the ORM would spend longer building it than the database running
it), and on PostgreSQL a success in one statement, both prepared once per
connection (:func:`execute_prepared`). Each stays within the transitions of
:mod:`.transitions`, asserted where the SQL names statuses.
"""

import functools
import hashlib
import re
import uuid
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import OperationalError, ProgrammingError, connection
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
    vendor = connection.vendor
    postgres = vendor == "postgresql"
    sql = _start_sql(vendor, attempt is not None, postgres and not connection.in_atomic_block)
    if postgres:
        # psycopg takes the ids and the datetime as they are: preparing them
        # through the model's fields took about 65 µs of the hop in a worker.
        run_id, started, current = task_id, started_at, attempt
    else:
        run_id, started = db_value("id", task_id), db_value("started_at", started_at)
        current = None if attempt is None else db_value("claim", attempt)
    params = [started, worker, retries, run_id, *([] if attempt is None else [current])]
    with connection.cursor() as cursor:
        execute_prepared(cursor, sql, params)
        if cursor.rowcount == 1 or attempt is None or not postgres:
            return cursor.rowcount == 1
        table = connection.ops.quote_name(TaskRun._meta.db_table)
        cursor.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR NO KEY UPDATE", [run_id])
        execute_prepared(cursor, sql, params)
        return cursor.rowcount == 1


@functools.cache
def _start_sql(vendor: str, with_attempt: bool, no_flush: bool) -> str:
    """:func:`start`'s UPDATE (built once for each vendor and form)."""
    table = connection.ops.quote_name(TaskRun._meta.db_table)
    current = " AND claim = %s" if with_attempt else ""
    without_flush, flushed = "", ""
    if no_flush:
        without_flush = "WITH no_flush AS (SELECT set_config('synchronous_commit', 'off', true)) "
        flushed = " AND EXISTS (SELECT 1 FROM no_flush)"
    return (
        f"{without_flush}UPDATE {table} SET status = {literal(T.RUNNING)}, started_at = %s, "
        f"worker = %s, attempts = attempts + 1, retries = %s "
        f"WHERE id = %s AND status IN ({literal(*TASK_TRANSITIONS[T.RUNNING])}){current}{flushed}"
    )


#: The statements prepared on each PostgreSQL connection: its psycopg connection -> names.
_prepared: "weakref.WeakKeyDictionary[Any, set[str]]" = weakref.WeakKeyDictionary()
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%s")


def execute_prepared(cursor: Any, sql: str, params: Sequence[Any] | dict[str, Any]) -> None:
    """Execute ``sql`` (``%s`` or ``%(name)s`` placeholders) on PostgreSQL as a
    statement prepared once per connection (``PREPARE``, then ``EXECUTE``);
    elsewhere as it is.

    Sent as text, the success's statement was parsed and planned anew each
    time: a third of a millisecond of a 3.4 ms hop. Django keeps psycopg's
    own prepared statements off (``prepare_threshold``), so these are
    PostgreSQL's, per session. Not behind a pooler that shares sessions
    between transactions, which Django's ``DISABLE_SERVER_SIDE_CURSORS``
    says is there: then the statement is sent as text. Should the session
    lose a statement all the same (a pooler, ``DISCARD ALL``), the database's
    statements go as text from then on, and :class:`PreparedStatementLost`
    has the report made again (``tracking.report``).
    """
    db = cursor.db
    if db.vendor != "postgresql" or _as_text(db):
        cursor.execute(sql, params)
        return
    name, prepare, execute, order = _preparation(sql)
    names = _prepared.setdefault(db.connection, set())
    values = [params[key] for key in order] if isinstance(params, dict) else params
    try:
        if name not in names:
            cursor.execute(prepare)
            names.add(name)
        cursor.execute(execute, values)
    except ProgrammingError as exc:
        if getattr(exc.__cause__, "sqlstate", None) not in _LOST:
            raise
        _text_only.add(db.alias)
        raise PreparedStatementLost(
            f"PostgreSQL lost a prepared statement of the engine ({exc}): is a pooler "
            "sharing sessions between transactions? Its statements go as text from now on; "
            "set DISABLE_SERVER_SIDE_CURSORS on that database to say so."
        ) from exc


class PreparedStatementLost(OperationalError):
    """The session lost a statement the engine prepared on it: the report is
    made again (:func:`django_workflows.tracking.report`), its statements as text."""


#: invalid_sql_statement_name (not there), duplicate_prepared_statement (another's there)
_LOST = frozenset({"26000", "42P05"})
#: The databases (aliases) whose statements go as text: a session lost one.
_text_only: set[str] = set()


def _as_text(db: Any) -> bool:
    return db.alias in _text_only or bool(db.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS"))


@functools.cache
def _preparation(sql: str) -> tuple[str, str, str, tuple[str, ...]]:
    """For ``sql``, built once: the prepared statement's name (from its text),
    its ``PREPARE`` and ``EXECUTE`` statements, and, for named placeholders,
    the parameters in ``$n`` order."""
    name = "django_workflows_" + hashlib.sha1(sql.encode()).hexdigest()[:16]
    prepare, count = _positional(sql)
    order = tuple(dict.fromkeys(match[1] for match in _PLACEHOLDER.finditer(sql) if match[1]))
    execute = f"EXECUTE {name}({', '.join(['%s'] * count)})"
    return name, f"PREPARE {name} AS {prepare}", execute, order


def _positional(sql: str) -> tuple[str, int]:
    """``sql`` with ``$n`` placeholders (each ``%s`` in turn, each ``%(name)s``
    by its first appearance), and how many there are."""
    numbers: dict[str, int] = {}
    count = 0

    def number(match: re.Match) -> str:
        nonlocal count
        if match[1] is None:
            count += 1
            return f"${count}"
        if match[1] not in numbers:
            count += 1
            numbers[match[1]] = count
        return f"${numbers[match[1]]}"

    positional = _PLACEHOLDER.sub(number, sql)
    return positional, count


def literal(*statuses: str) -> str:
    """Statuses (the models' own constants) as SQL string literals, comma-separated.

    Written into the hot path's statements rather than sent as parameters:
    PostgreSQL then parses and plans a shorter statement, and psycopg has
    fewer values to quote.
    """
    assert all(re.fullmatch("[a-z_]+", status) for status in statuses), statuses
    return ", ".join(f"'{status}'" for status in sorted(statuses))


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


#: The fields of a claimed child that a success returns, in the model's field
#: order: what sending it reads (:func:`.send.publish`), and what tells an
#: expanded node (foreach, replaced) and its claim. Its other fields are
#: deferred, loaded if read: returning all 31 columns cost the hot path about
#: a third of its statement's time (parsed, planned, sent and converted).
SENT_FIELDS = tuple(
    field.attname
    for field in TaskRun._meta.concrete_fields
    if field.attname
    in {
        "id",
        "workflow_id",
        "node",
        "task",
        "args",
        "kwargs",
        "options",
        "input",
        "claim",
        "status",
        "is_hook",
        "is_map",
        "map_size",
        "replacement",
    }
)

#: The three writes of :func:`succeed` in one round trip, with the same
#: guarded transitions: ``done`` moves the task run only from an active state;
#: ``released`` is :func:`release_children`'s conditional UPDATE. No row: the
#: task run was not moved. Otherwise one row per child touched (the claimed
#: ones, with :data:`SENT_FIELDS`, and those still pending), or one row of
#: NULLs for a task without children.
_SUCCEED_SQL = """
WITH done AS (
    UPDATE {run} SET status = {success}, result = %(result)s::jsonb, finished_at = %(now)s
    WHERE id = %(id)s AND status IN ({active}){current}
    RETURNING id
), counted AS (
    UPDATE {workflow} SET
        tasks_finished = tasks_finished + {finished},
        tasks_succeeded = tasks_succeeded + {succeeded}
    WHERE id = %(workflow)s AND EXISTS (SELECT 1 FROM done)
), released AS (
    UPDATE {run} AS child SET
        waiting = child.waiting - 1,
        status = CASE WHEN child.waiting = 1 AND child.status = {pending}
                      THEN {queued} ELSE child.status END,
        claim = CASE WHEN child.waiting = 1 AND child.status = {pending}
                     THEN %(claim)s::uuid ELSE child.claim END,
        queued_at = CASE WHEN child.waiting = 1 AND child.status = {pending}
                         THEN %(now)s ELSE child.queued_at END,
        sent_at = CASE WHEN child.waiting = 1 AND child.status = {pending}
                            AND NOT child.is_map AND child.replacement IS NULL
                       THEN %(now)s ELSE child.sent_at END
    FROM {edge} AS edge, done
    WHERE edge.to_taskrun_id = done.id AND child.id = edge.from_taskrun_id
    RETURNING {columns}
)
SELECT released.* FROM done LEFT JOIN released ON true
"""


@functools.cache
def _succeed_sql(with_attempt: bool) -> str:
    """``_SUCCEED_SQL`` (PostgreSQL's) with its names and constants written in (built once)."""
    current = " AND claim = %(attempt)s::uuid" if with_attempt else ""
    return _SUCCEED_SQL.format(**_names(current, task_run_columns(SENT_FIELDS, "child.")))


def _names(current: str, columns: str) -> dict[str, Any]:
    """What the success statements are written with: the tables, the statuses
    of the transitions they make (asserted here), the counters, ``current``
    (the attempt's condition) and the ``columns`` they return."""
    assert TASK_TRANSITIONS[T.SUCCESS] >= ACTIVE_TASK
    assert T.PENDING in TASK_TRANSITIONS[T.QUEUED]
    quote = connection.ops.quote_name
    return {
        "run": quote(TaskRun._meta.db_table),
        "workflow": quote(Workflow._meta.db_table),
        "edge": quote(Edge._meta.db_table),
        "success": literal(T.SUCCESS),
        "active": literal(*ACTIVE_TASK),
        "pending": literal(T.PENDING),
        "queued": literal(T.QUEUED),
        "current": current,
        "columns": columns,
        **{name: int(n) for name, n in counters.SUCCESS.items()},
    }


def _succeed_in_one_statement(
    task_id: Any, workflow_id: Any, result_json: str, finished_at: Any, claim: Any, attempt: Any
) -> Succeeded | None:
    params = {
        "id": str(task_id),
        "workflow": str(workflow_id),
        # a None result is SQL NULL, as the ORM stores it, not JSON null
        "result": None if result_json == "null" else result_json,
        "now": finished_at,
        "claim": str(claim),
        "attempt": None if attempt is None else str(attempt),
    }
    with connection.cursor() as cursor:
        execute_prepared(cursor, _succeed_sql(attempt is not None), params)
        rows = cursor.fetchall()
    if not rows:
        return None
    return _claimed(as_task_runs([row for row in rows if row[0] is not None], SENT_FIELDS), claim)


def _claimed(touched: list[TaskRun], claim: Any) -> Succeeded:
    """What a success did, from the children its release touched."""
    claim = uuid.UUID(str(claim))
    return Succeeded(
        claimed=[child for child in touched if child.status == T.QUEUED and child.claim == claim],
        may_finish=not any(child.status == T.PENDING for child in touched),
    )


def task_run_columns(fields: Sequence[str] = (), prefix: str = "") -> str:
    """The columns of a task run's ``fields`` (attnames, default all), in the
    model's field order, for a RETURNING or a SELECT that :func:`as_task_runs`
    reads back."""
    quote = connection.ops.quote_name
    return ", ".join(
        prefix + quote(field.column)
        for field in TaskRun._meta.concrete_fields
        if not fields or field.attname in fields
    )


def as_task_runs(rows: Iterable[Sequence[Any]], fields: Sequence[str] = ()) -> list[TaskRun]:
    """Rows of :func:`task_run_columns` as task runs, converted as the ORM
    converts them; the fields not in ``fields`` (attnames, default all) are
    deferred, as with ``only()``.

    What ``TaskRun.objects.raw()`` does, without its set-up on every call
    (resolving the columns, the converters): that cost more than the success
    statement's own round trip.
    """
    fields = tuple(fields) or _ALL_FIELDS
    names = None if fields == _ALL_FIELDS else fields
    return [TaskRun.from_db(connection.alias, names, values) for values in converted(rows, fields)]


def converted(rows: Iterable[Sequence[Any]], fields: tuple[str, ...]) -> list[list[Any]]:
    """Rows of plain SQL selecting the task run ``fields``' columns, with their
    values converted by the ORM's own converters (JSON decoded, SQLite's text
    UUIDs and dates)."""
    compiler, converters = _conversion(connection.vendor, fields)
    return list(compiler.apply_converters(rows, converters))


_ALL_FIELDS = tuple(field.attname for field in TaskRun._meta.concrete_fields)


@functools.cache
def _conversion(vendor: str, fields: tuple[str, ...]) -> tuple[Any, dict[int, Any]]:
    """An ORM compiler and its converters for ``fields``' columns, built once per
    vendor (building them on every call is what made ``raw()`` slow). The
    compiler holds ``django.db.connection``, which is each thread's own."""
    compiler = Query(TaskRun).get_compiler(connection=connection)
    table = TaskRun._meta.db_table
    columns = [TaskRun._meta.get_field(name).get_col(table) for name in fields]
    return compiler, compiler.get_converters(columns)


#: :func:`succeed` on SQLite: the three writes of ``_SUCCEED_SQL`` as three
#: statements (SQLite has no UPDATE in a WITH), the last returning the children it
#: touched. Plain SQL: the ORM spent several times SQLite's own time building
#: these, while every other worker process waited for the one write lock.
_SQLITE_DONE = """
UPDATE {run} SET status = {success}, result = %s, finished_at = %s
WHERE id = %s AND status IN ({active}){current}
"""
_SQLITE_COUNTED = """
UPDATE {workflow} SET
    tasks_finished = tasks_finished + {finished},
    tasks_succeeded = tasks_succeeded + {succeeded}
WHERE id = %s
"""
_SQLITE_RELEASED = """
UPDATE {run} SET
    waiting = waiting - 1,
    status = CASE WHEN waiting = 1 AND status = {pending} THEN {queued} ELSE status END,
    claim = CASE WHEN waiting = 1 AND status = {pending} THEN %(claim)s ELSE claim END,
    queued_at = CASE WHEN waiting = 1 AND status = {pending} THEN %(now)s ELSE queued_at END,
    sent_at = CASE WHEN waiting = 1 AND status = {pending}
                        AND NOT is_map AND replacement IS NULL
                   THEN %(now)s ELSE sent_at END
WHERE id IN (SELECT from_taskrun_id FROM {edge} WHERE to_taskrun_id = %(id)s)
RETURNING {columns}
"""


@functools.cache
def _sqlite_sql(with_attempt: bool) -> tuple[str, str, str]:
    """The three statements, with their names and constants written in (built once)."""
    names = _names(" AND claim = %s" if with_attempt else "", task_run_columns(SENT_FIELDS))
    return (
        _SQLITE_DONE.format(**names),
        _SQLITE_COUNTED.format(**names),
        _SQLITE_RELEASED.format(**names),
    )


def _succeed_in_three_statements(
    task_id: Any, workflow_id: Any, result_json: str, finished_at: Any, claim: Any, attempt: Any
) -> Succeeded | None:
    done, counted, released = _sqlite_sql(attempt is not None)
    run_id, now = db_value("id", task_id), db_value("finished_at", finished_at)
    result = None if result_json == "null" else result_json
    with connection.cursor() as cursor:
        current = [] if attempt is None else [db_value("claim", attempt)]
        cursor.execute(done, [result, now, run_id, *current])
        if cursor.rowcount != 1:
            return None
        cursor.execute(counted, [db_value("workflow", workflow_id)])
        cursor.execute(released, {"claim": db_value("claim", claim), "now": now, "id": run_id})
        touched = as_task_runs(cursor.fetchall(), SENT_FIELDS)
    return _claimed(touched, claim)
