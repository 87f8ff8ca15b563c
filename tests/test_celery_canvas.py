"""Celery's own canvas integration cases (celery/celery ``t/integration/test_canvas.py``),
rewritten here: the same canvases and expected outcomes, each run natively
and tracked on the same real worker. This module: ``Task.replace``.

Expected outcomes are Celery's (``("ok", value)`` or ``("error", exception
type)``); the tasks are ours (``tests/testapp/tasks.py``), with Celery's
names and results (``fail`` raises ``ValueError`` where Celery's raises its
``ExpectedException``).
"""

import pytest
from celery import chain, chord, group

from django_workflows import launch_canvas
from django_workflows.models import TaskRunStatus as T
from django_workflows.models import WorkflowStatus as W
from tests.helpers import dangling
from tests.testapp.models import Call
from tests.testapp.tasks import (
    add3,
    add_replaced,
    add_to_all,
    errback_new_style,
    errback_old_style,
    fail,
    fail_replaced,
    identity,
    replace_with_chain,
    replace_with_empty_chain,
    replace_with_gate,
    second_order_replace1,
    tsum,
)

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# (Celery's test, canvas, Celery's expected outcome)
REPLACE = [
    (
        "test_complex_chain",
        lambda: add3.s(2, 2)
        | (add3.s(4) | add_replaced.s(8) | add3.s(16) | add3.s(32))
        | group(add3.s(i) for i in range(4)),
        ("ok", [64, 65, 66, 67]),
    ),
    ("test_chain_child_replaced", lambda: chain(add_replaced.si(42, 1337), identity.s()),
     ("ok", 1379)),
    ("test_chain_child_replaced_then_fails", lambda: chain(add_replaced.si(42, 1337), fail.s()),
     ("error", "ValueError")),
    ("test_chain_child_with_errback_replaced",
     lambda: chain(fail_replaced.si(), identity.si(42)),
     ("error", "ValueError")),
    ("test_task_replaced_with_chain", lambda: replace_with_chain.si(42), ("ok", 42)),
    ("test_chain_child_replaced_with_chain_first",
     lambda: chain(replace_with_chain.si(42), identity.s()), ("ok", 42)),
    ("test_chain_child_replaced_with_chain_middle",
     lambda: chain(identity.s(42), replace_with_chain.s(), identity.s()), ("ok", 42)),
    ("test_chain_child_replaced_with_chain_last",
     lambda: chain(identity.s(42), replace_with_chain.s()), ("ok", 42)),
    ("test_replace_chain_with_empty_chain",
     lambda: chain(identity.s(1), replace_with_empty_chain.s()), ("error", "ImproperlyConfigured")),
    ("test_group_child_replaced", lambda: group(add_replaced.si(42, 1337), identity.si(31337)),
     ("ok", [1379, 31337])),
    ("test_group_child_replaced_with_chain_first",
     lambda: group(replace_with_chain.si(42), identity.s(1337)), ("ok", [42, 1337])),
    ("test_group_child_replaced_with_chain_middle",
     lambda: group(identity.s(42), replace_with_chain.s(1337), identity.s(31337)),
     ("ok", [42, 1337, 31337])),
    ("test_group_child_replaced_with_chain_last",
     lambda: group(identity.s(42), replace_with_chain.s(1337)), ("ok", [42, 1337])),
    ("test_replace_group_in_group",
     lambda: group([add_to_all.s([2, 1], 1), add_to_all.s([4, 3], 1)] * 3),
     ("ok", [[3, 2], [5, 4]] * 3)),
    ("test_group_chain",
     lambda: add3.s(2, 2) | group(add3.s(i) for i in range(4)) | add_to_all.s(8),
     ("ok", [12, 13, 14, 15])),
    ("test_single_task_header (chord)", lambda: chord([add3.s(2, 5)], body=add_to_all.s(9)),
     ("ok", [16])),
    ("test_single_task_header (group | task)", lambda: group([add3.s(2, 5)]) | add_to_all.s(9),
     ("ok", [16])),
    (
        "test_nested_chord_replaced",
        lambda: chord(
            [
                chord([add3.s(1, 2), add_replaced.s(3, 4)], add_to_all.s(5)) | tsum.s(),
                chord([add_replaced.s(6, 7), add3.s(0, 0)], add_to_all.s(8)) | tsum.s(),
            ],
            add_to_all.s(9),
        ),
        ("ok", [29, 38]),
    ),
]  # fmt: skip


