"""The tracked engine's floor (benchmark row ``floor``): a chain or a chord run by
the smallest engine that keeps the tracked run's promises, written as bare SQL
on tables of its own, on PostgreSQL or SQLite.

Each hop does what the engine's hop must do and nothing else: the start,
guarded by the message's claim (so a stale or canceled message runs nothing)
and committed without waiting for its WAL flush, as ``fastpath.start`` does;
(waiting for the claim's commit when its message came first, as it does); then,
once the task has returned and before Celery stores its result (as the engine
reports a success, from ``mark_as_done``), one transaction that stores the
result, counts it on the run's row, releases the child through the edge table
and claims it, reads the child's message from its row (task, arguments,
options, as the engine's are rows), sends it, and commits durably, as
``fastpath.succeed`` and ``send.send_in_claim`` do (on SQLite as separate
statements in one transaction, as the engine's SQLite path does). No ORM, no
engine code: what is left over native Celery is the database's and the
message's price of those promises. Its task table has the task runs' indexes
(the lists' of issue 18): a status change writes every one of them, for the
engine and the floor alike; and its tables keep every canvas's rows, as the
engine's keep every run's.
"""

import json
import time
import uuid
from typing import Any

from celery import Task, shared_task
from celery.signals import task_prerun
from django.db import connection, transaction

_PG_TABLES = """
CREATE TABLE floor_run (id int PRIMARY KEY, finished int NOT NULL DEFAULT 0);
CREATE TABLE floor_task (
    id uuid PRIMARY KEY, run int NOT NULL REFERENCES floor_run (id), node int NOT NULL,
    status varchar(20) NOT NULL, waiting int NOT NULL, claim uuid, result jsonb,
    worker varchar(255) NOT NULL DEFAULT '', attempts int NOT NULL DEFAULT 0,
    queued_at timestamptz, sent_at timestamptz, started_at timestamptz, finished_at timestamptz,
    task varchar(255) NOT NULL DEFAULT 'tests.testapp.floor.bench_floor_hop',
    is_hook boolean NOT NULL DEFAULT false,
    mapped_from uuid, args jsonb NOT NULL DEFAULT '[]', kwargs jsonb NOT NULL DEFAULT '{}',
    options jsonb NOT NULL DEFAULT '{}', UNIQUE (run, node)
);
CREATE INDEX floor_task_status ON floor_task (status, run, node);
CREATE INDEX floor_task_task ON floor_task (task, run, node);
CREATE INDEX floor_task_prefix ON floor_task (upper(task) text_pattern_ops);
CREATE INDEX floor_task_items ON floor_task (mapped_from);
CREATE INDEX floor_task_hooks ON floor_task (run, node) WHERE is_hook;
CREATE INDEX floor_task_unsent ON floor_task (queued_at)
    WHERE sent_at IS NULL AND status = 'queued';
CREATE TABLE floor_edge (
    id bigserial PRIMARY KEY, child uuid NOT NULL REFERENCES floor_task (id),
    parent uuid NOT NULL REFERENCES floor_task (id), UNIQUE (child, parent)
);
CREATE INDEX floor_edge_parent ON floor_edge (parent)
"""

_SQLITE_TABLES = """
CREATE TABLE floor_run (id integer PRIMARY KEY, finished integer NOT NULL DEFAULT 0);
CREATE TABLE floor_task (
    id char(32) PRIMARY KEY, run integer NOT NULL REFERENCES floor_run (id),
    node integer NOT NULL, status varchar(20) NOT NULL, waiting integer NOT NULL,
    claim char(32), result text, worker varchar(255) NOT NULL DEFAULT '',
    attempts integer NOT NULL DEFAULT 0, queued_at datetime, sent_at datetime,
    started_at datetime, finished_at datetime,
    task varchar(255) NOT NULL DEFAULT 'tests.testapp.floor.bench_floor_hop',
    is_hook bool NOT NULL DEFAULT 0,
    mapped_from char(32), args text NOT NULL DEFAULT '[]', kwargs text NOT NULL DEFAULT '{}',
    options text NOT NULL DEFAULT '{}', UNIQUE (run, node)
);
CREATE INDEX floor_task_status ON floor_task (status, run, node);
CREATE INDEX floor_task_task ON floor_task (task, run, node);
CREATE INDEX floor_task_prefix ON floor_task (upper(task));
CREATE INDEX floor_task_items ON floor_task (mapped_from);
CREATE INDEX floor_task_hooks ON floor_task (run, node) WHERE is_hook;
CREATE INDEX floor_task_unsent ON floor_task (queued_at)
    WHERE sent_at IS NULL AND status = 'queued';
CREATE TABLE floor_edge (
    id integer PRIMARY KEY AUTOINCREMENT, child char(32) NOT NULL REFERENCES floor_task (id),
    parent char(32) NOT NULL REFERENCES floor_task (id), UNIQUE (child, parent)
);
CREATE INDEX floor_edge_parent ON floor_edge (parent)
"""

