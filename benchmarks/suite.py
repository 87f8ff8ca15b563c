"""One backend's rows: ``python -m benchmarks.suite NAME REPS [ROWS]`` (run.py calls it).

Every timed row runs the tracked workflow and the native canvas alternately
on the same worker, broker and result backend, after one warm-up of each.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import django

django.setup()

from celery import chain, chord, group  # noqa: E402
from celery.signals import before_task_publish  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from example_project.celery import app  # noqa: E402
from kombu.utils.json import dumps  # noqa: E402

from django_workflows import launch_canvas  # noqa: E402
from django_workflows.models import TaskRun  # noqa: E402
from tests.testapp import floor  # noqa: E402
from tests.testapp.tasks import bench_join_lag, bench_noop, bench_stamp  # noqa: E402
from tests.worker import start_worker, stop_worker  # noqa: E402

from .history import history  # noqa: E402

IDLE_QUEUE = "bench-idle"  # no worker consumes it: launches measured without execution
MEMORY_QUEUE = "bench-memory"  # only the memory row's worker consumes it
LAUNCH_SIZES = (1_000, 10_000, 100_000)  # up to MAX_NODES' default


def purge_idle_queue() -> None:
    """Drop the messages the launch rows sent to the queue no worker reads."""
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(IDLE_QUEUE)


def fresh_database() -> None:
    db = settings.DATABASES["default"]
    if os.environ.get("DW_BENCH_REUSE_DB"):  # e.g. the history row's, built once
        call_command("migrate", verbosity=0)
        return
    if db["ENGINE"].endswith("sqlite3"):
        for suffix in ("", "-wal", "-shm"):
            Path(db["NAME"] + suffix).unlink(missing_ok=True)
    else:
        import psycopg

        with psycopg.connect(
            host=db["HOST"], port=db["PORT"], user=db["USER"], dbname="postgres", autocommit=True
        ) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{db["NAME"]}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{db["NAME"]}"')
    call_command("migrate", verbosity=0)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def side_by_side(
    tracked: Callable, native: Callable, reps: int, between: Callable[[], object] = lambda: None
) -> tuple[list, list]:
    """Times of ``tracked`` and ``native``, alternately, after a warm-up of each;
    ``between`` runs untimed after each call."""
    for warm_up in (tracked, native):
        warm_up()
        between()
    t, n = [], []
    for _ in range(reps):
        t.append(timed(tracked))
        between()
        n.append(timed(native))
        between()
    return t, n


def spread(values: list[float], scale: float = 1.0, fmt: str = "{:.1f}") -> str:
    return "/".join(
        fmt.format(v * scale) for v in (min(values), statistics.median(values), max(values))
    )


ROWS: list[tuple[str, str, str, str, str]] = []  # row, unit, tracked, native, ratio/note


def row(name: str, unit: str, tracked: str, native: str, note: str) -> None:
    ROWS.append((name, unit, tracked, native, note))
    print(f"  {name:<28} {unit:<16} {tracked:<22} {native:<22} {note}", flush=True)


def wait_native(result, timeout: float = 600):
    return result.get(timeout=timeout, interval=0.01, disable_sync_subtasks=False)


# -- rows ---------------------------------------------------------------------


def hop_latency(reps: int) -> None:
    hops = 100

    def canvas():
        return chain(bench_noop.s(), *[bench_noop.s()] * (hops - 1))

    t, n = side_by_side(
        lambda: launch_canvas(canvas()).wait(timeout=600, interval=0.01),
        lambda: wait_native(canvas().apply_async()),
        reps,
    )
    ratio = statistics.median(t) / statistics.median(n)
    row(
        f"hop latency ({hops}-chain)",
        "ms/hop min/med/max",
        spread(t, 1000 / hops),
        spread(n, 1000 / hops),
        f"{ratio:.2f}x native",
    )


def fan_out_in(reps: int) -> None:
    width = 1000

    def canvas():
        return chord([bench_noop.s() for _ in range(width)], bench_noop.s())

    t, n = side_by_side(
        lambda: launch_canvas(canvas()).wait(timeout=600, interval=0.01),
        lambda: wait_native(canvas().apply_async()),
        reps,
    )
    tasks = width + 1
    rate_t = [tasks / x for x in t]
    rate_n = [tasks / x for x in n]
    ratio = statistics.median(rate_t) / statistics.median(rate_n)
    transitions = 3 * statistics.median(rate_t)  # queued, running, success per task
    row(
        f"fan-out/in ({width} + join)",
        "tasks/s min/med/max",
        spread(rate_t, fmt="{:.0f}"),
        spread(rate_n, fmt="{:.0f}"),
        f"{ratio:.2f}x native; {transitions:.0f} transitions/s",
    )


def join_latency(reps: int) -> None:
    """A chord's join: from its header's last member finishing to its body
    starting, measured by the tasks themselves (the same tasks, tracked and
    native: the body returns the lag), with a 100-member header. Three chords
    a rep: one chord is one sample, and a join's lag spreads more than a
    chain's average hop."""
    width = 100

    def canvas():
        return chord([bench_stamp.s() for _ in range(width)], bench_join_lag.s())

    lags: dict[str, list[float]] = {"tracked": [], "native": []}

    def tracked():
        lags["tracked"].append(launch_canvas(canvas()).wait(timeout=600, interval=0.01).result)

    def native():
        lags["native"].append(wait_native(canvas().apply_async()))

    side_by_side(tracked, native, 3 * reps)
    t, n = lags["tracked"][1:], lags["native"][1:]  # not the warm-up
    ratio = statistics.median(t) / statistics.median(n)
    row("join latency (100 + join)", "ms min/med/max", spread(t, 1000), spread(n, 1000),
        f"{ratio:.2f}x native")  # fmt: skip