# Cases of Celery's test_chain / test_group / test_chord without Task.replace.
CANVAS = [
    ("test_single_chain", lambda: chain(add3.s(3, 4)), ("ok", 7)),
    ("test_chain_of_chain_with_a_single_task", lambda: chain([chain(identity.s(42))]), ("ok", 42)),
    ("test_chain_inside_group_receives_arguments",
     lambda: add3.s(5, 6) | group((add3.s(1) | add3.s(2), add3.s(3))), ("ok", [14, 14])),
    ("test_empty_header_chord (chord)", lambda: chord([], body=add_to_all.s(9)), ("ok", [])),
    ("test_empty_header_chord (group | task)", lambda: group([]) | add_to_all.s(9), ("ok", [])),
    (
        "test_nested_chord (chord)",
        lambda: chord(
            [chord([add3.s(1, 2), add3.s(3, 4)], add3.s([5])), chord([add3.s(6, 7)], add3.s([10]))],
            add_to_all.s(["A"]),
        ),
        ("ok", [[3, 7, 5, "A"], [13, 10, "A"]]),
    ),
    (
        "test_nested_chord (group | task)",
        lambda: group(
            [
                group([add3.s(1, 2), add3.s(3, 4)]) | add3.s([5]),
                group([add3.s(6, 7)]) | add3.s([10]),
            ]
        )
        | add_to_all.s(["A"]),
        ("ok", [[3, 7, 5, "A"], [13, 10, "A"]]),
    ),
    ("test_chain_on_error",
     lambda: chain(add3.s(1, 2), fail.s(), add3.s(3, 4)), ("error", "ValueError")),
]  # fmt: skip


@pytest.mark.parametrize("name,make,expected", CANVAS, ids=[case[0] for case in CANVAS])
def test_canvas_tracked_as_celery_runs_it(worker, name, make, expected):
    assert native(make) == expected
    Call.objects.all().delete()

    assert tracked(make) == expected


def native(make) -> tuple[str, object]:
    try:
        result = make().apply_async()
        return "ok", result.get(timeout=30, interval=0.02, disable_sync_subtasks=False)
    except Exception as exc:  # Celery re-raises the task's exception
        return "error", type(exc).__name__


def tracked(make) -> tuple[str, object]:
    wf = launch_canvas(make()).wait(timeout=30)
    if wf.status == W.SUCCESS:
        return "ok", wf.result
    failed = wf.task_runs.filter(status=T.FAILURE).order_by("node").first()
    return "error", failed.exception_type


@pytest.mark.parametrize("name,make,expected", REPLACE, ids=[case[0] for case in REPLACE])
def test_replace_tracked_as_celery_runs_it(worker, name, make, expected):
    assert native(make) == expected
    Call.objects.all().delete()

    assert tracked(make) == expected


def test_the_replacement_is_tracked_under_the_replaced_task(worker):
    wf = launch_canvas(chain(identity.s(42), replace_with_chain.s(), identity.s())).wait()

    assert wf.status == W.SUCCESS and wf.result == 42
    replaced = wf.task_runs.get(task=replace_with_chain.name)
    steps = list(replaced.map_items.order_by("map_index").values_list("task", "args", "status"))
    assert steps == [(identity.name, [42], T.SUCCESS), (identity.name, [], T.SUCCESS)]
    assert replaced.status == T.SUCCESS and replaced.result == 42 and replaced.map_size == 2
    assert (wf.tasks_total, wf.tasks_finished) == (5, 5)


def test_second_order_replace_runs_in_celerys_order(worker):
    wf = launch_canvas(second_order_replace1.s()).wait()

    assert wf.status == W.SUCCESS
    order = [(c.task, c.args) for c in Call.objects.order_by("id")]
    assert order == [
        ("second_order_replace1", ["A", False]),
        ("second_order_replace2", ["B", False]),
        ("identity", ["C"]),
        ("second_order_replace2", ["B", True]),
        ("second_order_replace1", ["A", True]),
    ]


def test_a_failed_replacement_resumes_without_running_the_replaced_task_again(worker):
    from tests.testapp.models import Switch
    from tests.testapp.tasks import gate

    wf = launch_canvas(chain(identity.s(1), replace_with_gate.s(), identity.s())).wait()
    assert wf.status == W.FAILURE
    replaced = wf.task_runs.get(task=replace_with_gate.name)
    assert replaced.status == T.UPSTREAM_FAILED
    assert wf.task_runs.get(task=gate.name).status == T.FAILURE

    Switch.objects.create(key="gate")
    wf.resume()
    assert wf.wait().status == W.SUCCESS and wf.result == 1
    assert Call.objects.filter(task="replace_with_gate").count() == 1
    assert Call.objects.filter(task="gate").count() == 2


