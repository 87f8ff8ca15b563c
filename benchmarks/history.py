"""The history row: admin and API lists, and prune, over months of runs (PostgreSQL).

It builds the history with set-based SQL (``generate_series``), not the ORM row by
row: ``DW_HISTORY_RUNS`` finished runs (default 1,000,000) over the last year, 20
names, 5 task runs each in a chain (4 edges), 90 % succeeded, 7 % failed, 3 %
canceled, their ids time-ordered as the app makes them (:mod:`django_workflows.ids`).
Then it times the server side of every list, filter and search of the admin and the
API through Django's test client (median of ``reps``, at least 3, after a warm-up),
and ``manage.py workflows prune --older-than 300`` last, in a transaction rolled back
after it is timed (any foreign keys checked as a commit would).

``DW_BENCH_REUSE_DB=1`` keeps the database of the last run and its history (migrated
to the code's migrations): before/after on the same rows, without building them again.
"""

import io
import os
import statistics
import time
from collections.abc import Callable

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from django_workflows.definitions import registry
from django_workflows.models import TaskRun, Workflow

NAMES = 20
TASKS = 5  # per run, a chain


def _ordered_id(key: str, seconds_ago: str) -> str:
    """SQL for the version 7 UUID the app would have given a row made ``seconds_ago``
    before ``%(now)s`` (:mod:`django_workflows.ids`): its milliseconds first, then
    md5(``key``)'s digits."""
    stamp = f"lpad(to_hex((extract(epoch from %(now)s - make_interval(secs => {seconds_ago}))"
    stamp += " * 1000)::bigint), 12, '0')"
    digest = f"md5({key})"
    return f"({stamp} || '7' || substr({digest}, 14, 3) || 'a' || substr({digest}, 18, 15))::uuid"


_AGE = "i * 31536000.0 / %(runs)s"
RUN_ID = _ordered_id("'run' || i", _AGE)
TASK_ID = _ordered_id("'task' || i || '.' || n", f"{_AGE} - n")
PARENT_ID = _ordered_id("'task' || i || '.' || (n - 1)", f"{_AGE} - (n - 1)")

RUNS_SQL = """
INSERT INTO {workflow} (id, name, payload, status, result, result_ref, error,
    idempotency_key, created, started, finished, tasks_total, tasks_finished,
    tasks_succeeded, tasks_failed)
SELECT {run_id}, (%(names)s::text[])[1 + i %% %(n_names)s], '{{}}',
    CASE WHEN i %% 100 < 90 THEN 'success' WHEN i %% 100 < 97 THEN 'failure'
         ELSE 'canceled' END,
    NULL, NULL, '', '',
    now() - make_interval(secs => i * 31536000.0 / %(runs)s),
    now() - make_interval(secs => i * 31536000.0 / %(runs)s - 1),
    now() - make_interval(secs => i * 31536000.0 / %(runs)s - 5),
    %(tasks)s, %(tasks)s,
    CASE WHEN i %% 100 < 90 THEN %(tasks)s ELSE 2 END,
    CASE WHEN i %% 100 BETWEEN 90 AND 96 THEN 1 ELSE 0 END
FROM generate_series(0, %(runs)s - 1) AS i
"""

# Node n of run i: failed runs fail at node 2 (upstream_failed after it), canceled runs
# are canceled from node 2 on.
TASK_RUNS_SQL = """
INSERT INTO {taskrun} (id, workflow_id, node, task, args, kwargs, options, immutable,
    input, waiting, status, exception_type, exception_message, traceback, attempts,
    retries, marked_success, revoked, is_hook, is_map, worker, queued_at, started_at,
    finished_at)
SELECT {task_id}, {run_id}, n,
    'bench.step' || n || '_' || (i %% %(n_names)s), '[]', '{{}}', '{{}}', false,
    CASE WHEN n = 0 THEN NULL ELSE to_jsonb(n - 1) END, 0,
    CASE WHEN i %% 100 < 90 OR n < 2 THEN 'success'
         WHEN i %% 100 < 97 THEN CASE WHEN n = 2 THEN 'failure' ELSE 'upstream_failed' END
         ELSE 'canceled' END,
    '', '', '', 1, 0, false, false, false, false, 'bench@host',
    now() - make_interval(secs => i * 31536000.0 / %(runs)s - n),
    now() - make_interval(secs => i * 31536000.0 / %(runs)s - n),
    now() - make_interval(secs => i * 31536000.0 / %(runs)s - n - 1)
FROM generate_series(0, %(runs)s - 1) AS i, generate_series(0, %(tasks)s - 1) AS n
"""

EDGES_SQL = """
INSERT INTO {edges} (from_taskrun_id, to_taskrun_id)
SELECT {task_id}, {parent_id}
FROM generate_series(0, %(runs)s - 1) AS i, generate_series(1, %(tasks)s - 1) AS n
"""


