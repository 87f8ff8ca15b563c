"""Celery signal handlers that report each workflow task's life to the engine.

A task belongs to a workflow when its message carries the run header the
engine sets when it sends it; any other task costs nothing here but an
attribute lookup, on every path (whatever its id: only workflow tasks' ids,
which are task run ids, ever reach the engine).
"""

import contextlib
import logging
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from celery import Signature, signals, states
from celery.app.task import Task
from celery.backends.base import Backend
from celery.exceptions import Ignore, NotRegistered, TaskRevokedError
from celery.result import ResultBase
from celery.worker.control import control_command
from django.db import DatabaseError, InterfaceError, OperationalError, connection

from . import engine
from .engine import eager
from .exceptions import CanvasError
from .headers import ATTEMPT_HEADER, NODE_HEADER, RUN_HEADER

logger = logging.getLogger(__name__)

#: Set on ``task.request`` by the prerun handler when the task must not run.
SKIP = "django_workflows_skip"
#: Set on ``task.request`` once its success is reported.
REPORTED = "django_workflows_reported"


#: How long a worker goes on making a report while the database cannot be
#: reached (restarting, failing over) before it gives up.
REPORT_RETRY_SECONDS = 60.0

R = TypeVar("R")


def report(call: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """Make an engine report, again on a new connection while the database
    cannot be reached.

    Celery logs and drops what a signal handler raises, and the worker keeps
    a connection the database dropped (``CELERY_DB_REUSE_MAX``): a report
    lost here would leave its run waiting for ever. Each report is guarded
    transitions, so making it again after it was recorded changes nothing.
    """
    delay, deadline = 0.05, time.monotonic() + REPORT_RETRY_SECONDS
    while True:
        try:
            return call(*args, **kwargs)
        except (OperationalError, InterfaceError) as exc:
            if connection.in_atomic_block or time.monotonic() >= deadline:
                raise
            logger.warning("Database unreachable (%s); reporting again in %.2f s", exc, delay)
            with contextlib.suppress(DatabaseError):
                connection.close()
            time.sleep(delay)
            delay = min(2 * delay, 2.0)


#: The worker main process's requests of workflow tasks, by task id, while Celery holds
#: them: a hard time limit is reported there with no request at hand, only the id.
_workflow_requests: "weakref.WeakValueDictionary[str, Any]" = weakref.WeakValueDictionary()


def on_received(sender: Any = None, request: Any = None, **kwargs: Any) -> None:
    """Remember the main process's request of a workflow task (see ``_failed``)."""
    if RUN_HEADER in request.request_dict:
        _workflow_requests[request.id] = request


def on_prerun(sender: Any = None, task_id: str = "", task: Any = None, **kwargs: Any) -> None:
    request = task.request
    if request.is_eager and request.headers:
        # A task applied inline keeps its headers in a dict, where a worker
        # makes them attributes of the request: make them so here too.
        for name in (RUN_HEADER, NODE_HEADER, ATTEMPT_HEADER):
            if name in request.headers:
                setattr(request, name, request.headers[name])
    run = getattr(request, RUN_HEADER, None)
    attempt = getattr(request, ATTEMPT_HEADER, None)
    if run and not report(
        engine.task_started, task_id, run, request.hostname, request.retries or 0, attempt
    ):
        # Canceled, already done (the same message delivered twice), or a stale attempt.
        setattr(task.request, SKIP, True)


def report_before_storing(
    self: Backend,
    task_id: str,
    result: Any,
    request: Any = None,
    store_result: bool = True,
    state: str = states.SUCCESS,
) -> Any:
    """Report a workflow task's success before Celery stores its result.

    Installed as ``Backend.mark_as_done``, which Celery's tracer calls
    once the task has returned and its own callbacks are sent: the task
    run's children are claimed and sent before the result is stored, as
    Celery sends a chain's next task before storing, so the store is not on
    the run's critical path. The ``task_success`` handler reports only what
    was not reported here (a backend class of its own, a report that raised).
    """
    if request is not None and state == states.SUCCESS and getattr(request, RUN_HEADER, None):
        try:
            _report_success(request, result)
        except Exception:
            logger.exception("Reporting the success of task %s failed; reporting it again", task_id)
    return _celery_mark_as_done(self, task_id, result, request, store_result, state)


_celery_mark_as_done = Backend.mark_as_done


def on_success(sender: Any = None, result: Any = None, **kwargs: Any) -> None:
    request = sender.request
    if getattr(request, RUN_HEADER, None) and not getattr(request, REPORTED, False):
        _report_success(request, result)


def _report_success(request: Any, result: Any) -> None:
    """Report the success of the workflow task of ``request``, once."""
    run = getattr(request, RUN_HEADER)
    node = getattr(request, NODE_HEADER, None)
    if isinstance(result, ResultBase):
        # A task returning an AsyncResult: Celery's result backends store its
        # ``as_tuple()`` (with any serializer but pickle); so does the run.
        result = result.as_tuple()
    if node is None:
        report(engine.hook_succeeded, request.id, result)
    else:
        attempt = getattr(request, ATTEMPT_HEADER, None)
        with eager.reporting(request):
            report(engine.task_succeeded, request.id, run, node, result, attempt)
    setattr(request, REPORTED, True)


def on_retry(
    sender: Any = None, request: Any = None, reason: Any = None, einfo: Any = None, **kwargs: Any
) -> None:
    if getattr(request, RUN_HEADER, None):
        exception = reason if isinstance(reason, BaseException) else None
        report(
            engine.task_retrying,
            request.id,
            request.retries or 0,
            exception,
            getattr(einfo, "traceback", ""),
            getattr(request, ATTEMPT_HEADER, None),
        )


def on_failure(
    sender: Any = None,
    task_id: str = "",
    exception: BaseException | None = None,
    einfo: Any = None,
    **kwargs: Any,
) -> None:
    request = getattr(sender, "request", None)
    if request is None or request.id != task_id:
        # The worker's main process (a hard time limit, a rejected message) reports a
        # task whose request is not on the task's stack: the one remembered, if any.
        held = _workflow_requests.get(task_id)
        request = held.request_dict if held is not None else None
    _failed(task_id, exception, einfo, request)


def on_internal_error(
    sender: Any = None, task_id: str = "", exception: BaseException | None = None, **kwargs: Any
) -> None:
    """Celery failed around the body (e.g. the result backend is down while it
    stores the result): neither success nor failure is signalled, so the task
    run fails here, or its run would wait for ever."""
    _failed(task_id, exception, kwargs.get("einfo"), kwargs.get("request"))


def _failed(task_id: str, exception: BaseException | None, einfo: Any, request: Any) -> None:
    """Fail the task run of ``task_id`` if ``request`` (a Context or a dict) is a workflow's."""
    if not _header(request, RUN_HEADER):
        return  # a task outside any workflow: no query
    report(
        engine.task_failed,
        task_id,
        exception,
        getattr(einfo, "traceback", ""),
        _header(request, ATTEMPT_HEADER),
    )


def _header(request: Any, name: str) -> Any:
    if isinstance(request, Mapping):
        return request.get(name)
    return getattr(request, name, None)


def on_revoked(sender: Any = None, request: Any = None, **kwargs: Any) -> None:
    if not _header(request, RUN_HEADER):
        return  # a task outside any workflow: no query
    reason = "expired" if kwargs.get("expired") else "revoked"
    if kwargs.get("terminated"):
        reason = "terminated"
    # Of the attempt revoked: a resume may have sent a newer one since (cancel with terminate).
    attempt = _header(request, ATTEMPT_HEADER)
    report(engine.task_failed, request.id, TaskRevokedError(f"The task was {reason}."), "", attempt)


def on_unknown(
    sender: Any = None,
    name: str = "",
    id: str = "",
    message: Any = None,
    exc: Any = None,
    **kwargs: Any,
) -> None:
    """The worker has no task of that name: fail the task run, or the run waits for ever."""
    if not (getattr(message, "headers", None) or {}).get(RUN_HEADER):
        return  # a task outside any workflow: no query
    report(
        engine.task_failed,
        id,
        NotRegistered(
            f"The worker does not know task {name!r}: is the module that defines it "
            "imported by the worker (an app's tasks.py, or the Celery app's include)?"
        ),
    )


def guard_before_start(self: Task, task_id: str, args: Any, kwargs: Any) -> None:
    """Skip the body of a task the prerun handler found canceled or done.

    Installed as ``celery.app.task.Task.before_start`` (Celery's own hook
    for this, which it detects as patched), so it covers every task without
    changing it. A task class that defines its own ``before_start`` must
    call ``super().before_start(...)`` to keep this guard.
    """
    if getattr(self.request, SKIP, False):
        raise Ignore(f"Task {task_id} belongs to a canceled or finished workflow run: skipped.")
    return _celery_before_start(self, task_id, args, kwargs)


_celery_before_start = Task.before_start


def replace_in_workflow(self: Task, sig: Any) -> Any:
    """``Task.replace`` inside a workflow: the replacement joins the run as
    task runs under this one (tracked, resumable), instead of being sent
    untracked. Installed as ``Task.on_replace``, Celery's hook for this.
    """
    request = self.request
    run = getattr(request, RUN_HEADER, None)
    node = getattr(request, NODE_HEADER, None)
    if not run or node is None:  # not a task of a workflow (or a hook)
        return _celery_on_replace(self, sig)
    report(engine.task_replaced, request.id, run, sig, getattr(request, ATTEMPT_HEADER, None))
    raise Ignore("Replaced by new task")


_celery_on_replace = Task.on_replace


def add_to_chord_in_workflow(self: Task, sig: Any, lazy: bool = False) -> Any:
    """``Task.add_to_chord`` inside a workflow: ``sig`` joins the run as a new
    member of the chord this task is in (its body waits for it too, and gets
    its result after the others'), instead of a Redis-only backend call.
    With ``lazy`` it is not sent: a :class:`ChordMember` is returned, for the
    caller to send. Installed as ``Task.add_to_chord``.
    """
    request = self.request
    run = getattr(request, RUN_HEADER, None)
    node = getattr(request, NODE_HEADER, None)
    if not run or node is None:  # not a task of a workflow (or a hook)
        return _celery_add_to_chord(self, sig, lazy=lazy)
    attempt = getattr(request, ATTEMPT_HEADER, None)
    first, result = report(engine.task_added_to_chord, request.id, run, sig, attempt, lazy)
    return ChordMember(sig, first, result) if lazy else result


class ChordMember(Signature):
    """What ``add_to_chord(sig, lazy=True)`` returns in a workflow: ``sig``,
    already a member of the chord (its task runs saved, its first ones
    claimed, the body waiting for it) and not sent yet.

    Applying it (``delay()``, ``apply_async(**options)``) sends those first
    tasks as the engine sends them (their task run ids, the run's headers,
    the claim) and returns the member's result, as ``add_to_chord(sig)``
    does; applying it again sends nothing more. Natively a lazy member never
    sent leaves its chord waiting for ever; here the recovery pass sends it
    as it sends any task run claimed and not sent.
    """

    def __init__(self, sig: Any, first: list, result: Any) -> None:
        super().__init__(dict(sig), app=getattr(sig, "_app", None))
        self._first, self._result = first, result
        if getattr(result, "id", None):  # frozen, as Celery returns it: its id is known
            self.options = {**self.options, "task_id": result.id}

    def freeze(self, *args: Any, **kwargs: Any) -> Any:
        return self._result

    def apply_async(self, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        if args or kwargs or options.keys() & {"task_id", "link", "link_error", "chord"}:
            raise CanvasError(
                "A chord member added lazily in a workflow is sent as it was added: "
                "give its arguments and callbacks to the signature given to add_to_chord."
            )
        report(engine.send_claimed, self._first, options)
        return self._result


_celery_add_to_chord = Task.add_to_chord


@control_command(
    args=[("task_ids", list)],
    signature="<task_id> [task_id ...]",
)
def django_workflows_unrevoke(state: Any, task_ids: list[str]) -> dict[str, str]:
    """Forget revoked ids, so that ``resume`` can send those task runs again."""
    from celery.worker.state import revoked

    for task_id in task_ids:
        revoked.discard(task_id)
    return {"ok": f"{len(task_ids)} task ids no longer revoked"}


def connect() -> None:
    """Wire the handlers to Celery's signals (called from the AppConfig)."""
    uid = "django_workflows"
    signals.task_received.connect(on_received, dispatch_uid=f"{uid}.received", weak=False)
    signals.task_prerun.connect(on_prerun, dispatch_uid=f"{uid}.prerun", weak=False)
    signals.task_success.connect(on_success, dispatch_uid=f"{uid}.success", weak=False)
    signals.task_retry.connect(on_retry, dispatch_uid=f"{uid}.retry", weak=False)
    signals.task_failure.connect(on_failure, dispatch_uid=f"{uid}.failure", weak=False)
    signals.task_revoked.connect(on_revoked, dispatch_uid=f"{uid}.revoked", weak=False)
    signals.task_unknown.connect(on_unknown, dispatch_uid=f"{uid}.unknown", weak=False)
    signals.task_internal_error.connect(
        on_internal_error, dispatch_uid=f"{uid}.internal_error", weak=False
    )
    Task.before_start = guard_before_start
    Backend.mark_as_done = report_before_storing
    Task.on_replace = replace_in_workflow
    Task.add_to_chord = add_to_chord_in_workflow
