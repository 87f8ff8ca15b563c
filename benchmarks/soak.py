#!/usr/bin/env python3
"""Fault-injection soak: no run is ever stuck, lost, wrong, or sent twice.

    python3 benchmarks/soak.py [--short] [--runs N] [--variants a,b] [--seed S] [--keep]

It starts its own PostgreSQL cluster and Redis server on free ports (never
the shared ones), migrates a fresh database, starts two Celery workers
(prefork, two processes each) and launches runs of mixed shapes (chains,
chords, nested groups and chords, foreach, tasks that retry, a hook), each
with a result known in advance. While they run it SIGKILLs worker processes
and whole workers (starting replacements), restarts Redis and PostgreSQL
(every connection drops) and makes the project's signal receivers raise
(tests/testapp/receivers.py), at random. Recovery runs as in production:
the beat task ``django_workflows.reap`` every few seconds.

Two variants:

- (a) ``acks_late`` + ``task_reject_on_worker_lost``: every run must end
  ``success`` with its exact expected result;
- (b) Celery's defaults: every run must end; each failed run is resumed
  until it succeeds, and must then have its exact expected result.

What it proves, per variant: no run is left non-terminal after a deadline
(stuck), no task run is left claimed and never sent or finished (lost), no
result is wrong, and the engine never sent the same dispatch attempt of a
task twice. It also counts the task bodies Celery ran more than once (its
at-least-once delivery, which the engine must absorb). Exits non-zero if
any of the four promises is broken.

Redis runs with its append-only file synced on every write: a Redis that
forgets its queues on restart loses messages no engine can tell from a long
queue (the recovery pass deliberately never re-sends what reached the broker).
Even so, kombu's Redis transport loses a message when Redis stops between a
worker's BRPOP and its record of the message as unacknowledged: that task
run stays ``queued`` (sent) and the soak reports it as lost, and its run as
stuck.
"""

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PG_BIN = Path(os.environ.get("DW_SOAK_PG_BIN", "/usr/lib/postgresql/15/bin"))


# -- private services -------------------------------------------------------------------


def free_port(preferred: int) -> int:
    """``preferred`` if nothing listens there, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError("no free port")


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


class Postgres:
    """A throw-away cluster in ``root``, run as the ``postgres`` OS user when we are root."""

    def __init__(self, root: Path, port: int) -> None:
        self.port, self.data, self.log = port, root / "pg", root / "pg.log"
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.data.mkdir()
        if self.as_owner:
            shutil.chown(self.data, "postgres", "postgres")
            self.log.touch()
            shutil.chown(self.log, "postgres", "postgres")
        self._run(PG_BIN / "initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()

    def _run(self, *command: Any) -> None:
        subprocess.run(
            [*self.as_owner, *map(str, command)], check=True, stdout=subprocess.DEVNULL
        )  # fmt: skip

    def _ctl(self, action: str, *extra: str) -> None:
        options = (
            f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=300"
        )
        self._run(PG_BIN / "pg_ctl", action, "-D", self.data, "-l", self.log, "-o", options,
                  "-w", "-t", "60", *extra)  # fmt: skip

    def start(self) -> None:
        self._ctl("start")

    def restart(self, mode: str) -> None:
        """``fast``: clean shutdown; ``immediate``: a crash, recovered at start."""
        self._ctl("restart", "-m", mode)

    def stop(self) -> None:
        self._ctl("stop", "-m", "immediate")


class Redis:
    """A private redis-server whose append-only file is synced on every write."""

    def __init__(self, root: Path, port: int) -> None:
        self.port, self.dir = port, root / "redis"
        self.dir.mkdir()
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.dir), "--save", "", "--appendonly", "yes",
             "--appendfsync", "always", "--logfile", str(self.dir / "redis.log")],
            start_new_session=True,
        )  # fmt: skip
        wait_port(self.port)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)

    def restart(self, sig: int, downtime: float) -> None:
        self.stop(sig)
        time.sleep(downtime)
        self.start()

    def flush(self) -> None:
        subprocess.run(["redis-cli", "-p", str(self.port), "flushall"], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip


class Worker:
    """One ``celery worker`` (prefork) in its own process group, so it can be killed whole."""

    def __init__(self, root: Path, name: str, env: dict, concurrency: int) -> None:
        self.name, self.killed = name, False
        log = (root / f"worker-{name}.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "example_project", "worker",
             "-P", "prefork", "-c", str(concurrency), "-l", "info", "-n", f"{name}@%h",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def alive(self) -> bool:
        return self.proc.poll() is None

    def children(self) -> list[int]:
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                pids.append(int(stat.parent.name))
        return pids

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def stop(self) -> None:
        """Warm shutdown, then SIGKILL for the whole group."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


