"""Resume, rerun_from, mark_success, relaunch, cancel, retries and hooks, on a real worker."""

import os
import signal
import threading
from collections import Counter

import pytest
from celery import chain, chord, group
from django.db import connection

from django_workflows import launch, launch_canvas
from django_workflows.exceptions import InvalidState
from django_workflows.models import TaskAttempt, TaskRun, Workflow
from django_workflows.models import TaskRunStatus as T
from django_workflows.models import WorkflowStatus as W
from tests.helpers import node, until, worker_idle
from tests.testapp.models import Call, Switch
from tests.testapp.tasks import (
    add,
    autoretry_twice,
    collect,
    fail,
    gate,
    nap,
    nap_acks_late,
    retry_twice,
)

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def ran(task: str) -> int:
    return Call.objects.filter(task=task).count()


# -- resume ----------------------------------------------------------------------------


def test_resume_of_a_failed_chain_reuses_the_earlier_results(worker):
    wf = launch_canvas(add.s(1, 1) | add.s(10) | gate.s() | add.s(100)).wait()
    assert wf.status == W.FAILURE
    assert (ran("add"), ran("gate")) == (2, 1)

    plan = wf.resume(dry_run=True)
    assert [item["node"] for item in plan.rerun] == [2, 3]
    assert [item["node"] for item in plan.reused] == [1]
    assert Workflow.objects.get().status == W.FAILURE  # a dry run changes nothing

    Switch.objects.create(key="gate")
    plan = wf.resume()
    wf.wait()

    assert wf.status == W.SUCCESS and wf.result == 112
    assert (ran("add"), ran("gate")) == (3, 2)  # add(1,1) and add(10) did not run again
    gated = node(wf, 2)
    assert gated.attempts == 2 and gated.exception_message == ""
    history = list(gated.history.values_list("attempt", "status", "exception_message"))
    assert history == [(1, T.FAILURE, "gate gate is closed")]
    assert (wf.tasks_finished, wf.tasks_succeeded, wf.tasks_failed) == (4, 4, 0)


def test_resume_of_a_failed_chord_header_reruns_only_the_failed_member(worker, calls):
    wf = launch_canvas(chord([add.s(1, 1), gate.s(3), add.s(2, 2)], collect.s())).wait()
    assert wf.status == W.FAILURE
    assert node(wf, 3).status == T.UPSTREAM_FAILED

    Switch.objects.create(key="gate")
    wf.resume()
    wf.wait()

    assert wf.status == W.SUCCESS
    assert wf.result == {"args": [[2, 3, 4]], "kwargs": {}}
    assert Counter(task for task, _, _ in calls()) == {"add": 2, "gate": 2, "collect": 1}


def test_rerun_from_a_middle_node_runs_it_and_its_descendants_again(worker):
    wf = launch_canvas(add.s(1, 1) | add.s(2) | add.s(3)).wait()
    assert wf.status == W.SUCCESS and wf.result == 7
    first = node(wf, 0)

    plan = wf.rerun_from(node(wf, 1), dry_run=True)
    assert [step["node"] for step in plan.rerun] == [1, 2]
    assert [step["node"] for step in plan.reused] == [0]
    assert ran("add") == 3 and node(wf, 1).attempts == 1  # a dry run changes nothing

    wf.rerun_from(node(wf, 1))
    wf.wait()

    assert wf.status == W.SUCCESS and wf.result == 7
    assert ran("add") == 5
    assert Call.objects.filter(task_id=first.pk).count() == 1
    assert node(wf, 1).attempts == 2 and node(wf, 0).attempts == 1


def test_rerun_from_a_join_parent_twice_while_another_parent_failed(worker):
    wf = launch_canvas(chord([add.s(1, 1), gate.s(3)], collect.s())).wait()
    assert wf.status == W.FAILURE

    for _ in range(2):
        wf.rerun_from(node(wf, 0))
        assert wf.wait().status == W.FAILURE  # still blocked by the failed gate
        assert node(wf, 2).status == T.UPSTREAM_FAILED
        assert (wf.tasks_total, wf.tasks_finished, wf.tasks_failed) == (3, 3, 1)

    Switch.objects.create(key="gate")
    wf.resume()
    assert wf.wait().status == W.SUCCESS
    assert wf.result == {"args": [[2, 3]], "kwargs": {}}
    assert ran("add") == 3


