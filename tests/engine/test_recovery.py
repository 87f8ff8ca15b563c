"""The reaper: no run stays running forever when its worker dies whole."""

import os
import signal

import pytest
from django.core.management import call_command

from django_workflows import engine, launch, launch_canvas
from django_workflows.engine import reap
from django_workflows.models import TaskRunStatus as T
from django_workflows.models import WorkflowStatus as W
from tests.helpers import node, until
from tests.testapp.models import Call
from tests.testapp.tasks import add, nap
from tests.worker import start_worker, stop_worker

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_task_on_a_worker_killed_whole_is_reaped_and_the_run_resumes(worker, tmp_path):
    doomed = start_worker(tmp_path / "doomed.log", "-Q", "doomed", concurrency=1)
    try:
        wf = launch_canvas(nap.s(30, value=1).set(queue="doomed") | add.s(1))
        until(lambda: Call.objects.filter(task="nap").exists(), what="the nap to start")
        for pid in (Call.objects.get(task="nap").pid, doomed.pid):
            os.kill(pid, signal.SIGKILL)
        doomed.wait()
        assert node(wf, 0).status == T.RUNNING  # nobody is left to say otherwise

        assert reap(grace=0, ping_timeout=1) == [str(node(wf, 0).pk)]

        wf.refresh_from_db()
        lost = node(wf, 0)
        assert (wf.status, lost.status, lost.exception_type) == (W.FAILURE, T.FAILURE, "WorkerLost")
        assert "does not answer" in lost.exception_message
        assert node(wf, 1).status == T.UPSTREAM_FAILED
    finally:
        stop_worker(doomed)

    # the operator sends it to a live queue with a shorter nap, and resumes
    type(lost).objects.filter(pk=lost.pk).update(args=[0.01], options={})
    wf.resume()
    assert wf.wait().status == W.SUCCESS and wf.result == 2


def test_a_task_running_past_the_timeout_is_reaped_by_the_command(worker, capsys):
    wf = launch_canvas(nap.s(5) | add.si(1, 1))
    until(lambda: node(wf, 0).status == T.RUNNING, what="the nap to start")

    call_command("workflows", "reap", "--grace", "0", "--timeout", "0.01")

    assert f"failed {node(wf, 0).pk}" in capsys.readouterr().out
    slow = node(wf, 0)
    assert (slow.status, slow.exception_type) == (T.FAILURE, "WorkerLost")
    assert "Timed out" in slow.exception_message
    wf.refresh_from_db()
    assert wf.status == W.FAILURE


def test_the_reaper_leaves_tasks_of_live_workers_alone(worker):
    wf = launch_canvas(nap.s(1) | add.si(1, 1))
    until(lambda: node(wf, 0).status == T.RUNNING, what="the nap to start")
    assert reap(grace=0, ping_timeout=1) == []
    assert wf.wait().status == W.SUCCESS


def a_live_worker(celery_app) -> str:
    return next(iter(until(lambda: celery_app.control.ping(timeout=1), what="a worker")[0]))


@pytest.mark.parametrize("stored", [True, False], ids=["success stored", "nothing stored"])
def test_a_task_its_live_worker_lost_is_settled(worker, celery_app, sender_dies, stored):
    """The pool process running it died (SIGKILL) while its worker lives on. Had
    Celery stored its success first (it then acknowledges the message and signals
    nothing), the run goes on with that result; otherwise the task fails."""
    wf = launch_canvas(add.s(1, 1) | add.s(2))
    root = node(wf, 0)
    assert engine.task_started(str(root.pk), str(wf.pk), a_live_worker(celery_app), 0, root.claim)
    if stored:
        celery_app.backend.store_result(str(root.pk), 2, "SUCCESS")
    sender_dies()

    assert reap(grace=0, ping_timeout=1) == [str(root.pk)]

    wf.wait()
    if stored:
        assert (wf.status, wf.result) == (W.SUCCESS, 4)
    else:
        assert (wf.status, node(wf, 0).exception_type) == (W.FAILURE, "WorkerLost")
        assert "does not hold the task" in node(wf, 0).exception_message


def test_a_run_is_closed_with_its_hook_or_not_at_all(worker, sender_dies, monkeypatch):
    """Closing a run and saving its hook are one transaction: when the process
    closing it dies in between (here: saving the hook raises), the run stays
    open, and the recovery pass closes it and sends its hook."""
    wf = launch("bad_hook", {})  # add(2, 2); its on_success hook raises
    root = node(wf, 0)
    sender_dies()  # the launch sent nothing: this process reports the task itself

    def dies(*args, **kwargs):
        raise RuntimeError("the process died")

    monkeypatch.setattr("django_workflows.engine.hooks.create", dies)
    assert engine.task_started(str(root.pk), str(wf.pk), "here", 0, root.claim)
    with pytest.raises(RuntimeError, match="the process died"):
        engine.task_succeeded(str(root.pk), str(wf.pk), 0, 4, root.claim)
    wf.refresh_from_db()
    assert (wf.status, wf.tasks_finished) == (W.RUNNING, 1)
    assert not wf.task_runs.filter(is_hook=True).exists()
    monkeypatch.undo()

    engine.recover(grace=0)

    wf.refresh_from_db()
    assert (wf.status, wf.result) == (W.SUCCESS, 4)
    hook = until(lambda: wf.task_runs.filter(is_hook=True, status=T.FAILURE).first())
    assert hook.exception_message == "the hook broke"