_PG_START = """
WITH no_flush AS (SELECT set_config('synchronous_commit', 'off', true))
UPDATE floor_task SET status = 'running', started_at = now(), worker = %s,
    attempts = attempts + 1
WHERE id = %s AND status = 'queued' AND claim = %s AND EXISTS (SELECT 1 FROM no_flush)
"""

_SQLITE_START = """
UPDATE floor_task SET status = 'running', started_at = CURRENT_TIMESTAMP, worker = %s,
    attempts = attempts + 1
WHERE id = %s AND status = 'queued' AND claim = %s
"""

_PG_SUCCEED = """
WITH done AS (
    UPDATE floor_task SET status = 'success', result = %s::jsonb, finished_at = now()
    WHERE id = %s AND status = 'running' AND claim = %s RETURNING id, run
), counted AS (
    UPDATE floor_run SET finished = finished + 1 WHERE id = (SELECT run FROM done)
), released AS (
    UPDATE floor_task AS child SET
        waiting = child.waiting - 1,
        status = CASE WHEN child.waiting = 1 THEN 'queued' ELSE child.status END,
        claim = CASE WHEN child.waiting = 1 THEN %s::uuid ELSE child.claim END,
        queued_at = CASE WHEN child.waiting = 1 THEN now() ELSE child.queued_at END,
        sent_at = CASE WHEN child.waiting = 1 THEN now() ELSE child.sent_at END
    FROM floor_edge AS edge, done
    WHERE edge.parent = done.id AND child.id = edge.child
    RETURNING child.id, child.claim, child.task, child.args, child.kwargs, child.options
)
SELECT id, task, args, kwargs, options FROM released WHERE claim = %s::uuid
"""

#: SQLite: the same writes as separate statements in one (IMMEDIATE) transaction.
_SQLITE_SUCCEED = (
    "UPDATE floor_task SET status = 'success', result = %s, finished_at = CURRENT_TIMESTAMP "
    "WHERE id = %s AND status = 'running' AND claim = %s",
    "UPDATE floor_run SET finished = finished + 1 "
    "WHERE id = (SELECT run FROM floor_task WHERE id = %s)",
    """UPDATE floor_task SET
        waiting = waiting - 1,
        status = CASE WHEN waiting = 1 THEN 'queued' ELSE status END,
        claim = CASE WHEN waiting = 1 THEN %s ELSE claim END,
        queued_at = CASE WHEN waiting = 1 THEN CURRENT_TIMESTAMP ELSE queued_at END,
        sent_at = CASE WHEN waiting = 1 THEN CURRENT_TIMESTAMP ELSE sent_at END
    WHERE id IN (SELECT child FROM floor_edge WHERE parent = %s)
    RETURNING id, claim, task, args, kwargs, options""",
)


def create_tables() -> None:
    """(Re)create the floor's tables in the default database."""
    postgres = connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        for table in ("floor_edge", "floor_task", "floor_run"):
            cursor.execute(f"DROP TABLE IF EXISTS {table}")
        for statement in (_PG_TABLES if postgres else _SQLITE_TABLES).split(";"):
            cursor.execute(statement)


def _id(value: uuid.UUID | str) -> str:
    """A uuid as the floor's tables store it (SQLite: 32 hex digits, as Django does)."""
    value = uuid.UUID(str(value))
    return str(value) if connection.vendor == "postgresql" else value.hex


