"""A tracked run gives what the native canvas gives, running the same tasks.

Each canvas runs twice on the same worker and broker: natively
(``apply_async().get()``) and tracked (``launch_canvas``). Results and the
multiset of task executions (task, args, kwargs) must match.
"""

from collections import Counter

import pytest

from django_workflows import launch_canvas
from django_workflows.exceptions import NativeCeleryWarning
from django_workflows.models import TaskRunStatus, WorkflowStatus
from tests.canvases import CANVASES
from tests.testapp.models import Call

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def executions(calls) -> Counter:
    return Counter(repr(call) for call in calls())


FAITHFUL = [c[:3] for c in CANVASES if len(c) == 3]
NATIVE_BUGS = [c[:3] for c in CANVASES if len(c) == 4]


@pytest.mark.parametrize("name,make,expected", FAITHFUL, ids=[c[0] for c in FAITHFUL])
def test_tracked_result_and_executions_match_native(worker, calls, name, make, expected):
    native = make().apply_async().get(timeout=30, interval=0.02, disable_sync_subtasks=False)
    native_calls = executions(calls)
    Call.objects.all().delete()

    wf = launch_canvas(make(), name=name).wait(timeout=30)

    assert wf.status == WorkflowStatus.SUCCESS, list(
        wf.task_runs.values_list("task", "status", "exception_message")
    )
    assert native == expected
    assert wf.result == native
    assert executions(calls) == native_calls
    assert set(wf.task_runs.values_list("status", flat=True)) == {TaskRunStatus.SUCCESS}


@pytest.mark.parametrize("name,make,expected", NATIVE_BUGS, ids=[c[0] for c in NATIVE_BUGS])
def test_tracked_run_is_right_where_native_is_not(worker, calls, name, make, expected):
    """Same tasks run as natively, and the result is the documented one; the
    launch warns that native Celery runs this shape wrong."""
    make().apply_async().get(timeout=30, interval=0.02, disable_sync_subtasks=False)
    native_tasks = Counter(task for task, _, _ in calls())
    Call.objects.all().delete()

    with pytest.warns(NativeCeleryWarning, match="native Celery"):
        wf = launch_canvas(make(), name=name)
    wf = wf.wait(timeout=30)

    assert wf.status == WorkflowStatus.SUCCESS
    assert wf.result == expected
    assert Counter(task for task, _, _ in calls()) == native_tasks
    assert set(wf.task_runs.values_list("status", flat=True)) == {TaskRunStatus.SUCCESS}
