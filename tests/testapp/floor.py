"""The hop's floor (benchmark row ``floor``): a chain run by the smallest engine
that keeps the tracked hop's promises, written as bare SQL on a table of its own.

Each hop does what the engine's hop must do and nothing else: the start,
guarded by the message's claim (so a stale or canceled message runs nothing)
and committed without waiting for its WAL flush, as ``fastpath.start`` does;
(waiting for the claim's commit when its message came first, as it does);
then, in the task's success signal (after Celery stored the result, as in a
tracked run), one transaction that stores the result, counts it on the run's
row, releases the child through the edge table and claims it, sends the
child's message, and commits durably, as ``fastpath.succeed`` and
``send.send_in_claim`` do. No ORM, no engine code: what is left over native
Celery is the database's and the message's price of those promises.
"""

import uuid
from typing import Any

from celery import shared_task
from celery.signals import task_prerun, task_success
from django.db import connection, transaction

TABLES = """
DROP TABLE IF EXISTS floor_edge, floor_task, floor_run;
CREATE TABLE floor_run (id int PRIMARY KEY, finished int NOT NULL DEFAULT 0);
CREATE TABLE floor_task (
    id uuid PRIMARY KEY, run int NOT NULL REFERENCES floor_run (id), node int NOT NULL,
    status varchar(20) NOT NULL, waiting int NOT NULL, claim uuid, result jsonb,
    worker varchar(255) NOT NULL DEFAULT '', attempts int NOT NULL DEFAULT 0,
    queued_at timestamptz, sent_at timestamptz, started_at timestamptz, finished_at timestamptz,
    UNIQUE (run, node)
);
CREATE INDEX floor_task_status ON floor_task (status, run, node);
CREATE TABLE floor_edge (
    id bigserial PRIMARY KEY, child uuid NOT NULL REFERENCES floor_task (id),
    parent uuid NOT NULL REFERENCES floor_task (id), UNIQUE (child, parent)
);
CREATE INDEX floor_edge_parent ON floor_edge (parent);
"""

_START = """
WITH no_flush AS (SELECT set_config('synchronous_commit', 'off', true))
UPDATE floor_task SET status = 'running', started_at = now(), worker = %s,
    attempts = attempts + 1
WHERE id = %s AND status = 'queued' AND claim = %s AND EXISTS (SELECT 1 FROM no_flush)
"""

_SUCCEED = """
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
    RETURNING child.id, child.claim, child.status
)
SELECT id FROM released WHERE claim = %s::uuid
"""


@shared_task
def bench_floor_hop(claim: str) -> int:
    """A no-op hop of the floor's chain; its claim comes as its argument."""
    return 1


@task_prerun.connect(sender=bench_floor_hop)
def _start(task_id: str, task: Any, args: Any, **kwargs: Any) -> None:
    with connection.cursor() as cursor:
        params = [task.request.hostname or "", task_id, args[0]]
        cursor.execute(_START, params)
        if cursor.rowcount != 1:  # sent before its claim committed: wait for it, as the engine does
            cursor.execute("SELECT 1 FROM floor_task WHERE id = %s FOR NO KEY UPDATE", [task_id])
            cursor.execute(_START, params)
        if cursor.rowcount != 1:
            raise RuntimeError(f"floor hop {task_id} was not queued under its claim")


@task_success.connect(sender=bench_floor_hop)
def _succeed(sender: Any, result: Any, **kwargs: Any) -> None:
    request = sender.request
    claim = str(uuid.uuid4())
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_SUCCEED, ["1", request.id, request.args[0], claim, claim])
        for (child,) in cursor.fetchall():
            bench_floor_hop.apply_async((claim,), task_id=str(child))


def lay_chain(hops: int) -> tuple[str, str]:
    """Rows of a ``hops``-long chain, its first hop queued under a claim: the
    first hop's id and claim."""
    ids = [uuid.uuid4() for _ in range(hops)]
    claim = uuid.uuid4()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("TRUNCATE floor_edge, floor_task, floor_run")
        cursor.execute("INSERT INTO floor_run (id) VALUES (1)")
        cursor.executemany(
            "INSERT INTO floor_task (id, run, node, status, waiting, claim) "
            "VALUES (%s, 1, %s, %s, %s, %s)",
            [(ids[0], 0, "queued", 0, claim)]
            + [(ids[n], n, "pending", 1, None) for n in range(1, hops)],
        )
        cursor.executemany(
            "INSERT INTO floor_edge (child, parent) VALUES (%s, %s)",
            [(ids[n], ids[n - 1]) for n in range(1, hops)],
        )
    return str(ids[0]), str(claim)


def finished(hops: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT finished FROM floor_run WHERE id = 1")
        return cursor.fetchone()[0] == hops
