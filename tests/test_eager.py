"""Eager mode (``task_always_eager``): launch runs the whole workflow inline,
tracked as on a worker, inside the test's own transaction."""

import pytest
from celery import chain

from django_workflows import foreach, launch, launch_canvas
from django_workflows.models import TaskRunStatus as T
from django_workflows.models import WorkflowStatus as W
from django_workflows.signals import workflow_finished
from django_workflows.testing import eager
from tests.canvases import CANVASES
from tests.helpers import node
from tests.testapp.models import Call, Switch
from tests.testapp.tasks import add, const, retry_twice, tsum

pytestmark = pytest.mark.django_db  # a TestCase-like transaction, never committed


@pytest.fixture(autouse=True)
def inline(celery_app):
    with eager(celery_app, propagates=True):  # as many projects' test settings have it
        yield


@pytest.mark.parametrize(
    "name,make,expected", [c[:3] for c in CANVASES], ids=[c[0] for c in CANVASES]
)
def test_every_canvas_runs_inline_to_its_result(name, make, expected):
    wf = launch_canvas(make(), name=name)

    assert wf.status == W.SUCCESS and wf.result == expected
    assert set(wf.task_runs.values_list("status", flat=True)) == {T.SUCCESS}
    assert wf.tasks_finished == wf.tasks_total


def test_a_thousand_task_chain_does_not_recurse():
    wf = launch_canvas(chain(add.s(0, 1), *(add.s(1) for _ in range(999))))

    assert wf.status == W.SUCCESS and wf.result == 1000
    assert wf.tasks_finished == 1000


def test_a_failure_is_recorded_not_raised_and_resume_runs_inline():
    wf = launch("gated", {})  # add | gate (closed) | add

    assert wf.status == W.FAILURE
    assert [node(wf, i).status for i in range(3)] == [T.SUCCESS, T.FAILURE, T.UPSTREAM_FAILED]
    assert node(wf, 1).exception_message == "gate gate is closed"

    Switch.objects.create(key="gate")
    wf.resume()
    assert wf.status == W.SUCCESS and wf.result == 3
    assert Call.objects.filter(task="add").count() == 2  # the first add was reused


def test_rerun_from_and_relaunch_run_inline():
    wf = launch_canvas(add.s(1, 1) | add.s(2) | add.s(3))
    wf.rerun_from(node(wf, 1))
    assert wf.status == W.SUCCESS and wf.result == 7
    assert node(wf, 1).attempts == 2 and node(wf, 0).attempts == 1

    again = wf.relaunch()
    assert again.status == W.SUCCESS and again.result == 7


def test_retries_run_inline_as_eager_celery_does_them():
    wf = launch_canvas(retry_twice.s(7) | add.s(1))

    assert wf.status == W.SUCCESS and wf.result == 8
    retried = node(wf, 0)
    assert retried.attempts == 3
    assert list(retried.history.values_list("attempt", "status")) == [
        (1, T.RETRYING),
        (2, T.RETRYING),
    ]


def test_foreach_hooks_and_signals_run_inline(calls):
    finished = []

    def receiver(sender, **kwargs):
        finished.append((kwargs["name"], kwargs["status"]))

    workflow_finished.connect(receiver, weak=False)
    try:
        mapped = launch_canvas(chain(const.s([1, 2, 3]), foreach(add.s(1)), tsum.s()))
        hooked = launch("hooked", {})
    finally:
        workflow_finished.disconnect(receiver)

    assert mapped.result == 9 and mapped.tasks_total == 6
    assert hooked.status == W.SUCCESS and hooked.result == 3
    hook = hooked.task_runs.get(is_hook=True)
    assert hook.status == T.SUCCESS and hook.args == [str(hooked.pk), 3, "on_success"]
    assert ("collect", hook.args, {}) in calls()
    assert finished == [("adhoc", W.SUCCESS), ("hooked", W.SUCCESS)]


def test_task_replace_runs_inline_and_tracked():
    from tests.testapp.tasks import add_to_all, identity, replace_with_chain

    wf = launch_canvas(chain(identity.s(42), replace_with_chain.s(), identity.s()))
    assert wf.status == W.SUCCESS and wf.result == 42
    assert wf.task_runs.get(task=replace_with_chain.name).map_items.count() == 2

    grouped = launch_canvas(add_to_all.s([1, 2], 10))
    assert grouped.result == [11, 12]


def test_a_task_received_from_the_broker_sends_to_the_broker():
    """Reporting a task a worker received, the engine sends without asking
    Celery's configuration (a lookup that cost each send about 70 µs); a task
    run inline sends inline, and so does everything after the report."""
    from celery.app.task import Context

    from django_workflows.engine import eager as engine_eager

    with engine_eager.reporting(Context(is_eager=False)):
        assert not engine_eager.enabled()
        with engine_eager.reporting(Context(is_eager=True)):
            assert engine_eager.enabled()
        assert not engine_eager.enabled()
    assert engine_eager.enabled()