# -- the runs ---------------------------------------------------------------------------


@dataclass
class Run:
    index: int
    shape: str
    expected: Any
    launch: Callable[[], Any]
    pk: Any = None
    status: str = ""
    resumes: int = 0
    #: The launch raised BrokerUnavailable: the caller was told, and resumes the run.
    refused: bool = False


def shapes(rng: random.Random) -> dict[str, Callable[[], tuple[Callable, Any]]]:
    """Each shape: ``() -> (launch, expected result)``, with random sizes."""
    from celery import chain, chord, group

    from benchmarks.soak_app import add, collect, retry, slow, tsum
    from django_workflows import foreach, launch, launch_canvas

    def adhoc(name: str, canvas: Any) -> Callable:
        return lambda key: launch_canvas(canvas, name=f"soak.{name}", idempotency_key=key)

    def chain_shape():
        a, b, c = rng.randint(0, 99), rng.randint(0, 99), rng.randint(0, 99)
        canvas = chain(add.s(a, b), add.s(c), slow.s(0.3), add.s(1))
        return adhoc("chain", canvas), a + b + c + 1

    def chord_shape():
        n, k = rng.randint(3, 6), rng.randint(0, 99)
        header = [add.s(i, k) for i in range(n)] + [slow.s(k, 0.4)]
        return adhoc("chord", chord(header, tsum.s())), sum(i + k for i in range(n)) + k

    def nested_shape():
        a = rng.randint(0, 99)
        x = a + 1
        canvas = (
            add.s(a, 1)
            | group(chord([add.s(1), add.s(2)], tsum.s()), add.s(10), slow.s(0.2))
            | tsum.s()
        )
        return adhoc("nested", canvas), (x + 1) + (x + 2) + (x + 10) + x

    def deep_shape():
        a = rng.randint(0, 99)
        x = a + 1
        y = x + 1
        canvas = chain(
            add.s(a, 1),
            group(chain(add.s(1), group(add.s(1), retry.s()), tsum.s()), add.s(100)),
            collect.s(),
        )
        return adhoc("deep", canvas), [[(y + 1) + y, x + 100]]

    def foreach_shape():
        items = [rng.randint(0, 99) for _ in range(rng.randint(2, 6))]
        canvas = collect.s(*items) | foreach(add.s(10)) | tsum.s()
        return adhoc("foreach", canvas), sum(i + 10 for i in items)

    def retries_shape():
        n, a = rng.randint(2, 4), rng.randint(0, 99)
        canvas = chord([retry.s(i) for i in range(1, n + 1)], tsum.s()) | add.s(a) | retry.s()
        return adhoc("retries", canvas), sum(range(1, n + 1)) + a

    def hooked_shape():
        n = rng.randint(0, 99)
        return (
            lambda key: launch("soak.hooked", {"n": n}, idempotency_key=key),
            3 * (n + 1) + 3,
        )

    return {
        "chain": chain_shape,
        "chord": chord_shape,
        "nested": nested_shape,
        "deep": deep_shape,
        "foreach": foreach_shape,
        "retries": retries_shape,
        "hooked": hooked_shape,
    }


def db_errors() -> tuple[type[BaseException], ...]:
    from django.db import InterfaceError, OperationalError

    return (OperationalError, InterfaceError)


