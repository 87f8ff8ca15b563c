"""Fixtures: a real Celery worker process over the configured broker.

The worker is a separate prefork process (concurrency 3) started once per
session after the test database exists; it reads and writes that database,
so tests that use it run with ``transaction=True``.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _wait_for(path: Path, text: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"The Celery worker exited early:\n{path.read_text()}")
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.1)
    raise TimeoutError(f"The Celery worker did not start in {timeout} s:\n{path.read_text()}")


def start_worker(log: Path, *extra: str, concurrency: int = 3, env: dict | None = None):
    """Start ``celery worker`` on the test database; return the process once ready."""
    from django.db import connection

    environ = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DW_DB_NAME": connection.settings_dict["NAME"],
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "example_project")]),
        **(env or {}),
    }
    handle = log.open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "example_project",
            "worker",
            "-P",
            "prefork",
            "-c",
            str(concurrency),
            "-l",
            "info",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"{log.stem}-{os.getpid()}@%h",
            *extra,
        ],
        cwd=ROOT,
        env=environ,
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    _wait_for(log, " ready.", proc, timeout=60)
    return proc


def stop_worker(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def celery_app():
    from example_project.celery import app

    return app


@pytest.fixture(scope="session")
def worker(django_db_setup, django_db_blocker, tmp_path_factory, celery_app):
    """A prefork worker process, shared by the session."""
    with django_db_blocker.unblock():
        celery_app.control.purge()
        log = tmp_path_factory.mktemp("worker") / "worker.log"
        proc = start_worker(log)
    yield proc
    stop_worker(proc)
    print(f"\nworker log: {log}")


@pytest.fixture
def calls():
    """What the test tasks really ran: ``calls()`` -> list of (task, args, kwargs)."""
    from tests.testapp.models import Call

    def read(task_ids=None):
        rows = Call.objects.order_by("id")
        if task_ids is not None:
            rows = rows.filter(task_id__in=[str(t) for t in task_ids])
        return [(c.task, c.args, c.kwargs) for c in rows]

    return read
