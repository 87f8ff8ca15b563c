"""Invariants 2 and 3: nothing claimed is lost, and a stale attempt never decides.

A task run claimed for sending and never sent (its sender died or failed
between the commit and the broker) is sent by the recovery pass; one whose
message reached the broker is never sent again, however long it waits. Each
dispatch carries an attempt, and a report of an older one changes nothing.
"""

from types import SimpleNamespace

import pytest

from django_workflows import engine, launch_canvas, tracking
from django_workflows.engine import recover, send
from django_workflows.headers import ATTEMPT_HEADER, NODE_HEADER, RUN_HEADER
from django_workflows.models import TaskRunStatus as T
from django_workflows.models import WorkflowStatus as W
from tests.helpers import node, until, worker_idle
from tests.testapp.tasks import add, tsum

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.worker
def test_roots_of_a_launch_that_died_before_sending_are_recovered(worker, sender_dies):
    wf = launch_canvas(add.s(1, 1) | add.s(2))
    sender_dies()  # the next process is alive
    assert node(wf, 0).status == T.QUEUED and node(wf, 0).sent_at is None

    assert recover(grace=0) == [str(node(wf, 0).pk)]

    assert wf.wait().status == W.SUCCESS and wf.result == 4
    assert recover(grace=0) == []


class WorkerDied(BaseException):
    """The process stops here (SIGKILL): nothing after this line runs."""


@pytest.fixture
def dies_before_commit(monkeypatch, sender_dies):
    """A success's worker dies after its children's messages reached the
    broker, before its transaction commits (the database rolls it back).
    Nothing is sent until then (``sender_dies``); call the fixture's value
    to bring the next (living) process back."""
    send_in_claim = send.send_in_claim

    def send_then_die(runs, results):
        send_in_claim(runs, results)
        raise WorkerDied

    monkeypatch.setattr(send, "send_in_claim", send_then_die)
    return monkeypatch.undo


@pytest.mark.worker
def test_children_sent_by_a_success_whose_worker_died_before_committing_never_run_stale(
    worker, dies_before_commit, calls
):
    wf = launch_canvas(add.s(1, 1) | add.s(2) | add.s(3))
    root = node(wf, 0)
    assert engine.task_started(str(root.pk), str(wf.pk), "w", attempt=root.claim)
    with pytest.raises(WorkerDied):
        engine.task_succeeded(str(root.pk), str(wf.pk), 0, 2, attempt=root.claim)
    dies_before_commit()
    # Nothing was committed: the child's message carries an attempt that never was.
    assert node(wf, 0).status == T.RUNNING
    assert node(wf, 1).status == T.PENDING and node(wf, 1).claim is None

    # The root's message is delivered again (acks_late) and its success recorded.
    engine.task_succeeded(str(root.pk), str(wf.pk), 0, 2, attempt=root.claim)
    assert recover(grace=0) == []
    assert wf.wait().status == W.SUCCESS and wf.result == 7
    # The stale message reached the worker first, and was skipped.
    assert len(calls([node(wf, 1).pk])) == 1 and node(wf, 1).attempts == 1


def test_recovery_waits_for_its_grace(sender_dies):
    wf = launch_canvas(add.s(1, 1))
    assert recover(grace=60) == []
    assert node(wf, 0).sent_at is None


@pytest.mark.worker
def test_a_task_waiting_in_a_long_queue_is_not_sent_again(worker):
    wf = launch_canvas(add.s(1, 1).set(queue="nobody-listens") | add.s(2))
    assert node(wf, 0).status == T.QUEUED and node(wf, 0).sent_at is not None

    assert recover(grace=0) == []
    wf.cancel()