def reset_connection() -> None:
    """After an error, the next query opens a new connection (PostgreSQL may have restarted)."""
    from django.db import connection

    try:
        connection.close()
    except Exception:
        connection.connection = None


# -- chaos and recovery -----------------------------------------------------------------


@dataclass
class Chaos:
    """Faults injected at random, and how many of each."""

    root: Path
    pg: Postgres
    redis: Redis
    worker_env: dict
    rng: random.Random
    interval: tuple[float, float]
    variant: str
    workers: list[Worker] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    started: int = 0

    @property
    def flag(self) -> Path:
        return self.root / "receivers-raise"

    def start_worker(self) -> Worker:
        self.started += 1
        worker = Worker(self.root, f"soak{self.variant}-w{self.started}", self.worker_env, 2)
        self.workers.append(worker)
        return worker

    def alive(self) -> list[Worker]:
        return [w for w in self.workers if w.alive()]

    def kill_child(self) -> None:
        children = [pid for w in self.alive() for pid in w.children()]
        if children:
            os.kill(self.rng.choice(children), signal.SIGKILL)
            self.counts["worker children SIGKILLed"] += 1

    def supervise(self) -> None:
        """What systemd or Kubernetes does: a worker that exited by itself is started again."""
        for worker in self.workers:
            if not worker.alive() and not worker.killed:
                worker.killed = True
                self.counts["workers that crashed (started again)"] += 1
                self.start_worker()

    def kill_worker(self) -> None:
        alive = self.alive()
        if alive:
            victim = self.rng.choice(alive)
            victim.killed = True
            victim.kill()
            self.counts["whole workers SIGKILLed"] += 1
            self.start_worker()

    def restart_redis(self) -> None:
        sig = self.rng.choice([signal.SIGTERM, signal.SIGKILL])
        self.redis.restart(sig, downtime=self.rng.uniform(0, 1.5))
        self.counts["Redis restarts"] += 1

    def restart_postgres(self) -> None:
        self.pg.restart(self.rng.choice(["fast", "immediate"]))
        self.counts["PostgreSQL restarts"] += 1

    def toggle_receivers(self) -> None:
        if self.flag.exists():
            self.flag.unlink()
        else:
            self.flag.touch()
            self.counts["receivers made to raise"] += 1

    def loop(self) -> None:
        actions = [
            (self.kill_child, 30),
            (self.kill_worker, 12),
            (self.restart_redis, 12),
            (self.restart_postgres, 12),
            (self.toggle_receivers, 20),
        ]
        while not self.stop.wait(self.rng.uniform(*self.interval)):
            with self.lock:
                self.supervise()
            action = self.rng.choices([a for a, _ in actions], [w for _, w in actions])[0]
            try:
                with self.lock:
                    action()
            except Exception as exc:  # noqa: BLE001 - a fault that failed to inject is reported
                self.errors.append(f"{action.__name__}: {exc!r}")

    def calm(self) -> None:
        """Everything up again: what is left must finish by itself."""
        self.stop.set()
        with self.lock:
            self.flag.unlink(missing_ok=True)
            if self.redis.proc.poll() is not None:
                self.redis.start()
            self.supervise()
            while len(self.alive()) < 2:
                self.start_worker()


def recovery_loop(stop: threading.Event, every: float, counts: Counter) -> None:
    """What beat does in production: the app's ``django_workflows.reap`` task, periodically."""
    from django_workflows.tasks import reap

    while not stop.wait(every):
        try:
            reap()
            counts["recovery passes"] += 1
        except Exception:  # noqa: BLE001 - PostgreSQL or Redis restarting: the next pass will do
            counts["recovery passes that failed (service down)"] += 1
            reset_connection()


# -- one variant ------------------------------------------------------------------------


@dataclass
class Outcome:
    variant: str
    runs: list[Run]
    counts: Counter
    problems: list[str]


