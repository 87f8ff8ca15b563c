"""Running one of Celery's canvas integration cases natively and tracked.

A case is Celery's canvas and Celery's expected outcome; ``check`` runs it
natively on the session's worker, then with ``launch_canvas`` on the same
worker, and compares both with the expectation. What Celery's tests read
from Redis (``redis_echo``, ``redis_count``, errbacks counting by task id)
is read here from Call rows (``echo``, ``errback_old_style``, ...).
"""

from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from celery import current_app

from django_workflows import launch_canvas
from django_workflows.models import TaskRun
from django_workflows.models import TaskRunStatus as T
from django_workflows.models import WorkflowStatus as W
from tests.helpers import until
from tests.testapp.models import Call

Outcome = tuple[str, Any]

#: Where a chord's header fails, Celery's tests (on Redis) expect the header
#: task's exception; on the django-db backend native Celery often raises the
#: body's ``ChordError`` instead (which of the two depends on timing). The
#: tracked run's failed task is the header task, with its own exception.
CHORD_ERROR = ("error", "ChordError")


@dataclass
class Case:
    #: Celery's test (and subtest) name.
    name: str
    make: Callable[[], Any]
    #: ("ok", value) or ("error", exception type); a callable value checks the result.
    expected: Outcome
    #: echo messages and how many times each is echoed (Celery's redis_echo / redis_count).
    echoes: dict[str, int] = field(default_factory=dict)
    #: (errback task, calls): a mutable errback's calls, each given a task id.
    errbacks: tuple[Any, int] | None = None
    #: What native Celery may give on this result backend instead of its own
    #: expectation (the tracked run must meet the expectation).
    native: Outcome | None = None
    #: Celery settings in effect while the canvas is built (read by link_error).
    conf: dict[str, Any] = field(default_factory=dict)
    #: Native Celery needs Redis as result backend for this case.
    needs_redis: bool = False
    #: A context manager in effect while both runs are made (Celery's monkeypatch).
    patch: Callable[[], AbstractContextManager] = nullcontext

    def __str__(self) -> str:
        return self.name


def native(make: Callable[[], Any], timeout: float = 30) -> Outcome:
    try:
        result = make().apply_async()
        return "ok", result.get(timeout=timeout, interval=0.02, disable_sync_subtasks=False)
    except Exception as exc:  # Celery re-raises the task's exception
        return "error", type(exc).__name__


def tracked(make: Callable[[], Any]) -> Outcome:
    wf = launch_canvas(make()).wait(timeout=30)
    if wf.status == W.SUCCESS:
        return "ok", wf.result
    assert wf.status == W.FAILURE, f"the run is {wf.status}"
    failed = wf.task_runs.filter(status=T.FAILURE).order_by("node").first()
    return "error", failed.exception_type


def matches(outcome: Outcome, expected: Outcome) -> bool:
    kind, value = expected
    if callable(value):
        return outcome[0] == kind and value(outcome[1])
    return outcome == expected


def echoes() -> Counter:
    return Counter(c.args[0] for c in Call.objects.filter(task="echo"))


def errback_ids(task: Any) -> list[str]:
    return [str(c.args[0]) for c in Call.objects.filter(task=task.name.rsplit(".", 1)[-1])]


def _with_conf(case: Case) -> Callable[[], Any]:
    def make() -> Any:
        saved = {key: current_app.conf[key] for key in case.conf}
        current_app.conf.update(case.conf)
        try:
            return case.make()
        finally:
            current_app.conf.update(saved)

    return make


def _side_effects(case: Case, run: str) -> None:
    if case.echoes:
        try:
            until(lambda: echoes() == Counter(case.echoes), what=f"the {run} run's echoes")
        except TimeoutError:
            raise AssertionError(f"{run} echoes: {dict(echoes())}") from None
    if case.errbacks:
        task, count = case.errbacks
        until(lambda: len(errback_ids(task)) == count, what=f"the {run} run's errbacks")


def check(case: Case) -> str:
    """Celery's expected outcome natively (or the known native miss), then
    tracked. Returns what native Celery gave: "as expected", the miss, or
    "not run" (a case whose native run needs Redis as result backend)."""
    with case.patch():
        return _check(case)


def _check(case: Case) -> str:
    make = _with_conf(case)
    native_gave = "not run"
    if not (case.needs_redis and not _redis_backend()):
        timeout = 5 if case.native == ("error", "TimeoutError") else 30
        outcome = native(make, timeout=timeout)
        native_gave = "as expected" if matches(outcome, case.expected) else repr(outcome)
        if matches(outcome, case.expected):
            _side_effects(case, "native")
        else:  # a known native miss on this backend, or not the expectation
            misses = [case.native] if case.native else []
            if case.expected[0] == "error":
                misses.append(CHORD_ERROR)
            assert outcome in misses, f"native: {outcome}"
        if case.echoes or case.errbacks:  # what native Celery still runs is not the tracked run's
            until(_nothing_running, what="the native run's last tasks")
    Call.objects.all().delete()

    outcome = tracked(make)
    assert matches(outcome, case.expected), f"tracked: {outcome}"
    _side_effects(case, "tracked")
    if case.errbacks:  # each errback was given a task run of the run
        ids = errback_ids(case.errbacks[0])
        assert TaskRun.objects.filter(pk__in=ids).count() == len(set(ids))
    return native_gave


def _nothing_running() -> bool:
    """No task is running or waiting on the worker (a native chord's unlock
    may stay scheduled: it is not waited for)."""
    inspect = current_app.control.inspect(timeout=1.0)
    active, reserved = inspect.active(), inspect.reserved()
    return all(replies and not any(replies.values()) for replies in (active, reserved))


def _redis_backend() -> bool:
    return str(current_app.conf.result_backend or "").startswith("redis")
