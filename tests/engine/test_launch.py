"""Launch: one transaction, roots sent on commit, the broker's absence reported."""

import importlib
import time

import pytest
from celery import chord, group
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from django_workflows import launch, launch_canvas
from django_workflows.exceptions import BrokerUnavailable
from django_workflows.models import TaskRun, Workflow
from django_workflows.models import TaskRunStatus as T
from django_workflows.models import WorkflowStatus as W
from tests.testapp.tasks import add, tsum

LAUNCH = importlib.import_module("django_workflows.engine.launch")  # the module, not the function


@pytest.fixture
def sent(monkeypatch):
    """Task runs the engine hands to the broker (recorded, not sent)."""
    sent = []
    monkeypatch.setattr(
        "django_workflows.engine.progress.dispatch", lambda runs, results: sent.extend(runs)
    )
    return sent


@pytest.mark.django_db(transaction=True)
def test_launch_saves_the_whole_dag_and_sends_only_the_roots(sent):
    wf = launch_canvas(add.s(1, 1) | add.s(2), name="two")
    assert Workflow.objects.get().name == "two"
    runs = list(wf.task_runs.order_by("node"))
    assert [r.status for r in runs] == [T.QUEUED, T.PENDING]
    assert [r.node for r in sent] == [0]
    assert list(runs[1].parents.all()) == [runs[0]] and runs[1].waiting == 1
    assert wf.status == W.RUNNING


@pytest.mark.django_db(transaction=True)
def test_a_launch_in_a_transaction_that_rolls_back_sends_nothing(sent):
    with pytest.raises(RuntimeError), transaction.atomic():
        launch("arith", {"x": 1, "y": 2})
        assert Workflow.objects.count() == 1
        raise RuntimeError("the view failed after launching")
    assert sent == []
    assert not Workflow.objects.exists() and not TaskRun.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_roots_are_sent_only_when_the_transaction_commits(sent):
    with transaction.atomic():
        launch("arith", {"x": 1, "y": 2})
        assert sent == []
    assert len(sent) == 1


@pytest.mark.django_db(transaction=True)
def test_broker_down_at_launch_raises_and_the_run_is_recorded_as_failed(broker_down):
    with pytest.raises(BrokerUnavailable, match="broker could not be reached") as info:
        launch("arith", {"x": 1, "y": 2})

    wf = Workflow.objects.get()
    assert info.value.workflow == wf
    assert wf.status == W.FAILURE and wf.finished is not None
    assert "broker" in wf.error
    assert dict(wf.task_runs.values_list("node", "status")) == {
        0: T.FAILURE,
        1: T.UPSTREAM_FAILED,
        2: T.UPSTREAM_FAILED,
        3: T.UPSTREAM_FAILED,
    }
    assert wf.tasks_finished == wf.tasks_total


@pytest.mark.django_db(transaction=True)
def test_launch_says_whether_it_created_the_run(sent):
    first = launch("arith", {"x": 1, "y": 2}, idempotency_key="monday")
    again = launch("arith", {"x": 1, "y": 2}, idempotency_key="monday")
    adhoc = launch_canvas(add.s(1, 1), idempotency_key="monday")
    adhoc_again = launch_canvas(add.s(1, 1), idempotency_key="monday")
    assert (first.launched_now, again.launched_now) == (True, False)
    assert again.pk == first.pk
    assert (adhoc.launched_now, adhoc_again.launched_now) == (True, False)
    assert len(sent) == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("roots", "sizes"), [(7, [3, 3, 1]), (6, [3, 3])])
def test_roots_are_sent_in_batches_each_once(monkeypatch, roots, sizes):
    batches = []
    monkeypatch.setattr(LAUNCH, "ROOTS_PER_SEND", 3)
    monkeypatch.setattr(
        "django_workflows.engine.progress.dispatch",
        lambda runs, results: batches.append([run.node for run in runs]),
    )
    wf = launch_canvas(chord([add.s(i, i) for i in range(roots)], tsum.s()))
    assert [len(batch) for batch in batches] == sizes
    assert sorted(node for batch in batches for node in batch) == list(range(roots))
    assert wf.task_runs.get(node=roots).status == T.PENDING  # the body waits


@pytest.mark.django_db(transaction=True)
def test_broker_down_fails_every_root_of_a_launch_sent_in_batches(monkeypatch, broker_down):
    monkeypatch.setattr(LAUNCH, "ROOTS_PER_SEND", 2)
    with pytest.raises(BrokerUnavailable):
        launch_canvas(group([add.s(i, i) for i in range(5)]) | tsum.s())
    wf = Workflow.objects.get()
    assert dict(wf.task_runs.values_list("node", "status")) == {
        **{node: T.FAILURE for node in range(5)},
        5: T.UPSTREAM_FAILED,
    }
    assert wf.status == W.FAILURE and wf.tasks_finished == wf.tasks_total


