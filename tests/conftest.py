"""Fixtures: a real Celery worker process over the configured broker.

The worker is a separate prefork process (concurrency 3) started once per
session after the test database exists; it reads and writes that database,
so tests that use it run with ``transaction=True``.
"""

import pytest
from celery import Celery

from tests.worker import start_worker, stop_worker

#: A user's project with its own settings: tests/test_testing.py runs it in its own process.
collect_ignore = ["user_project"]


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


@pytest.fixture
def sent(monkeypatch):
    """No broker: what would be sent is recorded (task names), in order."""
    sent = []
    monkeypatch.setattr(
        "celery.canvas.Signature.apply_async", lambda self, *a, **k: sent.append(self.task)
    )
    return sent


@pytest.fixture
def sender_dies(monkeypatch):
    """The process that claims task runs dies before it sends them: call the
    fixture's value to bring the next (living) process back."""
    monkeypatch.setattr("django_workflows.engine.progress.dispatch", lambda runs, results: None)
    return monkeypatch.undo


@pytest.fixture
def broker_down(celery_app, monkeypatch):
    """Make the current Celery app one whose broker port is closed."""
    url = "amqp://guest:guest@127.0.0.1:1//"
    monkeypatch.setenv("CELERY_BROKER_URL", url)  # Celery prefers it to the argument
    down = Celery("down", broker=url, set_as_current=False)
    down.conf.broker_connection_timeout = 0.5
    down.conf.task_publish_retry_policy = {"max_retries": 1, "interval_start": 0}
    down.set_current()
    yield down
    celery_app.set_current()