def test_rerun_from_a_replaced_task_replaces_it_again(worker):
    wf = launch_canvas(chain(identity.s(7), replace_with_chain.s(), add3.s(1))).wait()
    assert wf.result == 8
    old = set(wf.task_runs.get(task=replace_with_chain.name).map_items.values_list("pk", flat=True))

    wf.rerun_from(wf.task_runs.get(task=replace_with_chain.name))
    assert wf.wait().status == W.SUCCESS and wf.result == 8

    replaced = wf.task_runs.get(task=replace_with_chain.name)
    new = set(replaced.map_items.values_list("pk", flat=True))
    assert len(new) == 2 and not old & new
    assert Call.objects.filter(task="replace_with_chain").count() == 2
    assert (wf.tasks_total, wf.tasks_finished) == (5, 5)
    assert dangling() == {}  # the old replacement went with its edges and attempts


# -- link_error / on_error: Celery calls the errbacks of each failed task itself ----------

ERRBACKS = [
    # (case, canvas given an errback, failing tasks)
    ("task on_error", lambda e: fail.s().on_error(e), 1),
    ("group link_error, fail first", lambda e: _linked(group(fail.s(), identity.si(42)), e), 1),
    ("group link_error, fail many",
     lambda e: _linked(group(*[identity.si(1)] * 3, *[fail.s()] * 4), e), 4),
    ("chain on_error", lambda e: chain(add3.s(1, 2), fail.s(), add3.s(3, 4)).on_error(e), 1),
    ("chord link_error, body fails",
     lambda e: _linked(chord([identity.si(1), identity.si(2)], fail.s()), e), 1),
]  # fmt: skip


def _linked(canvas, errback):
    canvas.link_error(errback)
    return canvas


def errback_calls(task) -> list:
    return [c.args[0] for c in Call.objects.filter(task=task.name.rsplit(".", 1)[-1])]


@pytest.mark.parametrize("style", [errback_old_style, errback_new_style], ids=["old", "new"])
@pytest.mark.parametrize("name,make,failing", ERRBACKS, ids=[case[0] for case in ERRBACKS])
def test_errbacks_called_as_celery_calls_them(worker, style, name, make, failing):
    from tests.helpers import until

    assert native(lambda: make(style.s()))[0] == "error"
    until(lambda: len(errback_calls(style)) == failing, what="the native errbacks")
    Call.objects.all().delete()

    wf = launch_canvas(make(style.s())).wait(timeout=30)

    assert wf.status == W.FAILURE
    failed = {str(pk) for pk in wf.task_runs.filter(status=T.FAILURE).values_list("pk", flat=True)}
    until(lambda: len(errback_calls(style)) == failing, what="the tracked run's errbacks")
    assert sorted(errback_calls(style)) == sorted(failed)


def test_an_immutable_errback_gets_its_own_arguments(worker):
    from tests.helpers import until

    wf = launch_canvas(fail.s().on_error(errback_old_style.si("fixed"))).wait()
    assert wf.status == W.FAILURE
    until(lambda: errback_calls(errback_old_style) == ["fixed"], what="the errback")


# -- add_to_chord: a header task adds members to its chord at run time -----------------


def test_members_added_to_a_chord_are_task_runs_the_body_waits_for(worker):
    from tests.testapp.tasks import add_to_all_to_chord

    wf = launch_canvas(group([add_to_all_to_chord.s([1, 2, 3], 4)]) | identity.s()).wait()

    assert wf.status == W.SUCCESS and wf.result == [0, 5, 6, 7]  # added members' results last
    added = wf.task_runs.filter(task=add3.name).order_by("node")
    assert [(run.args, run.status, run.result) for run in added] == [
        ([1, 4], T.SUCCESS, 5),
        ([2, 4], T.SUCCESS, 6),
        ([3, 4], T.SUCCESS, 7),
    ]
    body = wf.task_runs.get(task=identity.name)
    assert set(body.parents.values_list("task", flat=True)) == {add_to_all_to_chord.name, add3.name}
    assert (wf.tasks_total, wf.tasks_finished) == (5, 5)


