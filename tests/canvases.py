"""Canvases of every shape, shared by the fidelity tests and the benchmarks.

Each entry: (id, factory, expected[, native_bug]) where ``expected`` is what
``AsyncResult.get()`` of the native canvas returns, written out by hand so
that a shape native Celery gets wrong still has a reference; ``native_bug``
says what native Celery does wrong with it.
"""

from celery import chain, chord, group

from django_workflows import foreach
from tests.testapp.tasks import add, collect, const, level, mul, tsum, type_name

CANVASES = [
    ("single", lambda: add.s(1, 2), 3),
    ("chain", lambda: chain(add.s(1, 2), add.s(3), mul.s(2)), 12),
    ("group", lambda: group(add.s(1, 1), add.s(2, 2)), [2, 4]),
    ("chord", lambda: chord([add.s(i, i) for i in range(5)], tsum.s()), 20),
    ("group_in_chain_is_chord", lambda: add.s(1, 1) | group(add.s(1), add.s(2)) | tsum.s(), 7),
    ("chain_ending_in_group", lambda: add.s(1, 1) | group(add.s(10), mul.s(10)), [12, 20]),
    ("immutable", lambda: add.s(1, 1) | add.si(5, 5) | add.s(1), 11),
    (
        "partial_args_kwargs",
        lambda: add.s(1, 2) | collect.s(7, k=1),
        {"args": [3, 7], "kwargs": {"k": 1}},
    ),
    (
        "chord_body_partial",
        lambda: chord([const.s(1), const.s(2)], collect.s("x", flag=True)),
        {"args": [[1, 2], "x"], "kwargs": {"flag": True}},
    ),
    ("group_of_chains", lambda: group(add.s(1, 1) | mul.s(3), add.s(2, 2) | mul.s(4)), [6, 16]),
    (
        "chain_of_chords",
        lambda: chord([add.s(1, 1), add.s(2, 2)], tsum.s()) | chord([add.s(1), add.s(2)], tsum.s()),
        15,
    ),
    (
        "chord_in_group_in_chain",
        lambda: add.s(1, 1) | group(chord([add.s(1), add.s(2)], tsum.s()), mul.s(10)) | tsum.s(),
        27,
    ),
    (
        "one_task_group_in_chain",
        lambda: chain(add.s(1, 1), group(add.s(1)), collect.s()),
        {"args": [3], "kwargs": {}},
    ),
    ("nested_groups", lambda: group(add.s(1, 1), group(add.s(2, 2), add.s(3, 3))), [2, 4, 6]),
    (
        # Native Celery (5.7, django-db and Redis backends) hands the body the
        # header results out of header order here, e.g. [2, 6, 4].
        "chord_nested_group_header",
        lambda: chord([add.s(1, 1), group(add.s(2, 2), add.s(3, 3))], collect.s()),
        {"args": [[2, 4, 6]], "kwargs": {}},
        "native order",
    ),
    ("chord_body_chain", lambda: chord([add.s(1, 1), add.s(2, 2)], tsum.s() | mul.s(10)), 60),
    (
        "chord_body_group",
        lambda: chord([add.s(1, 1), add.s(2, 2)], group(tsum.s(), mul.s(2))),
        [6, [2, 4, 2, 4]],
    ),
    (
        "group_of_chords",
        lambda: group(chord([add.s(1, 1)], tsum.s()), chord([add.s(2, 2), add.s(3, 3)], tsum.s())),
        [2, 10],
    ),
    ("chain_in_chord_header", lambda: chord([add.s(1, 1) | mul.s(2), add.s(3, 3)], tsum.s()), 10),
    (
        "deep_nesting",
        lambda: chain(
            add.s(1, 1),
            group(chain(add.s(1), group(add.s(1), add.s(2)), tsum.s()), add.s(100)),
            collect.s(),
        ),
        {"args": [[9, 102]], "kwargs": {}},
    ),
    ("immutable_chord_body", lambda: chord([add.s(1, 1)], const.si("done")), "done"),
    ("map", lambda: const.map([1, 2, 3]), [1, 2, 3]),
    # Natively one task calls add per item in turn; tracked, one task run per item.
    (
        "foreach",
        lambda: const.s([1, 2, 3]) | foreach(add.s(10)) | collect.s(),
        {"args": [[11, 12, 13]], "kwargs": {}},
    ),
    # The engine hands a JSON-native result on without decoding its JSON;
    # an int subclass is decoded, as Celery's message would deliver it.
    ("int_subclass_result", lambda: level.s(1) | type_name.s(), "int"),
    ("starmap", lambda: add.starmap([(1, 2), (3, 4)]), [3, 7]),
    ("chunks", lambda: add.chunks([(i, i) for i in range(6)], 2), [[0, 2], [4, 6], [8, 10]]),
    (
        "options_kept",
        lambda: add.s(1, 2).set(priority=5, expires=600) | add.s(1).set(countdown=0.1),
        4,
    ),
]