def test_mark_success_continues_downstream_with_the_given_result(worker):
    wf = launch_canvas(add.s(1, 1) | fail.s() | add.s(1) | add.s(1)).wait()
    assert wf.status == W.FAILURE

    failed = node(wf, 1).mark_success(result=40)
    wf.wait()

    assert failed.status == T.SUCCESS and failed.marked_success and failed.result == 40
    assert wf.status == W.SUCCESS and wf.result == 42
    assert list(failed.history.values_list("status", flat=True)) == [T.FAILURE]


def test_relaunch_makes_a_new_linked_run_and_leaves_the_old_one(worker):
    old = launch("arith", {"x": 1, "y": 1}).wait()
    adhoc = launch_canvas(add.s(5, 5) | add.s(1)).wait()

    new = old.relaunch().wait()
    copy = adhoc.relaunch().wait()

    assert (new.relaunched_from, new.result, new.payload) == (old, old.result, old.payload)
    assert (copy.relaunched_from, copy.result, copy.name) == (adhoc, 11, "adhoc")
    assert Workflow.objects.count() == 4
    old.refresh_from_db()
    assert old.status == W.SUCCESS and old.relaunches.get() == new


# -- cancel -----------------------------------------------------------------------------


def test_cancel_during_a_long_task_starts_nothing_after(worker, celery_app):
    wf = launch_canvas(nap.s(1.5, value=1) | add.s(1) | add.s(1))
    until(lambda: node(wf, 0).status == T.RUNNING, what="the nap to start")

    wf.cancel()

    assert wf.status == W.CANCELED
    assert set(wf.task_runs.values_list("status", flat=True)) == {T.CANCELED}
    # the nap finishes after the cancel: its success changes nothing
    until(lambda: celery_app.AsyncResult(str(node(wf, 0).pk)).ready(), what="the nap to end")
    wf.refresh_from_db()
    assert wf.status == W.CANCELED and node(wf, 0).status == T.CANCELED
    assert ran("add") == 0
    assert wf.tasks_finished == 3


def test_queued_tasks_of_a_canceled_run_never_start(worker, celery_app):
    """3 worker processes, 7 naps: 4 wait in the worker's queue when the run is canceled."""
    wf = launch_canvas(group(nap.s(0.8) for _ in range(7)))
    until(lambda: wf.task_runs.filter(status=T.RUNNING).count() == 3, what="3 naps running")

    wf.cancel()
    # What was running when the cancel committed (its attempt is kept as canceled):
    # a nap whose start won the race with the cancel is one of them.
    started = {
        str(pk)
        for pk in TaskAttempt.objects.filter(task_run__workflow=wf, status=T.CANCELED).values_list(
            "task_run_id", flat=True
        )
    }
    until(lambda: worker_idle(celery_app), what="the worker to drain its queue")

    assert set(Call.objects.values_list("task_id", flat=True)) == started
    assert 3 <= len(started) < 7
    assert set(wf.task_runs.values_list("status", flat=True)) == {T.CANCELED}


def test_cancel_with_terminate_kills_the_running_task_and_resume_runs_it_again(worker):
    wf = launch_canvas(nap.s(20, value=5) | add.s(1))
    until(lambda: node(wf, 0).status == T.RUNNING, what="the nap to start")

    wf.cancel(terminate=True)
    first = Call.objects.get(task="nap")
    until(lambda: not _alive(first.pid) or _child_replaced(first.pid), what="the kill")
    assert node(wf, 0).revoked

    TaskRun.objects.filter(pk=node(wf, 0).pk).update(args=[0.1])  # the fix: a shorter nap
    wf.resume()
    wf.wait()
    assert wf.status == W.SUCCESS and wf.result == 6
    assert ran("nap") == 2


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _child_replaced(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] == "Z"
    except FileNotFoundError:
        return True


