"""Canvas -> DAG: nodes, edges and the inputs Celery would pass (no worker)."""

import copy

import pytest
from celery import chain, chord, current_app, group

from django_workflows.canvas import (
    CHORD,
    CHORD_BODIES,
    _Compiler,
    compile_canvas,
    foreach,
    public_options,
    resolve,
)
from django_workflows.exceptions import CanvasError
from tests.testapp.tasks import add, collect, tsum


def shape(dag):
    return [(n.task.rsplit(".", 1)[-1], n.parents, n.input) for n in dag.nodes]


def test_chain_passes_each_result_to_the_next():
    dag = compile_canvas(chain(add.s(1, 2), add.s(3), add.s(4)))
    assert shape(dag) == [("add", [], None), ("add", [0], 0), ("add", [1], 1)]
    assert dag.result == 2


def test_group_followed_by_a_task_is_a_join_on_the_list_of_results():
    dag = compile_canvas(add.s(1, 1) | group(add.s(1), add.s(2)) | tsum.s())
    assert shape(dag) == [
        ("add", [], None),
        ("add", [0], 0),
        ("add", [0], 0),
        ("tsum", [1, 2], [1, 2]),
    ]
    assert dag.result == 3


def test_immutable_signature_waits_but_receives_nothing():
    dag = compile_canvas(add.s(1, 1) | add.si(2, 2))
    assert shape(dag)[1] == ("add", [0], None)
    assert dag.nodes[1].immutable


def test_nested_groups_are_flattened_like_celery_does():
    dag = compile_canvas(chord([add.s(1, 1), group(add.s(2, 2), add.s(3, 3))], collect.s()))
    assert dag.nodes[-1].input == [0, 1, 2]


def test_chain_ending_in_a_group_nests_its_list_in_a_join():
    dag = compile_canvas(chord([add.s(1, 1) | group(add.s(1), add.s(2)), add.s(5, 5)], tsum.s()))
    assert dag.nodes[-1].input == [[1, 2], 3]
    assert dag.nodes[-1].parents == [1, 2, 3]


def test_empty_group_passes_its_parents_on():
    dag = compile_canvas(add.s(1, 1) | group([]) | collect.s())
    assert shape(dag) == [("add", [], None), ("collect", [0], [])]


def test_options_are_kept_and_celery_wiring_is_dropped():
    sig = add.s(1, 2).set(queue="slow", priority=3, countdown=5, task_id="x", link_error=None)
    (node,) = compile_canvas(sig).nodes
    assert node.options == {"queue": "slow", "priority": 3, "countdown": 5}


def test_link_callbacks_become_children_outside_the_result():
    sig = add.s(1, 2)
    sig.link(collect.s("linked"))
    dag = compile_canvas(sig | add.s(1))
    assert shape(dag) == [("add", [], None), ("collect", [0], 0), ("add", [0], 0)]
    assert dag.result == 2


def test_errbacks_stay_on_their_tasks_and_a_chains_go_to_each_step():
    sig = add.s(1, 2)
    sig.link_error(collect.s("task"))
    steps = chain(sig, add.s(3))
    steps.link_error(collect.si("chain"))
    nodes = compile_canvas(steps).nodes

    errbacks = [[(e["task"], list(e["args"])) for e in n.options["link_error"]] for n in nodes]
    assert errbacks == [
        [(collect.name, ["task"]), (collect.name, ["chain"])],
        [(collect.name, ["chain"])],
    ]
    assert "link_error" not in add.s(1, 2).options  # the user's signature is unchanged


def test_a_chains_callbacks_go_to_its_last_step():
    steps = chain(add.s(1, 2), add.s(3))
    steps.link(collect.s())
    dag = compile_canvas(steps)
    assert shape(dag) == [("add", [], None), ("add", [0], 0), ("collect", [1], 1)]
    assert dag.result == 1


def test_a_chains_and_a_chords_partial_args_go_to_their_first_tasks():
    steps = chain(add.s(1), add.s(2))
    steps.args = (10,)
    assert [n.args for n in compile_canvas(steps).nodes] == [[10, 1], [2]]
    join = chord([add.s(1), add.s(2)], tsum.s())
    join.args = (10,)
    assert [n.args for n in compile_canvas(join).nodes] == [[10, 1], [10, 2], []]


def test_a_lone_group_member_ending_in_a_group_gives_the_inner_list():
    assert compile_canvas(group(add.s(1, 2) | group(add.s(1), add.s(2)))).result == [1, 2]
    assert compile_canvas(group([add.s(1, 2)])).result == [0]


def test_header_tasks_name_the_innermost_chord_body_whose_errbacks_a_failure_calls():
    inner = chord([add.si(1, 1), add.si(2, 2)], add.si(3, 3))
    outer = chord([add.si(4, 4), inner], collect.si("body"))
    outer.link_error(collect.si("errback"))
    bodies = [n.options.get(CHORD_BODIES) for n in compile_canvas(outer).nodes]
    # inner's body has the errback too (Celery links a nested chord's): its header names it
    assert bodies == [[4], [3], [3], [4], None]


def test_a_chains_errbacks_reach_an_upgraded_chords_header_only_if_allowed():
    from celery import current_app

    steps = chain(add.si(0, 0), group(add.si(1, 1), add.si(2, 2)), tsum.s())
    steps.link_error(collect.si("e"))
    errbacks = [bool(n.options.get("link_error")) for n in compile_canvas(steps).nodes]
    assert errbacks == [True, False, False, True]

    current_app.conf.task_allow_error_cb_on_chord_header = True
    try:
        errbacks = [bool(n.options.get("link_error")) for n in compile_canvas(steps).nodes]
    finally:
        current_app.conf.task_allow_error_cb_on_chord_header = False
    assert errbacks == [True, True, True, True]