def test_add_to_chord_outside_a_chord_fails_as_celerys_does(worker):
    from tests.testapp.tasks import add_to_all_to_chord

    wf = launch_canvas(chain(add_to_all_to_chord.s([1], 1), identity.s())).wait()

    failed = wf.task_runs.get(task=add_to_all_to_chord.name)
    assert wf.status == W.FAILURE and failed.status == T.FAILURE
    assert (failed.exception_type, failed.exception_message) == (
        "ValueError",
        "Current task is not member of any chord",
    )


def test_add_to_chord_with_an_immutable_body_as_celery_runs_it(worker):
    """The body (``.si``) keeps its own arguments and waits for the added members."""
    from tests.celery_suite import Case, check
    from tests.testapp.tasks import add_to_all_to_chord

    def make():
        return chord([add_to_all_to_chord.s([1, 2, 3], 4)], identity.si(42))

    check(Case("add_to_chord, immutable body", make, ("ok", 42), needs_redis=True))
    Call.objects.all().delete()

    wf = launch_canvas(make()).wait()
    assert wf.status == W.SUCCESS and wf.result == 42
    body = wf.task_runs.get(task=identity.name)
    assert (body.args, body.input) == ([42], None)
    assert sorted(body.parents.values_list("task", flat=True)) == sorted(
        [add_to_all_to_chord.name, *[add3.name] * 3]
    )
    order = [c.task for c in Call.objects.order_by("id")]
    assert order[-1] == "identity" and order.count("add3") == 3


def test_add_to_chord_from_a_replacement_joins_the_replaced_tasks_chord(worker):
    """Celery passes a replaced header task's chord on to its replacement."""
    from tests.celery_suite import Case, check
    from tests.testapp.tasks import replace_with_adder_to_chord

    def make():
        return chord([replace_with_adder_to_chord.s([1, 2], 4), identity.si(9)], identity.s())

    check(
        Case(
            "add_to_chord from a replacement",
            make,
            ("ok", lambda r: sorted(r) == [0, 5, 6, 9]),
            needs_redis=True,
        )
    )
    wf = launch_canvas(make()).wait()
    assert wf.status == W.SUCCESS and wf.result == [0, 9, 5, 6]  # added members' results last


def test_add_to_chord_in_a_nested_chord_joins_the_inner_chord(worker):
    """A member added from an inner chord's header joins that chord only."""
    from tests.testapp.tasks import add_to_all_to_chord

    canvas = chord([chord([add_to_all_to_chord.s([1], 4), identity.si(9)], tsum.s())], identity.s())
    wf = launch_canvas(canvas).wait()

    assert wf.status == W.SUCCESS and wf.result == [0 + 9 + 5]
    added = wf.task_runs.get(task=add3.name)
    assert list(added.children.values_list("task", flat=True)) == [tsum.name]


def test_a_lazy_member_joins_the_run_and_its_caller_sends_it(worker):
    """``add_to_chord(sig, lazy=True)`` then ``delay()``: natively (on Redis) and
    tracked, the body gets the member's result too; tracked, it is a task run
    sent once, by its caller, with the engine's claim."""
    from tests.celery_suite import Case, check
    from tests.testapp.tasks import add_lazily_to_chord

    def make():
        return group([add_lazily_to_chord.s(1), identity.s(2)]) | identity.s()

    check(Case("add_to_chord(lazy=True)", make, ("ok", lambda r: sorted(r) == [1, 1, 2]),
               needs_redis=True))  # fmt: skip
    Call.objects.all().delete()

    wf = launch_canvas(make()).wait()
    assert wf.status == W.SUCCESS and wf.result == [1, 2, 1]  # the added member's last
    member = wf.task_runs.get(task=identity.name, args=[1])
    assert (member.status, member.attempts, member.result) == (T.SUCCESS, 1, 1)
    assert member.sent_at is not None
    assert Call.objects.filter(task="identity", args=[1]).count() == 1
    assert (wf.tasks_total, wf.tasks_finished) == (4, 4)


def test_a_lazy_member_sent_with_call_arguments_is_refused_by_name(worker):
    from tests.helpers import until
    from tests.testapp.tasks import add_lazily_to_chord_with_call_args

    wf = launch_canvas(group([add_lazily_to_chord_with_call_args.s(1)]) | identity.s())
    caller = wf.task_runs.get(task=add_lazily_to_chord_with_call_args.name)
    until(lambda: type(caller).objects.get(pk=caller.pk).status == T.FAILURE, what="the caller")
    caller.refresh_from_db()
    assert caller.exception_type == "CanvasError"
    assert "sent as it was added" in caller.exception_message


