"""One backend's rows: ``python -m benchmarks.suite NAME REPS [ROWS]`` (run.py calls it).

Every timed row runs the tracked workflow and the native canvas alternately
on the same worker, broker and result backend, after one warm-up of each.
"""

import os
import statistics
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
from tests.testapp.tasks import bench_noop  # noqa: E402
from tests.worker import start_worker, stop_worker  # noqa: E402

IDLE_QUEUE = "bench-idle"  # no worker consumes it: launches measured without execution


def purge_idle_queue() -> None:
    """Drop the messages the launch rows sent to the queue no worker reads."""
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(IDLE_QUEUE)


def fresh_database() -> None:
    db = settings.DATABASES["default"]
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


def side_by_side(tracked: Callable, native: Callable, reps: int) -> tuple[list, list]:
    tracked(), native()  # warm-up
    t, n = [], []
    for _ in range(reps):
        t.append(timed(tracked))
        n.append(timed(native))
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

    runs = []

    def tracked():
        runs.append(launch_canvas(canvas()).wait(timeout=600, interval=0.01))

    t, n = side_by_side(tracked, lambda: wait_native(canvas().apply_async()), reps)
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
    # join latency: last header task finished -> join started, from our rows
    lags = []
    for wf in runs:
        join = wf.task_runs.get(node=width)
        last = max(wf.task_runs.exclude(pk=join.pk).values_list("finished_at", flat=True))
        lags.append((join.started_at - last).total_seconds())
    row("join latency", "ms min/med/max", spread(lags, 1000), "-", "tracked only")


def launch_time(reps: int) -> None:
    for size in (1_000, 10_000):

        def canvas(size=size):
            return chord(
                [bench_noop.s().set(queue=IDLE_QUEUE) for _ in range(size - 1)],
                bench_noop.s().set(queue=IDLE_QUEUE),
            )

        times = [timed(lambda: launch_canvas(canvas())) for _ in range(max(2, reps // 2))]
        row(
            f"launch ({size} nodes)",
            "s min/med/max",
            spread(times, fmt="{:.2f}"),
            "-",
            f"{size - 1} roots sent",
        )
    purge_idle_queue()


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


ALL = {
    "hop": hop_latency,
    "fan": fan_out_in,
    "launch": launch_time,
    "message": message_size,
    "dag": dag_pages,
}


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
    log = Path(tempfile.mkdtemp(prefix="dw-bench-")) / "worker.log"
    worker = start_worker(log, concurrency=2)
    try:
        app.control.purge()
        for key, fn in ALL.items():
            if not only or key in only.split(","):
                fn(reps)
    finally:
        stop_worker(worker)
    TaskRun.objects.all().delete()
    if os.environ.get("DW_BENCH_KEEP_LOG"):
        print(f"  worker log: {log}")


if __name__ == "__main__":
    main()