@pytest.mark.django_db(transaction=True)
def test_broker_down_fails_a_chord_whose_header_is_read_from_a_generator(broker_down):
    with pytest.raises(BrokerUnavailable):
        launch_canvas(chord((add.si(i, i) for i in range(3)), tsum.s()))
    wf = Workflow.objects.get()
    statuses = dict(wf.task_runs.values_list("task", "status"))
    assert statuses == {tsum.name: T.UPSTREAM_FAILED, add.name: T.FAILURE}  # read no further
    assert wf.status == W.FAILURE and wf.tasks_finished == wf.tasks_total


@pytest.mark.django_db(transaction=True)
def test_a_canvas_is_saved_a_batch_at_a_time_as_it_compiles(monkeypatch, sent):
    """Each batch is saved before the next is compiled: the launch never holds
    the whole DAG. The run's totals and result are those of the whole canvas."""
    saved = []
    monkeypatch.setattr("django_workflows.engine.graph.NODES_PER_WRITE", 3)
    monkeypatch.setattr(
        "django_workflows.engine.graph.save_runs",
        _recording(saved, "django_workflows.engine.graph.save_runs"),
    )
    wf = launch_canvas(add.s(1, 1) | group(add.s(i) for i in range(6)) | tsum.s())
    assert saved == [[0, 1, 2], [3, 4, 5], [6, 7]]
    wf.refresh_from_db()
    assert (wf.tasks_total, wf.result_ref) == (8, 7)
    runs = {run.node: run for run in wf.task_runs.all()}
    assert sorted(p.node for p in runs[7].parents.all()) == [1, 2, 3, 4, 5, 6]
    assert [run.node for run in sent] == [0]


def _recording(saved, path):
    module, name = path.rsplit(".", 1)
    real = getattr(importlib.import_module(module), name)

    def save(nodes, *args, **kwargs):
        saved.append([node.index for node in nodes])
        return real(nodes, *args, **kwargs)

    return save


@pytest.mark.django_db
def test_wait_reads_the_status_until_the_run_finishes_then_the_whole_run(sent):
    wf = launch_canvas(add.s(1, 2))
    with CaptureQueriesContext(connection) as queries, pytest.raises(TimeoutError) as error:
        wf.wait(timeout=0.2, interval=0.05)
    assert "is still pending after 0.2 s: 0/1 tasks finished" in str(error.value)
    polls = [q["sql"] for q in queries.captured_queries[:-1]]
    assert len(polls) >= 2 and all('"status"' in sql and '"payload"' not in sql for sql in polls)

    Workflow.objects.filter(pk=wf.pk).update(status=W.SUCCESS, result=3)
    assert wf.wait(timeout=1).result == 3


@pytest.mark.django_db
def test_wait_for_a_run_deleted_meanwhile_raises_at_once(sent):
    wf = launch_canvas(add.s(1, 2))
    Workflow.objects.filter(pk=wf.pk).delete()
    started = time.monotonic()
    with pytest.raises(Workflow.DoesNotExist, match=str(wf.pk)):
        wf.wait(timeout=5, interval=0.01)
    assert time.monotonic() - started < 1


@pytest.mark.django_db
def test_wait_reads_again_while_sqlite_says_a_table_is_locked(sent):
    """In an in-memory SQLite test database (one shared cache), a read of a
    table that a worker thread of the process is writing fails at once with
    "database table is locked": ``wait()`` polls again; other errors raise."""
    from django.db import OperationalError

    wf = launch_canvas(add.s(1, 2))
    Workflow.objects.filter(pk=wf.pk).update(status=W.SUCCESS, result=3)
    locked = OperationalError("database table is locked: django_workflows_workflow")
    calls = []

    def execute(execute, sql, params, many, context):
        calls.append(sql)
        if len(calls) in (1, 3):  # the first poll, and the first read of the whole run
            raise locked
        return execute(sql, params, many, context)

    with connection.execute_wrapper(execute):
        assert wf.wait(timeout=5, interval=0.01).result == 3
    assert len(calls) == 4

    def broken(execute, sql, params, many, context):
        raise OperationalError("no such table: django_workflows_workflow")

    with connection.execute_wrapper(broken), pytest.raises(OperationalError, match="no such"):
        wf.wait(timeout=5)