def fan_out_scaling(reps: int) -> None:
    """Fan-out throughput with 1, 2 and 4 worker processes (prefork), and 4
    threads, each a worker of its own (on its own queue), tracked and native."""
    width = 1000
    queue = "bench-scaling"

    def canvas():
        task = bench_noop.s().set(queue=queue)
        return chord([task.clone() for _ in range(width)], task.clone())

    for label, pool, concurrency in (
        ("1 process", "prefork", 1),
        ("2 processes", "prefork", 2),
        ("4 processes", "prefork", 4),
        ("4 threads", "threads", 4),
    ):
        log = Path(tempfile.mkdtemp(prefix="dw-bench-scale-")) / f"scaling-{pool}-{concurrency}.log"
        worker = start_worker(log, "-Q", queue, "-P", pool, concurrency=concurrency)
        try:
            t, n = side_by_side(
                lambda: launch_canvas(canvas()).wait(timeout=600, interval=0.01),
                lambda: wait_native(canvas().apply_async()),
                max(2, reps // 2),
            )
        finally:
            stop_worker(worker)
        rate_t = [(width + 1) / x for x in t]
        rate_n = [(width + 1) / x for x in n]
        ratio = statistics.median(rate_t) / statistics.median(rate_n)
        row(f"fan-out, {label}", "tasks/s min/med/max", spread(rate_t, fmt="{:.0f}"),
            spread(rate_n, fmt="{:.0f}"), f"{ratio:.2f}x native")  # fmt: skip


def hop_without_celery_results(reps: int) -> None:
    """The hop with ``STORE_CELERY_RESULTS`` off: a worker of its own (its
    settings turn it off, and it sends each next task), on its own queue."""
    from django.test import override_settings

    hops, queue = 100, "bench-no-results"
    log = Path(tempfile.mkdtemp(prefix="dw-bench-nores-")) / "no-results.log"
    env = {"DJANGO_SETTINGS_MODULE": "benchmarks.settings_no_celery_results"}
    worker = start_worker(log, "-Q", queue, concurrency=2, env=env)

    def canvas():
        return chain(*[bench_noop.s().set(queue=queue)] * hops)

    try:
        with override_settings(DJANGO_WORKFLOWS={"STORE_CELERY_RESULTS": False}):
            t, n = side_by_side(
                lambda: launch_canvas(canvas()).wait(timeout=600, interval=0.01),
                lambda: wait_native(canvas().apply_async()),
                reps,
            )
    finally:
        stop_worker(worker)
    ratio = statistics.median(t) / statistics.median(n)
    row("hop, no Celery result store", "ms/hop min/med/max", spread(t, 1000 / hops),
        spread(n, 1000 / hops), f"{ratio:.2f}x native (native stores)")  # fmt: skip


def floor_rows(reps: int) -> None:
    """The engine's floor (:mod:`tests.testapp.floor`): the hop's chain and the
    fan-out's chord run by bare SQL that keeps the tracked run's promises (a
    claimed start, a durable success that claims and sends what it readies),
    beside tracked and native, in turn. Its ratio is the least tracking can cost
    with those promises; the tracked ratio's distance to it is the engine's own."""
    floor.create_tables()
    shapes = {
        "hop (100-chain)": (1, 100, "ms/hop", lambda t: t * 1000 / 100),
        "fan-out (1,000 + join)": (1000, 2, "tasks/s", lambda t: 1001 / t),
    }
    for label, (width, depth, unit, scale) in shapes.items():

        def canvas(width=width, depth=depth):
            if width == 1:
                return chain(*[bench_noop.s()] * depth)
            return chord([bench_noop.s() for _ in range(width)], bench_noop.s())

        runs = {
            "tracked": lambda canvas=canvas: launch_canvas(canvas()).wait(
                timeout=600, interval=0.01
            ),
            "native": lambda canvas=canvas: wait_native(canvas().apply_async()),
            "floor": lambda width=width, depth=depth: floor.run(width, depth),
        }
        for fn in runs.values():  # warm-up
            fn()
        times = {name: [] for name in runs}
        for _ in range(reps):
            for name, fn in runs.items():
                times[name].append(timed(fn))
        values = {name: [scale(t) for t in ts] for name, ts in times.items()}
        native = statistics.median(values["native"])
        fmt = "{:.1f}" if width == 1 else "{:.0f}"
        for name in ("floor", "tracked"):
            ratio = statistics.median(values[name]) / native
            row(f"{label}, {name}", f"{unit} min/med/max", spread(values[name], fmt=fmt),
                spread(values["native"], fmt=fmt), f"{ratio:.2f}x native")  # fmt: skip


def launch_time(reps: int) -> None:
    """launch() of an N-node DAG: the database part (a chain: one root to send),
    then a chord whose N-1 roots are all sent, beside native apply_async of it.
    Up to 100,000 tasks (MAX_NODES' default); the idle queue is purged after
    each launch, so Redis never holds more than one launch's messages."""
    for size in LAUNCH_SIZES:

        def chain_of(size=size):
            return chain(*[bench_noop.s().set(queue=IDLE_QUEUE)] * size)

        def chord_of(size=size):
            return chord(
                [bench_noop.s().set(queue=IDLE_QUEUE) for _ in range(size - 1)],
                bench_noop.s().set(queue=IDLE_QUEUE),
            )

        count = max(3, reps // 2)
        times = []
        for _ in range(count):
            canvas = chain_of()  # built outside the timing: launch_canvas is measured
            times.append(timed(lambda canvas=canvas: launch_canvas(canvas)))
            purge_idle_queue()
        row(f"launch ({size}-chain)", "s min/med/max", spread(times, fmt="{:.2f}"), "-", "1 root")
        t, n = side_by_side(
            lambda: launch_canvas(chord_of()),
            lambda: chord_of().apply_async(),
            count,
            between=purge_idle_queue,
        )
        ratio = statistics.median(t) / statistics.median(n)
        row(
            f"launch ({size}-chord)",
            "s min/med/max",
            spread(t, fmt="{:.2f}"),
            spread(n, fmt="{:.2f}"),
            f"{ratio:.2f}x native; {size - 1} roots sent",
        )


def queries_per_task(reps: int) -> None:
    """SQL statements per task lifecycle (prerun to children dispatched): the
    engine's own calls, with the broker send recorded instead of made."""
    from unittest import mock

    from django.db import connection as db

    from django_workflows import engine

    counts = {}
    for size in (10, 10_000):
        wf = launch_canvas(chain(*[bench_noop.s().set(queue=IDLE_QUEUE)] * size))
        run = wf.task_runs.get(node=0)
        statements: list[str] = []
        with (
            mock.patch("celery.canvas.Signature.apply_async"),
            db.execute_wrapper(
                lambda execute, sql, *args, seen=statements: seen.append(sql) or execute(sql, *args)
            ),
        ):
            engine.task_started(str(run.pk), str(wf.pk), "bench")
            engine.task_succeeded(str(run.pk), str(wf.pk), 0, 1)
        # PostgreSQL's PREPAREs: once per connection, not per task
        counts[size] = sum(not sql.startswith("PREPARE ") for sql in statements)
    row(
        "queries per task",
        "statements",
        f"{counts[10]} at 10, {counts[10_000]} at 10k",
        "-",
        "prerun + success, children claimed",
    )
    # The same reports' time, down a 100-chain, with no worker and no broker:
    # what tracking adds to each hop at the least (the hop's floor is native + this).
    per_task = []
    for _ in range(reps):
        wf = launch_canvas(chain(*[bench_noop.s().set(queue=IDLE_QUEUE)] * 100))
        runs = list(wf.task_runs.order_by("node"))
        with mock.patch("celery.canvas.Signature.apply_async"):
            start = time.perf_counter()
            for run in runs:
                claim = str(TaskRun.objects.filter(pk=run.pk).values_list("claim", flat=True)[0])
                engine.task_started(str(run.pk), str(wf.pk), "bench", attempt=claim)
                engine.task_succeeded(str(run.pk), str(wf.pk), run.node, 1, attempt=claim)
            per_task.append((time.perf_counter() - start) / len(runs))
    row("reports per task (no broker)", "ms min/med/max", spread(per_task, 1000, "{:.2f}"), "-",
        "start + success, one claim read each")  # fmt: skip
    purge_idle_queue()


def memory(reps: int) -> None:
    """Peak RSS: of a fresh process launching an N-node DAG, and of the worker
    (main process + children, high-water marks) while an N-node run goes through."""
    # RSS before building the chain, after building it, and the peak once launched:
    # a 100,000-task canvas is big before launch; launch is judged by what it adds.
    # Building it peaks some 80 MB above what it keeps (Celery's chain of 100,000):
    # the peak is reset once it is built, so that transient is not counted as launch's.
    script = (
        "import django; django.setup()\n"
        "from celery import chain\n"
        "from django_workflows import launch_canvas\n"
        "from tests.testapp.tasks import bench_noop\n"
        "from benchmarks.suite import _reset_peak, _status_kb\n"
        "before = _status_kb('self', 'VmRSS')\n"
        "canvas = chain(*[bench_noop.s().set(queue='bench-idle')] * {size})\n"
        "_reset_peak()\n"
        "built = _status_kb('self', 'VmRSS')\n"
        "launch_canvas(canvas)\n"
        "print(before, built, _status_kb('self', 'VmHWM'))\n"
    )
    env = {**os.environ, "DW_DB_NAME": connection.settings_dict["NAME"]}
    launcher = {}
    for size in LAUNCH_SIZES:
        out = subprocess.run(
            [sys.executable, "-c", script.format(size=size)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        launcher[size] = [int(kb) / 1024 for kb in out]
        purge_idle_queue()
    purge_idle_queue()
    peaks = {}
    for size in (1_000, 10_000):
        # its own node name (the log name): the suite's worker is still up
        log = Path(tempfile.mkdtemp(prefix="dw-bench-mem-")) / f"memory-{size}.log"
        worker = start_worker(log, "-Q", MEMORY_QUEUE, concurrency=2)
        try:
            task = bench_noop.s().set(queue=MEMORY_QUEUE)
            launch_canvas(chord([task.clone() for _ in range(size - 1)], task.clone())).wait(
                timeout=1800, interval=0.1
            )
            peaks[size] = _tree_peak_rss(worker.pid)
        finally:
            stop_worker(worker)
    row(
        "memory: launching process",
        "MB peak RSS",
        " / ".join(f"{launcher[s][2]:.0f} at {s // 1000}k" for s in launcher),
        "-",
        "launch adds "
        + " / ".join(f"{peak - built:.0f}" for _, built, peak in launcher.values())
        + " to the canvas built ("
        + " / ".join(f"{built - before:.0f}" for before, built, _ in launcher.values())
        + f") and {launcher[1_000][0]:.0f} before",
    )
    row(
        "memory: worker (2 children)",
        "MB peak RSS",
        " / ".join(f"{peaks[s]:.0f} at {s // 1000}k" for s in peaks),
        "-",
        "main + children, high-water marks",
    )


def _tree_peak_rss(pid: int) -> float:
    """Sum of VmHWM (peak RSS) of ``pid``'s Celery main process and its children, in MB."""
    root = Path(f"/proc/{pid}")
    # the worker is started as ``python -m celery``: that is the main process
    pids = [pid, *(int(c) for c in (root / "task" / str(pid) / "children").read_text().split())]
    return sum(_status_kb(p, "VmHWM") for p in pids) / 1024


def _status_kb(pid: int | str, key: str) -> int:
    """A ``/proc/PID/status`` memory figure (VmRSS, VmHWM), in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise KeyError(key)


def _reset_peak() -> None:
    """Start this process's VmHWM again from its current RSS (Linux 4.0+)."""
    Path("/proc/self/clear_refs").write_text("5")


def message_size(reps: int) -> None:
    sizes: dict[str, int] = {}

    def capture(sender=None, body=None, headers=None, **kwargs):
        sizes.setdefault("first", len(dumps(body)) + len(dumps(headers or {})))

    before_task_publish.connect(capture, weak=False)
    try:
        for size in (10, 10_000):

            def canvas(size=size):
                return chain(*[bench_noop.s().set(queue=IDLE_QUEUE) for _ in range(size)])

            sizes.clear()
            launch_canvas(canvas())
            tracked = sizes["first"]
            sizes.clear()
            canvas().apply_async()
            native = sizes["first"]
            row(
                f"message size ({size}-chain)",
                "bytes",
                str(tracked),
                str(native),
                "first task's message",
            )
    finally:
        before_task_publish.disconnect(capture)
        purge_idle_queue()


def dag_pages(reps: int) -> None:
    """Server time of the admin run page and its DAG JSON for a 2,000-node run."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    size = 2000
    run = launch_canvas(
        bench_noop.s().set(queue=IDLE_QUEUE)
        | group(bench_noop.s().set(queue=IDLE_QUEUE) for _ in range(size - 2))
        | bench_noop.s().set(queue=IDLE_QUEUE)
    )
    admin = get_user_model().objects.create_superuser("bench", "bench@example.com", "pw")
    client = Client()
    client.force_login(admin)
    base = f"/admin/django_workflows/workflow/{run.pk}"
    for label, url in (("admin run page", f"{base}/change/"), ("DAG JSON", f"{base}/dag.json")):
        client.get(url)  # warm-up
        times = []
        for _ in range(max(5, reps)):
            times.append(timed(lambda url=url: client.get(url)))
        size_kb = len(client.get(url).content) / 1024
        row(
            f"{label} ({size} nodes)",
            "s min/med/max",
            spread(times, fmt="{:.3f}"),
            "-",
            f"{size_kb:.0f} KB",
        )
    purge_idle_queue()
    admin.delete()


#: Every row, in the order they run: the launch and memory rows last. Their
#: 100,000-task launches leave this process over 1 GB and busy, and what it timed
#: after them was off (a native hop 121 ms against 3.8, the DAG JSON 104 against 38).
ALL = {
    "hop": hop_latency,
    "floor": floor_rows,
    "fan": fan_out_in,
    "join": join_latency,
    "scaling": fan_out_scaling,
    "hop-nostore": hop_without_celery_results,
    "queries": queries_per_task,
    "message": message_size,
    "dag": dag_pages,
    "launch": launch_time,
    "memory": memory,
}

#: Rows run only when named (``--rows history``), without a worker.
ON_DEMAND = {"history": lambda reps: history(reps, row)}


def main() -> None:
    name, reps, only = sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else ""
    fresh_database()
    db = connection.settings_dict
    print(
        f"\n== {name}: {db['ENGINE'].rsplit('.', 1)[-1]} {db['NAME']}, "
        f"broker {app.conf.broker_url.split('://')[0]}, "
        f"results {app.conf.result_backend.split('://')[0]}, reps {reps}",
        flush=True,
    )
    print(f"  {'row':<28} {'unit':<16} {'tracked':<22} {'native':<22} ratio / note")
    selected = only.split(",") if only else list(ALL)
    for key in selected:
        if key in ON_DEMAND:
            ON_DEMAND[key](reps)
    if any(key in ALL for key in selected):
        log = Path(tempfile.mkdtemp(prefix="dw-bench-")) / "worker.log"
        worker = start_worker(log, concurrency=2)
        try:
            app.control.purge()
            for key, fn in ALL.items():
                if key in selected:
                    fn(reps)
        finally:
            stop_worker(worker)
        if os.environ.get("DW_BENCH_REUSE_DB"):
            # A reused database keeps its history, not these rows (a fresh one is dropped
            # by the next run: deleting 100,000-task launches would take minutes).
            TaskRun.objects.all().delete()
        if os.environ.get("DW_BENCH_KEEP_LOG"):
            print(f"  worker log: {log}")


if __name__ == "__main__":
    main()
