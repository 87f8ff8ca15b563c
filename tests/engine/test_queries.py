"""The cost of tracking is a constant number of queries per task, whatever the DAG's size.

The broker send is recorded instead of made (this counts SQL, not messages).
"""

import threading

import pytest
from celery import chain, chord
from django.db import connection

from django_workflows import engine, launch_canvas
from django_workflows.models import TaskRunStatus as T
from django_workflows.models import WorkflowStatus as W
from tests.testapp.tasks import add, tsum

PG = connection.vendor == "postgresql"
#: prerun, then: success, run counters, children released (and claimed, and marked
#: sent: their messages go before the commit) returning the claimed and the still
#: pending. On PostgreSQL those three are one statement; on SQLite the success's
#: transaction begins with a query of its own (BEGIN IMMEDIATE takes the write lock).
QUERIES_PER_TASK = 2 if PG else 5


@pytest.fixture(autouse=True)
def no_node_limit(settings):
    """The tests' settings cap runs at 2,000 tasks; these runs are larger."""
    settings.DJANGO_WORKFLOWS = {}


@pytest.fixture
def sent(monkeypatch):
    sent = []
    monkeypatch.setattr(
        "celery.canvas.Signature.apply_async",
        lambda self, *args, **options: sent.append((self.task, self.args, options["task_id"])),
    )
    return sent


def lifecycle_sql(wf, node: int, value) -> list[str]:
    run = wf.task_runs.get(node=node)
    queries = []
    with connection.execute_wrapper(
        lambda execute, sql, *args: queries.append(sql) or execute(sql, *args)
    ):
        engine.task_started(str(run.pk), str(wf.pk), "w1")
        engine.task_succeeded(str(run.pk), str(wf.pk), node, value)
    return queries


def lifecycle_queries(wf, node: int, value) -> int:
    """Statements per task; on PostgreSQL the first task of a connection also
    prepares the hot path's statements, once (not counted: see the test below)."""
    return sum(not sql.startswith("PREPARE ") for sql in lifecycle_sql(wf, node, value))


@pytest.mark.skipif(not PG, reason="PostgreSQL's prepared statements")
@pytest.mark.django_db(transaction=True)
def test_the_hot_statements_are_prepared_once_per_connection(sent):
    wf = launch_canvas(chain([add.s(1, 1)] + [add.s(1)] * 3))
    connection.close()  # a worker's new connection

    first, second = lifecycle_sql(wf, 0, 2), lifecycle_sql(wf, 1, 3)

    assert [sql.split()[0] for sql in first] == ["PREPARE", "EXECUTE", "PREPARE", "EXECUTE"]
    assert [sql.split()[0] for sql in second] == ["EXECUTE", "EXECUTE"]
    assert [node.status for node in wf.task_runs.order_by("node")][:3] == [
        T.SUCCESS,
        T.SUCCESS,
        T.QUEUED,
    ]
    assert [args for _, args, _ in sent[1:]] == [(2, 1), (3, 1)]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("size", [10, 10_000])
def test_queries_per_task_do_not_grow_with_the_dag(sent, size):
    wf = launch_canvas(chain([add.s(1, 1)] + [add.s(1)] * (size - 1)))
    assert lifecycle_queries(wf, 0, 2) == QUERIES_PER_TASK
    assert lifecycle_queries(wf, 1, 3) == QUERIES_PER_TASK
    assert [args for _, args, _ in sent[1:]] == [(2, 1), (3, 1)]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("width", [10, 2_000])
def test_queries_for_a_join_do_not_grow_with_its_parents(sent, width):
    wf = launch_canvas(chord([add.s(i, 0) for i in range(width)], tsum.s()))
    counts = [lifecycle_queries(wf, i, i) for i in range(width)]
    # a parent that does not complete the join: the join is released, still
    # pending, so the run cannot be done: no "is the run done?" read
    assert set(counts[:-1]) == {QUERIES_PER_TASK}
    # the last parent claims the join and reads the header results once
    assert counts[-1] == QUERIES_PER_TASK + 1
    assert sent[-1][1] == (list(range(width)),)
    # the join, the last task: no children; reads the counters, the result, closes the
    # run (in a transaction with its hook: on SQLite, its BEGIN is a query of its own)
    join = width
    assert lifecycle_queries(wf, join, 1) == QUERIES_PER_TASK + 3 + (0 if PG else 1)
    wf.refresh_from_db()
    assert (wf.status, wf.result) == (W.SUCCESS, 1)


