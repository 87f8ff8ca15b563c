"""Start and stop a real ``celery worker`` process on the current database.

Used by the test fixtures and by the benchmarks.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def project_env() -> dict[str, str]:
    """The environment of a process of the project on Django's current (test) database."""
    from django.db import connection

    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "tests.settings"),
        "DW_DB_NAME": connection.settings_dict["NAME"],
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "example_project")]),
    }


def run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``code`` in a new Python process of the project (Django set up first)."""
    return subprocess.run(
        [sys.executable, "-c", f"import django\ndjango.setup()\n{code}"],
        cwd=ROOT, env=project_env(), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _wait_for(path: Path, text: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"The Celery worker exited early:\n{path.read_text()}")
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.1)
    raise TimeoutError(f"The Celery worker did not start in {timeout} s:\n{path.read_text()}")


def start_worker(
    log: Path, *extra: str, concurrency: int = 3, env: dict | None = None
) -> subprocess.Popen:
    """Start ``celery worker`` (prefork) on Django's current database; return it once ready."""
    environ = {**project_env(), **(env or {})}
    handle = log.open("w")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "example_project", "worker",
            "-P", "prefork", "-c", str(concurrency), "-l", "info",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-n", f"{log.stem}-{os.getpid()}@%h", *extra,
        ],
        cwd=ROOT, env=environ, stdout=handle, stderr=subprocess.STDOUT,
    )  # fmt: skip
    _wait_for(log, " ready.", proc, timeout=60)
    return proc


def stop_worker(proc: subprocess.Popen) -> None:
    """Warm shutdown (SIGTERM), then SIGKILL after 30 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_beat(log: Path, max_interval: int = 1) -> subprocess.Popen:
    """Start ``celery beat`` with django-celery-beat's DatabaseScheduler on the current database."""
    environ = project_env()
    handle = log.open("w")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "example_project", "beat", "-l", "debug",
            "-S", "django_celery_beat.schedulers:DatabaseScheduler",
            "--max-interval", str(max_interval), "--pidfile=",
        ],
        cwd=ROOT, env=environ, stdout=handle, stderr=subprocess.STDOUT,
    )  # fmt: skip
    _wait_for(log, "beat: Starting", proc, timeout=60)
    return proc