def build(runs: int) -> list[str]:
    """Insert the history; return the workflow names used."""
    registered = [d.name for d in registry][:NAMES]
    names = registered + [f"bench.flow{k:02d}" for k in range(NAMES - len(registered))]
    tables = {
        "workflow": Workflow._meta.db_table,
        "taskrun": TaskRun._meta.db_table,
        "edges": TaskRun.parents.through._meta.db_table,
    }
    # one "now" for every statement: each row's id is computed from it in each table
    params = {
        "names": names,
        "n_names": len(names),
        "runs": runs,
        "tasks": TASKS,
        "now": timezone.now(),
    }
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO off")
        for sql in (RUNS_SQL, TASK_RUNS_SQL, EDGES_SQL):
            ids = {"run_id": RUN_ID, "task_id": TASK_ID, "parent_id": PARENT_ID}
            cursor.execute(sql.format(**tables, **ids), params)
    analyze()
    return names


def analyze() -> None:
    tables = [m._meta.db_table for m in (Workflow, TaskRun, TaskRun.parents.through)]
    with connection.cursor() as cursor:  # VACUUM cannot run in a transaction block
        for table in tables:
            cursor.execute(f"VACUUM ANALYZE {table}")


class Rollback(Exception):
    pass


def median_ms(fn: Callable[[], object], reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(max(3, reps)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def pages(names: list[str], failed_run: str) -> list[tuple[str, str]]:
    runs, tasks = "/admin/django_workflows/workflow/", "/admin/django_workflows/taskrun/"
    name = names[3]
    task = f"bench.step2_{3}"
    return [
        ("admin runs list", runs),
        ("admin runs ?status__exact=failure", f"{runs}?status__exact=failure"),
        ("admin runs ?name=", f"{runs}?name={name}"),
        ("admin runs search ?q=abc", f"{runs}?q=abc"),
        ("admin runs search ?q=<id>", f"{runs}?q={failed_run}"),
        ("admin task runs list", tasks),
        ("admin task runs ?status__exact=failure", f"{tasks}?status__exact=failure"),
        ("admin task runs ?task=", f"{tasks}?task={task}"),
        ("admin task runs ?workflow__name=", f"{tasks}?workflow__name={name}"),
        ("admin task runs ?is_hook__exact=1", f"{tasks}?is_hook__exact=1"),
        ("admin task runs search ?q=abc", f"{tasks}?q=abc"),
        ("GET /api/workflows/", "/api/workflows/"),
        ("GET /api/workflows/?status=failure", "/api/workflows/?status=failure"),
        ("GET /api/workflows/?name=", f"/api/workflows/?name={name}"),
        ("GET /api/workflows/?search=abc", "/api/workflows/?search=abc"),
        ("GET /api/task-runs/", "/api/task-runs/"),
        ("GET /api/task-runs/?status=success", "/api/task-runs/?status=success"),
        ("GET /api/task-runs/?status=failure", "/api/task-runs/?status=failure"),
        ("GET /api/task-runs/?task=", f"/api/task-runs/?task={task}"),
        ("GET /api/task-runs/?workflow=", f"/api/task-runs/?workflow={failed_run}"),
    ]


def history(reps: int, row: Callable[..., None]) -> None:
    if connection.vendor != "postgresql":
        row("history", "-", "-", "-", "PostgreSQL only")
        return
    runs = int(os.environ.get("DW_HISTORY_RUNS", 1_000_000))
    start = time.perf_counter()
    reused = bool(os.environ.get("DW_BENCH_REUSE_DB")) and Workflow.objects.exists()
    if reused:
        names = sorted(Workflow.objects.values_list("name", flat=True).distinct())
        runs = Workflow.objects.count()
        analyze()
    else:
        names = build(runs)
    row(
        f"history: {'reused' if reused else 'built'} {runs:,} runs",
        "s",
        f"{time.perf_counter() - start:.0f}",
        "-",
        f"{runs * TASKS:,} task runs, {runs * (TASKS - 1):,} edges",
    )
    get_user_model().objects.filter(username="history").delete()
    admin = get_user_model().objects.create_superuser("history", "history@example.com", "pw")
    client = Client()
    client.force_login(admin)
    failed_run = str(Workflow.objects.filter(status="failure").values_list("pk", flat=True)[0])
    for label, url in pages(names, failed_run):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        ms = median_ms(lambda url=url: client.get(url), reps)
        target = 100 if label.startswith("GET") else 150
        row(label, "ms median", f"{ms:.0f}", "-", "ok" if ms < target else f"> {target} ms")
    out = io.StringIO()
    try:
        with transaction.atomic():  # rolled back: the next run finds the same history
            # Django's foreign keys are DEFERRABLE INITIALLY DEFERRED: checked at commit,
            # which a rolled-back transaction never reaches. Checked at each statement
            # instead, they are timed as each batch's commit would pay them.
            with connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            start = time.perf_counter()
            call_command("workflows", "prune", "--older-than", "300", stdout=out)
            seconds = time.perf_counter() - start
            raise Rollback
    except Rollback:
        pass
    deleted = int(out.getvalue().split()[0])
    row(
        "prune --older-than 300",
        "runs/s",
        f"{deleted / seconds:,.0f}",
        "-",
        f"{deleted:,} runs ({deleted * TASKS:,} task runs) in {seconds:.1f} s",
    )