@pytest.mark.django_db(transaction=True)
def test_parents_finishing_at_once_claim_the_join_exactly_once(sent):
    """32 threads report 32 parents' success at the same instant."""
    wf = launch_canvas(chord([add.s(i, 0) for i in range(32)], tsum.s()))
    runs = list(wf.task_runs.filter(status=T.QUEUED).order_by("node"))
    barrier = threading.Barrier(len(runs))

    def finish(run):
        try:
            barrier.wait()
            engine.task_started(str(run.pk), str(wf.pk), "w")
            engine.task_succeeded(str(run.pk), str(wf.pk), run.node, run.node)
        finally:
            connection.close()

    threads = [threading.Thread(target=finish, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    joins = [s for s in sent if s[0].endswith("tsum")]
    assert len(joins) == 1
    assert joins[0][1] == (list(range(32)),)
    assert wf.task_runs.get(node=32).status == T.QUEUED


@pytest.mark.skipif(not PG, reason="PostgreSQL's synchronous_commit")
@pytest.mark.django_db(transaction=True)
def test_the_start_never_weakens_a_callers_commit(sent):
    """The start mark skips its WAL flush in its own transaction only: never
    in a transaction it runs inside (eager mode, a caller's), nor after it."""
    from django.db import transaction

    wf = launch_canvas(chain(add.s(1, 1), add.s(2)))
    root = wf.task_runs.get(node=0)

    def synchronous_commit():
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            return cursor.fetchone()[0]

    with transaction.atomic():
        assert engine.task_started(str(root.pk), str(wf.pk), "w1")
        assert synchronous_commit() == "on"
    assert engine.task_started(str(root.pk), str(wf.pk), "w1")  # delivered again
    assert synchronous_commit() == "on"


@pytest.mark.django_db
def test_plain_reads_of_the_hot_path_give_what_the_orm_gives(settings):
    """The success and the join read rows with plain SQL (no ORM set-up on every
    call): the task runs and results they give are the ORM's, value and type."""
    from django_workflows.engine.fastpath import as_task_runs, db_value, task_run_columns
    from django_workflows.engine.send import results_of

    wf = launch_canvas(chord([add.s(1, 1), add.s(2, 2)], tsum.s()))
    TaskRun = wf.task_runs.model
    wf.task_runs.filter(node=0).update(result={"a": [1, 2.5], "b": None}, worker="w")
    table = connection.ops.quote_name(TaskRun._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {task_run_columns()} FROM {table} WHERE workflow_id = %s",
            [db_value("workflow", wf.pk)],
        )
        plain = {run.pk: run for run in as_task_runs(cursor.fetchall())}
    orm = {run.pk: run for run in wf.task_runs.all()}
    assert plain.keys() == orm.keys() and len(plain) == 3
    for pk, run in orm.items():
        for field in TaskRun._meta.concrete_fields:
            mine, theirs = getattr(plain[pk], field.attname), getattr(run, field.attname)
            assert (mine, type(mine)) == (theirs, type(theirs)), field.attname
    assert results_of(wf.pk, [0, 1, 7]) == {0: {"a": [1, 2.5], "b": None}, 1: None}
    assert results_of(wf.pk, []) == {}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("value", [None, {"a": [1, 2.5]}])
def test_a_success_gives_its_claimed_children_with_what_sending_them_reads(sent, value):
    """The success statement returns only the fields sending a child reads; its
    other fields are deferred, loaded when read, as with ``only()``. A ``None``
    result is SQL NULL, as the ORM stores it."""
    import uuid

    from django.db import transaction
    from django.utils import timezone

    from django_workflows.codec import encode
    from django_workflows.engine.fastpath import SENT_FIELDS, succeed

    wf = launch_canvas(chain(add.s(1, 1), add.s(2), add.s(3)))
    TaskRun = wf.task_runs.model
    root = wf.task_runs.get(node=0)
    assert engine.task_started(str(root.pk), str(wf.pk), "w1", attempt=root.claim)
    claim = uuid.uuid4()
    with transaction.atomic():
        done = succeed(
            root.pk,
            wf.pk,
            result=value,
            result_json=encode(value),
            finished_at=timezone.now(),
            claim=claim,
            attempt=root.claim,
        )
    [child] = done.claimed
    assert done.may_finish
    orm = TaskRun.objects.get(pk=child.pk)
    assert (orm.node, orm.status, orm.claim) == (1, T.QUEUED, claim)
    every = {field.attname for field in TaskRun._meta.concrete_fields}
    assert child.get_deferred_fields() == every - set(SENT_FIELDS)
    for name in sorted(every):  # deferred ones are read from the database
        mine, theirs = getattr(child, name), getattr(orm, name)
        assert (mine, type(mine)) == (theirs, type(theirs)), name
    stored = TaskRun.objects.filter(pk=root.pk)
    assert stored.get().result == value
    assert stored.filter(result__isnull=True).exists() == (value is None)


@pytest.fixture
def prepared_again():
    """Statements prepared again after the test, which may make them go as text."""
    from django_workflows.engine import fastpath

    yield fastpath
    fastpath._text_only.clear()
    connection.close()


@pytest.mark.skipif(not PG, reason="PostgreSQL's prepared statements")
@pytest.mark.django_db(transaction=True)
def test_statements_go_as_text_where_django_is_told_of_a_pooler(sent, prepared_again):
    wf = launch_canvas(chain([add.s(1, 1)] + [add.s(1)] * 3))
    connection.close()
    connection.settings_dict["DISABLE_SERVER_SIDE_CURSORS"] = True
    try:
        statements = lifecycle_sql(wf, 0, 2)
    finally:
        del connection.settings_dict["DISABLE_SERVER_SIDE_CURSORS"]
    assert [sql.split()[0] for sql in statements] == ["WITH", "WITH"]  # the start, the success
    assert wf.task_runs.get(node=0).status == T.SUCCESS


@pytest.mark.skipif(not PG, reason="PostgreSQL's prepared statements")
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("report", ["start", "success"])
def test_a_lost_prepared_statement_makes_the_report_again_as_text(
    sent, prepared_again, report, caplog
):
    from django_workflows import tracking

    wf = launch_canvas(chain([add.s(1, 1)] + [add.s(1)] * 3))
    assert lifecycle_queries(wf, 0, 2) == QUERIES_PER_TASK  # prepared on this session
    run = wf.task_runs.get(node=1)
    if report == "success":
        tracking.report(engine.task_started, str(run.pk), str(wf.pk), "w1")
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")  # what a pooler's other session looks like

    if report == "start":
        assert tracking.report(engine.task_started, str(run.pk), str(wf.pk), "w1")
    else:
        tracking.report(engine.task_succeeded, str(run.pk), str(wf.pk), 1, 3)
        assert [args for _, args, _ in sent[1:]] == [(2, 1), (3, 1)]

    assert wf.task_runs.get(node=1).status == (T.RUNNING if report == "start" else T.SUCCESS)
    assert "lost a prepared statement" in caplog.text
    assert prepared_again._text_only == {connection.alias}