def test_each_last_task_of_a_header_names_its_chords_first_body_tasks():
    inner = chord([add.si(1, 1), add.si(2, 2) | add.si(3, 3)], group(add.si(4, 4), add.si(5, 5)))
    outer = chord([inner, add.si(6, 6)], add.si(7, 7) | add.si(8, 8))
    marks = [n.options.get(CHORD) for n in compile_canvas(outer).nodes]
    # nodes: 0, 1 | 2 (inner header), 3, 4 (inner body), 5 (outer header), 6 | 7 (outer body)
    assert marks == [[3, 4], None, [3, 4], [6], [6], [6], None, None]
    assert compile_canvas(chain(add.si(1, 1), add.si(2, 2))).nodes[0].options == {}


def test_a_chord_sent_at_launch_keeps_its_generator_header_unread():
    read = []

    def header():
        for i in range(3):
            read.append(i)
            yield add.si(i, i)

    body = chain(tsum.s(), add.s(1))
    graph = compile_canvas(group(chord(header(), body), add.si(9, 9)), lazy=True)

    assert read == []
    assert [(n.task, n.held, n.input, n.parents) for n in graph.nodes] == [
        (tsum.name, True, [], []),
        (add.name, False, 0, [0]),
        (add.name, False, None, []),
    ]
    (lazy,) = graph.lazy_headers
    assert (lazy.entries, lazy.member.args, lazy.errback_bodies) == ([0], (), [])
    assert graph.result == [1, 2]


def test_a_generator_header_after_a_task_is_read_at_compile_time():
    header = (add.s(i) for i in range(2))
    graph = compile_canvas(chain(add.si(1, 1), chord(header, tsum.s())), lazy=True)

    assert graph.lazy_headers == [] and len(graph.nodes) == 4


def test_a_canvas_gives_its_own_options_to_its_tasks_as_celery_sends_them():
    steps = chain(group(add.s(1, 1), add.s(2, 2).set(queue="mine")), tsum.s(), add.s(3))
    nodes = compile_canvas(steps.set(queue="q", eta="soon")).nodes
    options = [public_options(n.options) for n in nodes]
    # the first step (a chord: its header all, its body but the delay), not the steps after
    assert options[:3] == [{"queue": "q", "eta": "soon"}] * 2 + [{"queue": "q"}]
    assert options[3] == {}
    grouped = compile_canvas(group(add.s(1, 1), add.s(2, 2).set(priority=1)).set(priority=5))
    assert [public_options(n.options) for n in grouped.nodes] == [{"priority": 5}] * 2
    chorded = compile_canvas(chord([add.s(1, 1)], tsum.s()).set(countdown=3, queue="q"))
    assert [n.options.get("countdown") for n in chorded.nodes] == [3, None]
    assert [n.options["queue"] for n in chorded.nodes] == ["q", "q"]


def _with_errback(sig):
    sig.link_error(collect.si("errback"))
    return sig


def _canvases():
    inner = chord([add.si(1, 1), add.si(2, 2)], add.si(3, 3))
    linked = add.si(1, 1)
    linked.link(add.s(5))
    return {
        "nested chords": _with_errback(chord([add.si(4, 4), inner], collect.si("body"))),
        "chain body": chord([add.si(1, 1), add.si(2, 2)], _with_errback(add.s(1) | add.s(2))),
        "upgraded chords": _with_errback(
            chain(add.si(0, 0), group(add.si(1, 1), add.si(2, 2)), group(add.s(1)), tsum.s())
        ),
        "foreach body": chord([add.si(1, 1)], foreach(_with_errback(add.s(1)))),
        "callbacks": chord([linked, add.si(2, 2)], _with_errback(tsum.s())),
        "plain chord": chord([add.si(i, i) for i in range(5)], tsum.s()),
    }


@pytest.mark.parametrize("name", list(_canvases()))
def test_nodes_are_handed_out_in_order_once_final(name):
    emitted = []
    graph = compile_canvas(_canvases()[name], emit=lambda node: emitted.append(copy.deepcopy(node)))
    assert graph.nodes == []
    assert emitted == compile_canvas(_canvases()[name]).nodes
    assert [node.index for node in emitted] == list(range(len(emitted)))


def made_before_handed_out(canvas):
    """For each node, how many nodes were made after it before it was handed out."""
    lags = []
    compiler = _Compiler(current_app, lambda node: lags.append(compiler.count - node.index - 1))
    compiler.add(canvas, (), None)
    return lags


def test_a_chain_streams_and_a_chords_header_waits_for_its_body():
    """A chord's header names its body (its last tasks, for add_to_chord), so
    its nodes go out once the body is compiled; a chain's go out as made."""
    assert made_before_handed_out(chain(*[add.s(1)] * 50)) == [0] * 50
    assert made_before_handed_out(group(add.s(1)) | add.s(2) | add.s(3)) == [2, 1, 0]
    header = chord([add.si(i, i) for i in range(3)], tsum.s())
    # (Celery folds the step after a chord into the chord's body)
    assert made_before_handed_out(chain(add.si(0, 0), header, add.s(1))) == [0, 4, 3, 2, 1, 0]


def test_not_a_canvas_is_refused():
    with pytest.raises(CanvasError):
        compile_canvas(None)
    with pytest.raises(CanvasError, match="empty chain"):
        compile_canvas(chain())


def test_resolve_builds_nested_values():
    assert resolve([0, [1, 2]], {0: "a", 1: "b", 2: "c"}) == ["a", ["b", "c"]]