def fresh_database(port: int, name: str) -> None:
    import psycopg
    from django.conf import settings
    from django.core.management import call_command

    reset_connection()
    settings.DATABASES["default"]["NAME"] = name  # the connections' settings: new ones use it
    with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                         autocommit=True) as admin:  # fmt: skip
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    call_command("migrate", verbosity=0)


def run_variant(variant: str, options: argparse.Namespace, root: Path, pg: Postgres,
                redis: Redis, env: dict) -> Outcome:  # fmt: skip
    from django_workflows.engine import resume
    from django_workflows.models import Workflow
    from django_workflows.models import WorkflowStatus as W

    rng = random.Random(f"{options.seed}-{variant}")
    database = f"soak_{variant}"  # kept apart, to look into after the soak (--keep)
    fresh_database(pg.port, database)
    redis.flush()
    for log in ("executions.log", "publishes.log"):
        (root / log).unlink(missing_ok=True)
    worker_env = {
        **env,
        "DW_DB_NAME": database,
        "DW_SOAK_ACKS_LATE": "1" if variant == "a" else "0",
    }
    chaos = Chaos(root, pg, redis, worker_env, rng, options.interval, variant)
    for _ in range(options.workers):
        chaos.start_worker()
    time.sleep(3)  # let them connect before the faults start

    makers = shapes(rng)
    names = list(makers)
    runs = []
    for index in range(options.runs):
        shape = names[index % len(names)]
        launch, expected = makers[shape]()
        runs.append(Run(index, shape, expected, launch))
    rng.shuffle(runs)

    stop_recovery = threading.Event()
    threads = [
        threading.Thread(target=chaos.loop, daemon=True),
        threading.Thread(
            target=recovery_loop, args=(stop_recovery, 2.0, chaos.counts), daemon=True
        ),  # fmt: skip
    ]
    for thread in threads:
        thread.start()

    pending, active, done = list(runs), {}, []
    deadline = None
    last_report = time.monotonic()
    try:
        while pending or active:
            while pending and len(active) < options.inflight:
                run = pending[-1]
                try:
                    workflow = run.launch(f"soak-{variant}-{run.index}")
                except Exception as exc:  # noqa: BLE001
                    # The idempotency key makes a retry safe. A launch the broker
                    # refused raised BrokerUnavailable with the run recorded as
                    # failed: the caller knows, and resumes it.
                    workflow = getattr(exc, "workflow", None)
                    if workflow is not None:
                        run.refused = True
                        chaos.counts["launches the broker refused (resumed by the caller)"] += 1
                    else:
                        chaos.counts["launches retried (service down)"] += 1
                        reset_connection()
                        time.sleep(0.2)
                        continue
                pending.pop()
                run.pk = workflow.pk
                active[run.pk] = run
            try:
                statuses = dict(
                    Workflow.objects.filter(pk__in=list(active)).values_list("pk", "status")
                )
            except db_errors():
                reset_connection()
                time.sleep(0.3)
                continue
            for pk, status in statuses.items():
                run = active[pk]
                run.status = status
                resumable = variant == "b" or run.refused
                if status == W.SUCCESS or (status in (W.FAILURE, W.CANCELED) and not resumable):
                    done.append(active.pop(pk))
                elif status in (W.FAILURE, W.CANCELED):
                    if run.resumes >= options.max_resumes:
                        done.append(active.pop(pk))
                        continue
                    try:
                        resume(Workflow.objects.get(pk=pk))
                        run.resumes += 1
                        chaos.counts["resumes"] += 1
                    except Exception:  # noqa: BLE001 - service down, or refused: try again
                        reset_connection()
            if not pending and deadline is None:
                deadline = time.monotonic() + options.chaos_after + options.deadline
                chaos_until = time.monotonic() + options.chaos_after
            if (
                deadline is not None
                and not chaos.stop.is_set()
                and (time.monotonic() > chaos_until or not active)
            ):
                chaos.calm()
            if deadline is not None and time.monotonic() > deadline:
                break
            if time.monotonic() - last_report > 10:
                last_report = time.monotonic()
                print(f"  [{variant}] {len(done)}/{len(runs)} ended, {len(active)} active, "
                      f"{len(pending)} to launch; {dict(chaos.counts)}", flush=True)  # fmt: skip
            time.sleep(0.3)
    finally:
        chaos.calm()
        stop_recovery.set()
        for thread in threads:
            thread.join(30)
        for worker in chaos.workers:
            worker.stop()
    problems = check(variant, runs, root, chaos.counts)
    problems += [f"fault injection failed: {error}" for error in chaos.errors]
    return Outcome(variant, runs, chaos.counts, problems)