# -- races, retries, redelivery ----------------------------------------------------------


def test_a_task_succeeding_after_cancel_does_not_reopen_the_run(worker, celery_app):
    wf = launch_canvas(chain(nap.s(0.5, value=1), add.s(1)))
    until(lambda: node(wf, 0).status == T.RUNNING, what="the nap to start")
    wf.cancel()
    nap_id = str(node(wf, 0).pk)
    until(lambda: celery_app.AsyncResult(nap_id).successful(), what="the nap to succeed")
    until(lambda: worker_idle(celery_app), what="the worker to be idle")
    wf.refresh_from_db()
    assert wf.status == W.CANCELED and wf.result is None
    assert node(wf, 0).status == T.CANCELED and ran("add") == 0


@pytest.mark.parametrize("task", [retry_twice, autoretry_twice], ids=["self.retry", "autoretry"])
def test_retries_show_as_retrying_and_advance_once(worker, task):
    wf = launch_canvas(task.s(7) | add.s(1)).wait()

    assert wf.status == W.SUCCESS and wf.result == 8
    retried = node(wf, 0)
    assert retried.attempts == 3
    # Celery sends a retry's message before it reports the retry: the first
    # report may come after the run has finished.
    until(lambda: retried.history.count() == 2, what="both retries' reports")
    history = list(retried.history.values_list("attempt", "status"))
    assert history == [(1, T.RETRYING), (2, T.RETRYING)]
    assert "try 0" in retried.history.first().exception_message
    assert ran("add") == 1
    assert wf.tasks_finished == 2


def test_the_same_message_delivered_twice_runs_children_once(worker):
    from django_workflows.engine.progress import dispatch
    from tests.testapp.receivers import postrun_states

    wf = launch_canvas(nap.s(0.5, value=1) | add.s(1))
    first = node(wf, 0)
    dispatch([first], {})  # the broker delivers the same task id again

    wf.wait()
    # the duplicate was consumed too (run alongside, or skipped if it came after)
    until(lambda: len(postrun_states(first.pk)) == 2, what="the duplicate to be consumed")
    assert wf.status == W.SUCCESS and wf.result == 2
    assert ran("add") == 1
    wf.refresh_from_db()
    assert (wf.tasks_finished, wf.tasks_succeeded) == (2, 2)

    dispatch([node(wf, 0)], {})  # once more, long after it succeeded: the body is skipped
    add_run = node(wf, 1)
    dispatch([add_run], {0: 1})
    until(lambda: len(postrun_states(first.pk)) == 3, what="the third delivery")
    assert postrun_states(first.pk)[-1] == "IGNORED"
    until(lambda: postrun_states(add_run.pk) == ["SUCCESS", "IGNORED"], what="add again")
    assert Call.objects.filter(task_id=add_run.pk).count() == 1


def test_a_worker_process_killed_mid_task_with_acks_late_is_redelivered(worker):
    wf = launch_canvas(nap_acks_late.s(30, value=3) | add.s(1))
    call = until(lambda: Call.objects.filter(task="nap_acks_late").first(), what="the nap")

    os.kill(call.pid, signal.SIGKILL)
    wf.wait(timeout=60)

    assert wf.status == W.SUCCESS and wf.result == 4
    assert node(wf, 0).attempts == 2
    assert ran("nap_acks_late") == 2 and ran("add") == 1


def test_a_worker_process_killed_mid_task_fails_the_run_which_resumes(worker):
    wf = launch_canvas(nap.s(30, value=3) | add.s(1))
    call = until(lambda: Call.objects.filter(task="nap").first(), what="the nap")

    os.kill(call.pid, signal.SIGKILL)
    wf.wait(timeout=60)

    assert wf.status == W.FAILURE
    lost = node(wf, 0)
    assert lost.exception_type == "WorkerLostError"
    TaskRun.objects.filter(pk=lost.pk).update(args=[0.01])  # the fix: a shorter nap
    wf.resume()
    assert wf.wait().status == W.SUCCESS and wf.result == 4