def test_a_lazy_member_never_sent_is_sent_by_the_recovery_pass(worker):
    """Natively the chord would wait for ever; tracked, the member was claimed
    when it joined, so the recovery pass sends it like any claimed task run."""
    from django_workflows.engine import recover
    from tests.helpers import until
    from tests.testapp.tasks import add_lazily_to_chord_and_forget

    wf = launch_canvas(group([add_lazily_to_chord_and_forget.s(1)]) | identity.s())
    caller = wf.task_runs.get(task=add_lazily_to_chord_and_forget.name)
    until(lambda: type(caller).objects.get(pk=caller.pk).status == T.SUCCESS, what="the caller")
    member = wf.task_runs.get(task=identity.name, args=[1])
    assert (member.status, member.sent_at) == (T.QUEUED, None)
    assert wf.task_runs.get(task=identity.name, args=[]).status == T.PENDING  # the body

    assert recover(grace=0) == [str(member.pk)]
    assert wf.wait().status == W.SUCCESS and wf.result == [1, 1]


def test_a_task_returning_an_asyncresult_stores_it_as_celery_does(worker):
    from tests.testapp.tasks import build_chain_inside_task

    wf = launch_canvas(build_chain_inside_task.s()).wait()

    assert wf.status == W.SUCCESS
    (task_id, parent), children = wf.result  # AsyncResult.as_tuple(), as JSON
    assert children is None and isinstance(task_id, str) and isinstance(parent, list)


# -- a chord header given as a generator: read as the chord is sent -----------------------


def _members(*sigs):
    yield from sigs


GENERATOR_HEADERS = [
    ("empty", lambda: chord(_members(), tsum.s()), ("ok", 0)),
    ("in a group", lambda: group(chord(_members(add3.si(1, 2), add3.si(3, 4)), tsum.s()),
                                 chord(_members(identity.si(5)), tsum.s())),
     ("ok", [10, 5])),
    ("then a step", lambda: chord(_members(identity.si(1), identity.si(2)), tsum.s()) | add3.s(3),
     ("ok", 6)),
    ("immutable body", lambda: chord(_members(identity.si(1)), identity.si(42)), ("ok", 42)),
    ("a member fails", lambda: chord(_members(identity.si(1), fail.si()), tsum.s()),
     ("error", "ValueError")),
]  # fmt: skip


@pytest.mark.parametrize(
    "name,make,expected", GENERATOR_HEADERS, ids=[case[0] for case in GENERATOR_HEADERS]
)
def test_a_generator_header_runs_as_celery_runs_it(worker, name, make, expected):
    from tests.celery_suite import Case, check

    check(Case(f"generator header, {name}", make, expected))


def test_a_generator_header_gets_the_chords_partial_args(worker):
    canvas = chain(chord((identity.s() for _ in range(2)), identity.s()), identity.s())
    canvas.args = (1,)  # as Celery's test_chord_in_chain_with_args gives them

    wf = launch_canvas(canvas).wait()
    assert wf.status == W.SUCCESS and wf.result == [1, 1]
    assert (wf.headers_held, wf.header_read_at) == (None, None)  # read to its end


def test_a_generator_that_raises_fails_the_chords_body(worker):
    def header():
        yield identity.si(1)
        raise RuntimeError("no more members")

    wf = launch_canvas(chord(header(), tsum.s())).wait()

    assert wf.status == W.FAILURE
    body = wf.task_runs.get(task=tsum.name)
    assert (body.status, body.exception_type, body.exception_message) == (
        T.FAILURE,
        "RuntimeError",
        "no more members",
    )
    assert wf.task_runs.get(task=identity.name).status == T.SUCCESS
    assert (wf.headers_held, wf.header_read_at) == (None, None)


def test_a_generator_header_is_read_no_further_once_its_run_is_canceled(worker):
    from django_workflows.models import Workflow

    def header():  # Celery reads one member ahead: 2 is read when 1 joins
        yield identity.si(1)
        yield identity.si(2)
        Workflow.objects.get(status=W.RUNNING).cancel()
        yield identity.si(3)

    wf = launch_canvas(chord(header(), tsum.s())).wait()

    assert wf.status == W.CANCELED
    assert wf.task_runs.get(task=tsum.name).status == T.CANCELED
    assert list(wf.task_runs.filter(task=identity.name).values_list("args", flat=True)) == [[1]]