def check(variant: str, runs: list[Run], root: Path, counts: Counter) -> list[str]:
    """The four promises, on the database and the execution and publish records."""
    from django_workflows.models import TaskRun, Workflow
    from django_workflows.models import TaskRunStatus as T
    from django_workflows.models import WorkflowStatus as W

    for _ in range(60):  # PostgreSQL may just be restarting
        try:
            workflows = {wf.pk: wf for wf in Workflow.objects.filter(pk__in=[r.pk for r in runs])}
            break
        except db_errors():
            reset_connection()
            time.sleep(1)
    problems = []
    for run in runs:
        wf = workflows.get(run.pk)
        status = wf.status if wf else "never launched"
        if status not in (W.SUCCESS, W.FAILURE, W.CANCELED):
            counts["stuck runs"] += 1
            problems.append(f"stuck: run {run.pk} ({run.shape}) is {status}")
        elif status != W.SUCCESS:
            counts["runs not succeeded"] += 1
            problems.append(f"not success: run {run.pk} ({run.shape}) ended {status}"
                            f" after {run.resumes} resumes: {wf.error}")  # fmt: skip
        elif wf.result != run.expected:
            counts["wrong results"] += 1
            problems.append(f"wrong result: run {run.pk} ({run.shape}): {wf.result!r}, "
                            f"expected {run.expected!r}")  # fmt: skip
    ids = list(workflows)
    active = TaskRun.objects.filter(workflow_id__in=ids, status__in=[T.QUEUED, T.RUNNING,
                                                                     T.RETRYING])  # fmt: skip
    for task_run in active:
        counts["lost task runs"] += 1
        problems.append(
            f"lost: task run {task_run.pk} ({task_run.task}) of run {task_run.workflow_id} "
            f"is {task_run.status}, sent: {task_run.sent_at}"
        )
    hooks = Counter(
        TaskRun.objects.filter(workflow_id__in=ids, is_hook=True).values_list("status", flat=True)
    )
    counts.update({f"hooks {status}": n for status, n in hooks.items()})
    if variant == "a" and set(hooks) - {T.SUCCESS}:
        problems.append(f"hooks not all succeeded: {dict(hooks)}")
    counts["task runs"] = TaskRun.objects.filter(workflow_id__in=ids).count()

    executions = Counter(tuple(json.loads(line)[:2]) for line in _lines(root / "executions.log"))
    counts["task bodies run"] = sum(executions.values())
    counts["task bodies run more than once"] = sum(1 for n in executions.values() if n > 1)
    publishes = [json.loads(line) for line in _lines(root / "publishes.log")]
    engine_sends = Counter((task, attempt) for task, attempt, retries in publishes if not retries)
    counts["engine sends"] = sum(engine_sends.values())
    attempts = defaultdict(set)
    for task, attempt in engine_sends:
        attempts[task].add(attempt)
    counts["task runs sent with a new attempt (resume, recovery)"] = sum(
        1 for a in attempts.values() if len(a) > 1
    )
    retry_sends = Counter(tuple(p) for p in publishes if p[2])
    counts["Celery retry messages published more than once"] = sum(
        1 for n in retry_sends.values() if n > 1
    )
    for (task, attempt), n in engine_sends.items():
        if n > 1:
            counts["same attempt sent twice by the engine"] += 1
            problems.append(f"duplicate send: task run {task} attempt {attempt} sent {n} times")
    return problems


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# -- the command ------------------------------------------------------------------------