def test_concurrent_launches_with_one_idempotency_key_make_one_run(worker):
    ids, barrier = [], threading.Barrier(8)

    def go():
        try:
            barrier.wait()
            ids.append(launch("arith", {"x": 1, "y": 2}, idempotency_key="nightly").pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=go) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(ids) == 8 and len(set(ids)) == 1
    assert Workflow.objects.count() == 1
    assert Workflow.objects.get().wait().status == W.SUCCESS
    assert launch("arith", {"x": 9, "y": 9}, idempotency_key="nightly").pk == ids[0]
    assert launch("arith", {"x": 1, "y": 2}, idempotency_key="other").pk != ids[0]


# -- hooks ---------------------------------------------------------------------------------


def test_hooks_receive_the_result_or_the_error_and_are_recorded(worker, calls):
    ok = launch("hooked", {}).wait()
    bad = launch("hooked", {"fail": True}).wait()
    hook_of = {}
    for wf in (ok, bad):
        hook_of[wf.pk] = until(
            lambda wf=wf: wf.task_runs.filter(is_hook=True, status=T.SUCCESS).first()
        )
    assert ok.status == W.SUCCESS and bad.status == W.FAILURE
    assert hook_of[ok.pk].args == [str(ok.pk), 3, "on_success"]
    error = hook_of[bad.pk].args[1]
    assert hook_of[bad.pk].args[2] == "on_failure"
    assert error["exception_message"] == "hooked failure" and error["task"].endswith("fail")
    assert ok.tasks_total == 2  # the hook is not a node of the DAG


def test_a_run_ends_with_the_hooks_it_was_launched_with(worker, calls, sender_dies):
    """Whatever the registry of the process that finishes it holds then."""
    wf = launch("hooked", {})
    assert wf.hooks["on_success"]["task"].endswith("collect")
    # Renamed: the worker's registry has no such workflow (nor its hooks).
    Workflow.objects.filter(pk=wf.pk).update(name="hooked.renamed")
    sender_dies()
    from django_workflows.engine import recover

    recover(grace=0)
    wf.wait()
    hook = until(lambda: wf.task_runs.filter(is_hook=True, status=T.SUCCESS).first())
    assert hook.args == [str(wf.pk), 3, "on_success"]


def test_a_failing_hook_never_changes_the_outcome(worker):
    wf = launch("bad_hook", {}).wait()
    hook = until(lambda: wf.task_runs.filter(is_hook=True, status=T.FAILURE).first())
    wf.refresh_from_db()
    assert wf.status == W.SUCCESS and wf.result == 4
    assert hook.exception_message == "the hook broke"
    assert (wf.tasks_failed, wf.tasks_finished) == (0, 1)


# -- wrong states ---------------------------------------------------------------------------


def test_operations_in_the_wrong_state_raise_and_change_nothing(worker):
    running = launch_canvas(nap.s(1) | add.si(1, 1))
    until(lambda: node(running, 0).status == T.RUNNING)
    with pytest.raises(InvalidState, match="Cannot resume workflow .* it is running"):
        running.resume()
    with pytest.raises(InvalidState, match="Cannot mark_success task run .* it is running"):
        node(running, 0).mark_success(1)
    with pytest.raises(InvalidState, match="it is running"):
        running.rerun_from(node(running, 0))
    with pytest.raises(InvalidState, match="it is running"):
        running.relaunch()
    running.wait()
    with pytest.raises(InvalidState, match="Cannot resume workflow .* it is success"):
        running.resume()
    with pytest.raises(InvalidState, match="Cannot cancel workflow .* it is success"):
        running.cancel()
    with pytest.raises(InvalidState, match="needs failure"):
        node(running, 0).mark_success(1)
    assert Workflow.objects.get().status == W.SUCCESS
    assert not TaskAttempt.objects.exists()
    assert list(running.task_runs.values_list("attempts", flat=True)) == [1, 1]
