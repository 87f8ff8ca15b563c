"""foreach: a runtime map over a step's result, on a real worker.

Each item becomes its own tracked task run; the next step receives their
results in order; a failed item is all that resume runs again.
"""

import pytest
from celery import chain, chord

from django_workflows import foreach, launch_canvas
from django_workflows.canvas import compile_canvas
from django_workflows.dag import dag_data
from django_workflows.exceptions import CanvasError
from django_workflows.models import TaskRun
from django_workflows.models import TaskRunStatus as T
from django_workflows.models import WorkflowStatus as W
from tests.helpers import dangling
from tests.testapp.models import Switch
from tests.testapp.tasks import add, collect, const, gate_items, tsum


def items_of(wf) -> list[TaskRun]:
    return list(
        TaskRun.objects.filter(workflow=wf, mapped_from__isnull=False).order_by("map_index")
    )


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
class TestOnAWorker:
    def test_empty_list_goes_straight_to_the_join(self, worker, calls):
        wf = launch_canvas(chain(const.s([]), foreach(add.s(1)), collect.s())).wait(timeout=30)

        assert wf.status == W.SUCCESS
        assert wf.result == {"args": [[]], "kwargs": {}}
        assert items_of(wf) == []
        node = wf.task_runs.get(is_map=True)
        assert (node.status, node.map_size, node.result) == (T.SUCCESS, 0, [])
        assert [task for task, _, _ in calls()] == ["const", "collect"]
        assert (wf.tasks_total, wf.tasks_finished, wf.tasks_succeeded) == (3, 3, 3)

    def test_one_item(self, worker):
        wf = launch_canvas(chain(const.s([5]), foreach(add.s(1)), collect.s())).wait(timeout=30)

        assert wf.status == W.SUCCESS
        assert wf.result == {"args": [[6]], "kwargs": {}}
        [item] = items_of(wf)
        assert (item.args, item.result, item.status) == ([5, 1], 6, T.SUCCESS)
        dag = dag_data(wf)
        assert [n["label"] for n in dag["nodes"]] == [
            "const",
            "foreach add ×1",
            "collect",
            "add [0]",
        ]
        assert dag["edges"] == [
            {"source": 0, "target": 1},
            {"source": 0, "target": 3},
            {"source": 1, "target": 2},
            {"source": 3, "target": 1},
        ]

    def test_a_thousand_items_each_tracked_results_in_order(self, worker):
        values = list(range(1000))
        wf = launch_canvas(chain(const.s(values), foreach(add.s(1)), tsum.s())).wait(timeout=240)

        assert wf.status == W.SUCCESS
        assert wf.result == sum(v + 1 for v in values)
        items = items_of(wf)
        assert len(items) == 1000
        assert [item.map_index for item in items] == values
        assert [item.result for item in items] == [v + 1 for v in values]
        assert all(item.status == T.SUCCESS for item in items)
        node = wf.task_runs.get(is_map=True)
        assert node.result == [v + 1 for v in values]
        assert (wf.tasks_total, wf.tasks_finished, wf.tasks_succeeded) == (1003, 1003, 1003)
        # every item hangs between the producer and the foreach node in the DAG
        producer = wf.task_runs.get(node=0)
        assert set(items[0].parents.all()) == {producer}
        assert node.parents.count() == 1001

    def test_foreach_as_the_last_step_is_the_run_result(self, worker):
        wf = launch_canvas(chain(const.s([1, 2, 3]), foreach(add.s(10)))).wait(timeout=30)

        assert wf.result == [11, 12, 13]

    def test_over_a_chord_header(self, worker):
        """The input is the header's list of results, as a chord body gets it."""
        canvas = chain(chord([const.s(1), const.s(2)], foreach(add.s(100))), tsum.s())
        wf = launch_canvas(canvas).wait(timeout=30)

        assert wf.result == 203

    def test_resume_after_a_failed_item_reruns_only_the_failed_items(self, worker, calls):
        canvas = chain(const.s([1, 2, 3, 4]), foreach(gate_items.s(closed=[2, 4])), tsum.s())
        wf = launch_canvas(canvas).wait(timeout=30)

        assert wf.status == W.FAILURE
        items = items_of(wf)
        assert [item.status for item in items] == [T.SUCCESS, T.FAILURE, T.SUCCESS, T.FAILURE]
        assert "item 2 is closed" in items[1].exception_message
        assert wf.task_runs.get(is_map=True).status == T.UPSTREAM_FAILED
        assert wf.task_runs.get(task=tsum.name).status == T.UPSTREAM_FAILED
        ran_before = [args for task, args, _ in calls() if task == "gate_items"]
        assert sorted(ran_before) == [[1], [2], [3], [4]]

        Switch.objects.create(key="item-2")
        Switch.objects.create(key="item-4")
        plan = wf.resume()
        assert sorted(step["node"] for step in plan.rerun) == sorted(
            [items[1].node, items[3].node, wf.task_runs.get(is_map=True).node, 2]
        )
        wf.wait(timeout=30)

        assert wf.status == W.SUCCESS
        assert wf.result == 100
        ran = [args for task, args, _ in calls() if task == "gate_items"]
        assert sorted(ran[len(ran_before) :]) == [[2], [4]]  # 1 and 3 kept their results
        assert len(items_of(wf)) == 4
        assert (wf.tasks_total, wf.tasks_finished, wf.tasks_failed) == (7, 7, 0)

    def test_rerun_from_the_producer_expands_again(self, worker):
        wf = launch_canvas(chain(add.s(1, 1), const.si([1, 2]), foreach(add.s(1)), tsum.s()))
        wf.wait(timeout=30)
        assert wf.result == 5
        old_items = {item.pk for item in items_of(wf)}

        wf.rerun_from(wf.task_runs.get(node=1))
        wf.wait(timeout=30)

        assert wf.status == W.SUCCESS
        assert wf.result == 5
        new_items = items_of(wf)
        assert len(new_items) == 2 and not old_items & {item.pk for item in new_items}
        assert (wf.tasks_total, wf.tasks_finished, wf.tasks_succeeded) == (6, 6, 6)

    def test_rerun_from_the_foreach_node_runs_each_item_again(self, worker, calls):
        wf = launch_canvas(chain(const.s([1, 2, 3]), foreach(add.s(1)), tsum.s())).wait(timeout=30)
        assert wf.result == 9
        map_node = wf.task_runs.get(is_map=True)
        items_before = [item.pk for item in items_of(wf)]

        plan = wf.rerun_from(map_node)
        assert {step["node"] for step in plan.rerun} == {
            map_node.node,
            2,
            *(item.node for item in items_of(wf)),
        }
        wf.wait(timeout=30)

        assert wf.status == W.SUCCESS and wf.result == 9
        assert [task for task, _, _ in calls()].count("add") == 6
        assert [item.pk for item in items_of(wf)] == items_before  # the same items, run again
        assert all(item.attempts == 2 for item in items_of(wf))
        assert (wf.tasks_total, wf.tasks_finished, wf.tasks_succeeded) == (6, 6, 6)

    def test_expanding_again_keeps_the_old_items_history(self, worker):
        canvas = chain(add.s(0, 1), const.si([1, 2]), foreach(gate_items.s(closed=[2])), tsum.s())
        wf = launch_canvas(canvas).wait(timeout=30)
        assert wf.status == W.FAILURE
        failed = items_of(wf)[1]
        assert failed.status == T.FAILURE

        Switch.objects.create(key="item-2")
        wf.rerun_from(wf.task_runs.get(node=1))  # the producer: the foreach expands again
        wf.wait(timeout=30)

        assert wf.status == W.SUCCESS and wf.result == 30
        map_node = wf.task_runs.get(is_map=True)
        history = list(
            map_node.history.values_list("item", "status", "exception_message").order_by("id")
        )
        assert history == [(1, T.FAILURE, "item 2 is closed")]
        assert (wf.tasks_total, wf.tasks_finished, wf.tasks_failed) == (6, 6, 0)
        assert dangling() == {}  # the replaced items went with their edges

    def test_a_cancel_before_the_expansion_expands_nothing(self, worker, calls, sender_dies):
        from django_workflows import engine
        from django_workflows.engine import progress

        wf = launch_canvas(chain(const.s([1, 2, 3]), foreach(add.s(1)), tsum.s()))
        producer = wf.task_runs.get(node=0)
        assert engine.task_started(str(producer.pk), str(wf.pk), "w", attempt=producer.claim)
        engine.task_succeeded(str(producer.pk), str(wf.pk), 0, [1, 2, 3], attempt=producer.claim)
        map_node = wf.task_runs.get(is_map=True)
        assert map_node.status == T.QUEUED  # claimed; its sender is about to expand it

        wf.cancel()
        sender_dies()
        progress.dispatch([map_node], {0: [1, 2, 3]})  # the sender goes on after the cancel

        launch_canvas(add.s(0, 0)).wait(timeout=30)  # the worker has moved on
        assert items_of(wf) == []
        assert [args for task, args, _ in calls() if task == "add"] == [[0, 0]]
        wf.refresh_from_db()
        assert wf.status == W.CANCELED
        assert (wf.tasks_total, wf.tasks_finished) == (3, 3)

    def test_a_result_that_is_not_a_list_fails_the_foreach_node(self, worker):
        wf = launch_canvas(chain(const.s({"a": 1}), foreach(add.s(1)), tsum.s())).wait(timeout=30)

        assert wf.status == W.FAILURE
        node = wf.task_runs.get(is_map=True)
        assert node.status == T.FAILURE
        assert node.exception_type == "TypeError"
        assert "maps over a list" in node.exception_message and "dict" in node.exception_message

    def test_relaunch_of_an_adhoc_run_expands_anew(self, worker):
        wf = launch_canvas(chain(const.s([1, 2]), foreach(add.s(1)), tsum.s())).wait(timeout=30)

        again = wf.relaunch().wait(timeout=30)

        assert again.result == 5
        assert again.tasks_total == 5 and len(items_of(again)) == 2


def test_foreach_survives_serialization():
    """A canvas sent as a message (dicts) still compiles to a foreach node."""
    import json

    from celery.canvas import maybe_signature

    canvas = chain(const.s([1]), foreach(add.s(1).set(queue="q")), tsum.s())
    dag = compile_canvas(maybe_signature(json.loads(json.dumps(canvas))))

    node = dag.nodes[1]
    assert (node.task, node.args, node.map, node.options) == (add.name, [1], True, {"queue": "q"})


@pytest.mark.parametrize(
    "canvas, message",
    [
        (lambda: foreach(add.s(1)), "needs a step before it"),
        (lambda: const.s([1]) | foreach(add.si(1, 1)), "mutable signature"),
        (lambda: const.s([1]) | foreach(add.s(1) | add.s(2)), "one task signature"),
    ],
)
def test_misused_foreach_is_a_clear_error(canvas, message):
    with pytest.raises(CanvasError, match=message):
        compile_canvas(canvas())