def report(outcome: Outcome) -> None:
    runs = outcome.runs
    title = {"a": "(a) acks_late + reject_on_worker_lost", "b": "(b) Celery defaults + resume"}
    print(f"\n== variant {title[outcome.variant]}")
    by_shape = defaultdict(Counter)
    for run in runs:
        by_shape[run.shape][run.status or "?"] += 1
    print(f"  runs: {len(runs)}")
    for shape, statuses in sorted(by_shape.items()):
        print(f"    {shape:<8} {sum(statuses.values()):>4}  {dict(statuses)}")
    for key in ("stuck runs", "lost task runs", "wrong results", "runs not succeeded",
                "same attempt sent twice by the engine"):  # fmt: skip
        outcome.counts.setdefault(key, 0)
    for key, value in outcome.counts.items():
        print(f"  {key}: {value}")
    for problem in outcome.problems[:30]:
        print(f"  PROBLEM {problem}")
    if len(outcome.problems) > 30:
        print(f"  ... and {len(outcome.problems) - 30} more")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="a few minutes, for CI")
    parser.add_argument("--runs", type=int, help="runs per variant (default 210, short 42)")
    parser.add_argument("--variants", default="a,b")
    parser.add_argument("--seed", default=str(random.randrange(10**6)))
    parser.add_argument("--keep", action="store_true", help="keep the logs and data folder")
    options = parser.parse_args()
    options.runs = options.runs or (42 if options.short else 210)
    options.inflight = 12 if options.short else 20
    options.workers = 2
    options.interval = (0.5, 2.0)
    options.chaos_after = 15 if options.short else 30  # seconds of chaos once all are launched
    options.deadline = 120  # then calm: what is not finished after that is stuck
    options.max_resumes = 30

    if os.environ.get("DW_SOAK_INNER") != "1":
        sys.path.insert(0, str(ROOT))
        from runtests import ensure_venv

        python = ensure_venv()
        env = {**os.environ, "DW_SOAK_INNER": "1"}
        os.chdir(ROOT)
        os.execve(python, [python, "-m", "benchmarks.soak", *sys.argv[1:]], env)

    print(f"soak: seed {options.seed}, {options.runs} runs per variant", flush=True)
    root = Path(tempfile.mkdtemp(prefix="dw-soak-"))
    root.chmod(0o755)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    pg = redis = None
    failed = True
    try:
        pg = Postgres(root, free_port(5499))
        redis = Redis(root, free_port(6399))
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "benchmarks.soak_settings",
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "example_project")]),
            "DW_DATABASE": "postgres",
            "DW_DB_HOST": "127.0.0.1",
            "DW_DB_PORT": str(pg.port),
            "DW_DB_NAME": "soak",
            "DW_DB_USER": "postgres",
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{redis.port}/0",
            "CELERY_RESULT_BACKEND": f"redis://127.0.0.1:{redis.port}/1",
            "DW_BROKER_DIR": str(root),
            "DW_SOAK_DIR": str(root),
            "DW_VAR_DIR": str(root / "var"),
        }
        os.environ.update(env)
        sys.path[:0] = [str(ROOT), str(ROOT / "example_project")]
        import logging

        import django

        django.setup()
        logging.basicConfig(filename=root / "soak.log", level=logging.WARNING)
        outcomes = []
        for variant in options.variants.split(","):
            start = time.monotonic()
            print(f"variant {variant}: {options.runs} runs", flush=True)
            outcome = run_variant(variant, options, root, pg, redis, env)
            outcome.counts["seconds"] = round(time.monotonic() - start)
            report(outcome)
            outcomes.append(outcome)
            for log in ("executions.log", "publishes.log"):
                if (root / log).exists():
                    (root / log).rename(root / f"{variant}-{log}")
        failed = any(outcome.problems for outcome in outcomes)
        print(f"\nsoak {'FAILED' if failed else 'passed'} (seed {options.seed})")
        return 1 if failed else 0
    finally:
        if redis:
            redis.stop(signal.SIGKILL)
        if pg:
            pg.stop()
        if options.keep or failed:
            print(f"logs and data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