class _SucceedsBeforeStoring:
    """The app's result backend, the floor's success run first when a task is done."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def mark_as_done(self, task_id: str, result: Any, request: Any = None, *args, **kwargs) -> Any:
        _succeed(request)
        return self._backend.mark_as_done(task_id, result, request, *args, **kwargs)


class FloorTask(Task):
    @property
    def backend(self) -> Any:
        return _SucceedsBeforeStoring(self.app.backend)


@shared_task(base=FloorTask)
def bench_floor_hop(claim: str) -> int:
    """A no-op task of the floor's canvas; its claim comes as its argument."""
    return 1


@task_prerun.connect(sender=bench_floor_hop)
def _start(task_id: str, task: Any, args: Any, **kwargs: Any) -> None:
    postgres = connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        params = [task.request.hostname or "", _id(task_id), args[0]]
        cursor.execute(_PG_START if postgres else _SQLITE_START, params)
        if cursor.rowcount != 1 and postgres:
            # sent before its claim committed: wait for it, as the engine does
            cursor.execute("SELECT 1 FROM floor_task WHERE id = %s FOR NO KEY UPDATE", [task_id])
            cursor.execute(_PG_START, params)
        if cursor.rowcount != 1:
            raise RuntimeError(f"floor task {task_id} was not queued under its claim")


def _succeed(request: Any) -> None:
    claim = _id(uuid.uuid4())
    me, mine = _id(request.id), request.args[0]
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(_PG_SUCCEED, ["1", me, mine, claim, claim])
            ready = cursor.fetchall()
        else:
            done, counted, released = _SQLITE_SUCCEED
            cursor.execute(done, ["1", me, mine])
            if cursor.rowcount != 1:
                return
            cursor.execute(counted, [me])
            cursor.execute(released, [claim, me])
            rows = cursor.fetchall()
            ready = [(child, *message) for child, mine, *message in rows if mine == claim]
        for child, task, args, kwargs, options in ready:
            # the message is read from the child's row, as the engine reads it
            assert task == bench_floor_hop.name
            bench_floor_hop.apply_async(
                (claim, *json.loads(args)),
                json.loads(kwargs),
                task_id=str(uuid.UUID(str(child))),
                **json.loads(options),
            )


def lay(width: int, depth: int) -> tuple[int, list[tuple[str, str]]]:
    """Rows of a chain (``width`` 1, ``depth`` tasks) or a chord (``width`` header
    tasks and a body, ``depth`` 2), the first tasks queued under one claim:
    return the run's id and those tasks' (id, claim), to send. The rows of the
    runs before stay, as the engine's do."""
    claim = _id(uuid.uuid4())
    if width == 1:
        ids = [_id(uuid.uuid4()) for _ in range(depth)]
        tasks = [(ids[0], 0, "queued", 0, claim)]
        tasks += [(ids[n], n, "pending", 1, None) for n in range(1, depth)]
        edges = [(ids[n], ids[n - 1]) for n in range(1, depth)]
        first = ids[:1]
    else:
        header, body = [_id(uuid.uuid4()) for _ in range(width)], _id(uuid.uuid4())
        tasks = [(task, n, "queued", 0, claim) for n, task in enumerate(header)]
        tasks.append((body, width, "pending", width, None))
        edges = [(body, task) for task in header]
        first = header
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) + 1 FROM floor_run")
        (run_id,) = cursor.fetchone()
        cursor.execute("INSERT INTO floor_run (id) VALUES (%s)", [run_id])
        cursor.executemany(
            "INSERT INTO floor_task (id, run, node, status, waiting, claim) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            [(task, run_id, *rest) for task, *rest in tasks],
        )
        cursor.executemany("INSERT INTO floor_edge (child, parent) VALUES (%s, %s)", edges)
    return run_id, [(str(uuid.UUID(task)), claim) for task in first]


def run(width: int, depth: int) -> None:
    """Lay and send a floor canvas; return once all its tasks succeeded."""
    run_id, first = lay(width, depth)
    with bench_floor_hop.app.producer_or_acquire() as producer:
        for task_id, claim in first:
            bench_floor_hop.apply_async((claim,), task_id=task_id, producer=producer)
    total = depth if width == 1 else width + 1
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute("SELECT finished FROM floor_run WHERE id = %s", [run_id])
            if cursor.fetchone()[0] == total:
                return
        time.sleep(0.01)
    raise TimeoutError("the floor's canvas did not finish in 600 s: see the worker's log")