def test_a_stale_attempt_never_moves_a_newer_one(sent):
    wf = launch_canvas(add.s(1, 1) | add.s(2))
    root = node(wf, 0)
    old = root.claim
    assert engine.task_started(str(root.pk), str(wf.pk), "w", attempt=old)
    wf.cancel()  # without terminate: the old attempt goes on running
    wf.resume()
    new = node(wf, 0).claim
    assert new != old and node(wf, 0).status == T.QUEUED

    # The old attempt fails, is reported revoked (terminated late), or its message is
    # delivered again: nothing moves.
    engine.task_failed(str(root.pk), ValueError("late"), attempt=old)
    headers = {RUN_HEADER: str(wf.pk), NODE_HEADER: 0, ATTEMPT_HEADER: str(old)}
    tracking.on_revoked(request=SimpleNamespace(id=str(root.pk), **headers), terminated=True)
    assert not engine.task_started(str(root.pk), str(wf.pk), "w", attempt=old)
    engine.task_succeeded(str(root.pk), str(wf.pk), 0, 99, attempt=old)
    assert node(wf, 0).status == T.QUEUED
    wf.refresh_from_db()
    assert wf.status == W.RUNNING

    # The resumed attempt decides.
    assert engine.task_started(str(root.pk), str(wf.pk), "w", attempt=new)
    engine.task_succeeded(str(root.pk), str(wf.pk), 0, 2, attempt=new)
    assert node(wf, 0).status == T.SUCCESS and node(wf, 0).result == 2
    assert node(wf, 1).status == T.QUEUED
    assert len(sent) == 3  # the root, the root resumed, its child


@pytest.mark.worker
def test_a_join_whose_last_parent_died_before_committing_is_claimed_again(
    worker, dies_before_commit, calls
):
    from celery import chord

    wf = launch_canvas(chord([add.s(1, 1), add.s(2, 2)], tsum.s()))
    for index in (0, 1):
        run = node(wf, index)
        assert engine.task_started(str(run.pk), str(wf.pk), "w", attempt=run.claim)
    first = node(wf, 0)
    engine.task_succeeded(str(first.pk), str(wf.pk), 0, 2, attempt=first.claim)
    last = node(wf, 1)
    with pytest.raises(WorkerDied):
        engine.task_succeeded(str(last.pk), str(wf.pk), 1, 4, attempt=last.claim)
    dies_before_commit()
    assert node(wf, 2).status == T.PENDING and node(wf, 2).waiting == 1

    engine.task_succeeded(str(last.pk), str(wf.pk), 1, 4, attempt=last.claim)
    assert wf.wait().status == W.SUCCESS and wf.result == 6
    assert len(calls([node(wf, 2).pk])) == 1 and node(wf, 2).attempts == 1


@pytest.mark.worker
def test_a_resume_whose_sender_died_is_recovered(worker, sender_dies):
    from tests.testapp.models import Switch
    from tests.testapp.tasks import gate

    sender_dies()
    wf = launch_canvas(add.s(1, 1) | gate.s() | add.s(3)).wait()
    assert wf.status == W.FAILURE
    Switch.objects.create(key="gate")

    with pytest.MonkeyPatch.context() as dying:
        dying.setattr("django_workflows.engine.progress.dispatch", lambda runs, results: None)
        wf.resume()
    assert node(wf, 1).status == T.QUEUED and node(wf, 1).sent_at is None

    assert recover(grace=0) == [str(node(wf, 1).pk)]
    assert wf.wait().status == W.SUCCESS and wf.result == 5


@pytest.mark.worker
def test_an_old_attempt_failing_on_a_worker_after_resume_changes_nothing(worker, celery_app):
    from tests.testapp.models import Call
    from tests.testapp.tasks import slow_first_attempt

    wf = launch_canvas(slow_first_attempt.s(1.5, value=1) | add.s(1))
    until(lambda: node(wf, 0).status == T.RUNNING, what="the first attempt to start")
    wf.cancel()  # without terminate: the first attempt goes on
    wf.resume()  # the new attempt runs beside it, on another worker process;
    # the first fails while the new one runs: the new one decides.

    assert wf.wait().status == W.SUCCESS and wf.result == 2
    root = node(wf, 0)
    assert Call.objects.filter(task_id=root.pk).count() == 2
    until(lambda: worker_idle(celery_app), what="both attempts to end")
    wf.refresh_from_db()
    assert wf.status == W.SUCCESS and wf.result == 2
    assert (node(wf, 0).status, node(wf, 0).result) == (T.SUCCESS, 1)
    assert (wf.tasks_finished, wf.tasks_succeeded, wf.tasks_failed) == (2, 2, 0)


def test_a_run_whose_last_report_died_before_closing_it_is_closed_by_recovery(monkeypatch):
    monkeypatch.setattr("celery.canvas.Signature.apply_async", lambda self, *a, **k: None)
    wf = launch_canvas(add.s(1, 1))
    root = node(wf, 0)
    assert engine.task_started(str(root.pk), str(wf.pk), "w", attempt=root.claim)
    with monkeypatch.context() as dies:  # the task is recorded; its process dies before closing
        dies.setattr("django_workflows.engine.progress.finish_if_done", lambda workflow_id: None)
        engine.task_succeeded(str(root.pk), str(wf.pk), 0, 2, attempt=root.claim)
    wf.refresh_from_db()
    assert (wf.status, wf.tasks_finished, wf.tasks_total) == (W.RUNNING, 1, 1)

    recover(grace=60)

    wf.refresh_from_db()
    assert (wf.status, wf.result) == (W.SUCCESS, 2)


@pytest.mark.worker
def test_a_message_the_broker_lost_is_sent_again_after_the_queue_timeout(worker, monkeypatch):
    with monkeypatch.context() as lost:  # the broker takes the message, then loses it
        lost.setattr("celery.canvas.Signature.apply_async", lambda self, *a, **k: None)
        wf = launch_canvas(add.s(1, 1) | add.s(2))
    first = node(wf, 0)
    assert first.status == T.QUEUED and first.sent_at is not None

    assert recover(grace=0) == []  # by default a sent task is never sent again
    assert recover(grace=0, queue_timeout=60) == []  # not yet
    assert recover(grace=0, queue_timeout=0) == [str(first.pk)]

    assert node(wf, 0).claim != first.claim  # a new attempt: a late old message is stale
    assert wf.wait().status == W.SUCCESS and wf.result == 4


@pytest.mark.worker
def test_a_retry_whose_message_was_lost_is_sent_again_after_the_queue_timeout(worker):
    from django_workflows.models import TaskRun

    wf = launch_canvas(add.s(1, 1) | add.s(2))
    wf.wait()
    # A task whose retry Celery queued, then the broker lost (as after a Redis restart).
    TaskRun.objects.filter(pk=node(wf, 1).pk).update(
        status=T.RETRYING, finished_at=None, result=None
    )
    type(wf).objects.filter(pk=wf.pk).update(
        status=W.RUNNING, finished=None, result=None, tasks_finished=1, tasks_succeeded=1
    )
    assert recover(grace=0) == []
    assert recover(grace=0, queue_timeout=0) == [str(node(wf, 1).pk)]
    assert wf.wait().status == W.SUCCESS and wf.result == 4


@pytest.mark.worker
def test_a_retry_celery_could_not_publish_goes_back_to_the_outbox(worker, sender_dies):
    from celery.exceptions import Reject
    from kombu.exceptions import OperationalError

    wf = launch_canvas(add.s(1, 1) | add.s(2))
    root = node(wf, 0)
    assert engine.task_started(str(root.pk), str(wf.pk), "w", attempt=root.claim)
    # Task.retry could not send the retry's message (Redis down): Celery rejects the task.
    down = Reject(OperationalError("Error 111 connecting to Redis"), requeue=False)
    engine.task_failed(str(root.pk), down, attempt=root.claim)
    sender_dies()

    assert node(wf, 0).status == T.QUEUED and node(wf, 0).sent_at is None
    wf.refresh_from_db()
    assert wf.status == W.RUNNING and wf.tasks_failed == 0
    assert recover(grace=0) == [str(root.pk)]
    assert wf.wait().status == W.SUCCESS and wf.result == 4
    assert list(node(wf, 0).history.values_list("status", flat=True)) == [T.RETRYING]


def test_a_message_that_arrives_before_its_claim_commits_starts_once_it_has(sent):
    """A success sends its children before it commits: a child's start that
    comes first waits for that commit, then starts (it is no stale attempt)."""
    import threading
    import uuid

    from django.db import connection, transaction
    from django.utils import timezone

    from django_workflows.engine.fastpath import succeed

    wf = launch_canvas(add.s(1, 1) | add.s(2))
    root = node(wf, 0)
    assert engine.task_started(str(root.pk), str(wf.pk), "w", attempt=root.claim)
    started = []

    def start_child(claim):
        try:
            child = node(wf, 1)
            started.append(engine.task_started(str(child.pk), str(wf.pk), "w", attempt=claim))
        finally:
            connection.close()

    with transaction.atomic():
        claim = uuid.uuid4()
        done = succeed(
            root.pk, wf.pk, result=2, result_json="2", finished_at=timezone.now(), claim=claim
        )
        assert [run.node for run in done.claimed] == [1]
        child = threading.Thread(target=start_child, args=(claim,))
        child.start()
        child.join(timeout=1)
        assert child.is_alive() and started == []  # it waits for the commit
    child.join(timeout=10)
    assert started == [True]
    assert node(wf, 1).status == T.RUNNING
