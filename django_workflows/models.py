"""A workflow run and the task runs of its DAG, kept from Celery's signals."""

import time
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import OperationalError, connection, models
from django.db.models.functions import Upper
from django.utils.translation import gettext_lazy as _

from .codec import CeleryJSONDecoder, CeleryJSONEncoder
from .ids import uuid7


class PrefixIndex(models.Index):
    """An index on an expression that serves ``LIKE 'PREFIX%'`` (``istartswith`` on
    ``Upper(field)``): on PostgreSQL with ``text_pattern_ops``, which a prefix needs
    under any collation but C; elsewhere a plain index."""

    def create_sql(self, model: Any, schema_editor: Any, using: str = "", **kwargs: Any) -> Any:
        if schema_editor.connection.vendor != "postgresql":
            return super().create_sql(model, schema_editor, using=using, **kwargs)
        from django.contrib.postgres.indexes import OpClass
        from django.db.models import OrderBy
        from django.db.models.functions import Collate
        from django.db.models.indexes import IndexExpression

        # What django.contrib.postgres does when installed, so the operator class
        # follows the expression instead of being wrapped with it in parentheses.
        IndexExpression.register_wrappers(OrderBy, OpClass, Collate)
        index = self.clone()
        index.expressions = tuple(OpClass(e, name="text_pattern_ops") for e in self.expressions)
        return super(PrefixIndex, index).create_sql(model, schema_editor, using=using, **kwargs)


class WorkflowStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    RUNNING = "running", _("Running")
    SUCCESS = "success", _("Success")
    FAILURE = "failure", _("Failure")
    CANCELED = "canceled", _("Canceled")


class TaskRunStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    RETRYING = "retrying", _("Retrying")
    SUCCESS = "success", _("Success")
    FAILURE = "failure", _("Failure")
    UPSTREAM_FAILED = "upstream_failed", _("Upstream failed")
    CANCELED = "canceled", _("Canceled")


if TYPE_CHECKING:
    from .engine.operations import Plan

# Foreign keys: the relations onto a run or a task run (a task run's run, the
# edges, attempts, foreach items, relaunches, schedule fires) are Django's, not
# the database's (``db_constraint=False``). PostgreSQL checks each such
# constraint once per deleted row: four checks per task run bounded retention
# at about 3,000 runs a second, a fifth of a million-run history's prune.
# Deletes through the ORM still cascade (Django's collector); the engine and
# retention (:mod:`.retention`) write and delete these rows with their run.

FINISHED_WORKFLOW = (WorkflowStatus.SUCCESS, WorkflowStatus.FAILURE, WorkflowStatus.CANCELED)


def _celery_json(**kwargs: Any) -> models.JSONField:
    """A JSON column that stores values the way Celery's JSON serializer does."""
    return models.JSONField(encoder=CeleryJSONEncoder, decoder=CeleryJSONDecoder, **kwargs)


class Workflow(models.Model):
    """One run of a workflow definition (or of an ad-hoc canvas)."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    name = models.CharField(_("name"), max_length=200)
    payload = _celery_json(verbose_name=_("payload"), default=dict, blank=True)
    status = models.CharField(
        _("status"), max_length=20, choices=WorkflowStatus, default=WorkflowStatus.PENDING
    )
    result = _celery_json(verbose_name=_("result"), null=True, blank=True)
    #: How the canvas's result is read from node results: a node index or a
    #: (nested) list of them, as the canvas's AsyncResult.get() would nest it.
    result_ref = models.JSONField(_("result reference"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True)
    #: A launch with the same name and key returns this run instead of a new one.
    idempotency_key = models.CharField(_("idempotency key"), max_length=200, blank=True)
    created = models.DateTimeField(_("created"), auto_now_add=True)
    started = models.DateTimeField(_("started"), null=True, blank=True)
    finished = models.DateTimeField(_("finished"), null=True, blank=True)
    launched_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("launched by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,  # dw_workflow_launched_by
    )
    schedule = models.ForeignKey(
        "WorkflowSchedule",
        verbose_name=_("schedule"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="runs",
        db_index=False,  # dw_workflow_schedule
    )
    relaunched_from = models.ForeignKey(
        "self",
        verbose_name=_("relaunched from"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="relaunches",
        db_constraint=False,  # see "Foreign keys" above
    )
    #: The definition's hooks as they were at launch (``calling``, ``on_success``,
    #: ``on_failure``): the run ends with these, whichever process finishes it
    #: and whatever its registry holds then. Null for an ad-hoc run.
    hooks = models.JSONField(_("hooks"), null=True, blank=True, editable=False)
    #: The chord bodies (node numbers) still waiting for their header, given as
    #: a generator, to be read to its end by the launching process; and when
    #: that process last read a member. The recovery pass fails the bodies of
    #: a reader gone quiet for its grace (died, or never started: invariant 1).
    headers_held = models.JSONField(_("held chord bodies"), null=True, blank=True, editable=False)
    header_read_at = models.DateTimeField(
        _("header last read"), null=True, blank=True, editable=False
    )
    # Counters kept by the engine so that "is the run done?" never scans tasks.
    tasks_total = models.PositiveIntegerField(_("tasks"), default=0)
    tasks_finished = models.PositiveIntegerField(_("tasks finished"), default=0)
    tasks_succeeded = models.PositiveIntegerField(_("tasks succeeded"), default=0)
    tasks_failed = models.PositiveIntegerField(_("tasks failed"), default=0)

    class Meta:
        verbose_name = _("workflow run")
        verbose_name_plural = _("workflow runs")
        ordering = ["-created"]
        constraints = [
            models.UniqueConstraint(
                fields=["name", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="dw_workflow_unique_idempotency_key",
            ),
        ]
        # One per filter of the lists, with their ordering (newest first), so a page
        # reads its rows in order from the index: a year of history costs what a day does.
        indexes = [
            models.Index(fields=["-created"], name="dw_workflow_created"),
            models.Index(fields=["status", "-created"], name="dw_workflow_status"),
            models.Index(fields=["name", "-created"], name="dw_workflow_name"),
            models.Index(fields=["launched_by", "-created"], name="dw_workflow_launched_by"),
            models.Index(fields=["schedule", "-created"], name="dw_workflow_schedule"),
            # search: a name by prefix in any case, an idempotency key exactly
            PrefixIndex(Upper("name"), name="dw_workflow_name_prefix"),
            models.Index(
                fields=["idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="dw_workflow_idempotency_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.pk}"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_WORKFLOW

    def wait(self, timeout: float | None = 30.0, interval: float = 0.05) -> "Workflow":
        """Re-read this run from the database until it has finished.

        Returns ``self``, refreshed. Raises ``TimeoutError`` if the run is
        still going after ``timeout`` seconds (``None`` waits for ever).
        While it waits it reads only the status, every ``interval`` seconds:
        a waiting launcher shares the machine with the run's workers.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while _unless_locked(self._read_status) not in FINISHED_WORKFLOW:
            if deadline is not None and time.monotonic() >= deadline:
                self.refresh_from_db()
                if self.is_finished:
                    return self
                raise TimeoutError(
                    f"Workflow {self.pk} ({self.name}) is still {self.status} "
                    f"after {timeout} s: {self.tasks_finished}/{self.tasks_total} tasks finished."
                )
            time.sleep(interval)
        while _unless_locked(self.refresh_from_db) is _LOCKED:
            time.sleep(interval)
        return self

    def _read_status(self) -> str:
        """This run's status in the database, read with plain SQL: ``wait()``
        reads it every ``interval``, often on a machine it shares with the
        run's workers, and the ORM took longer to build that query than the
        database took to answer it."""
        quote, pk = connection.ops.quote_name, self._meta.pk
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {quote('status')} FROM {quote(self._meta.db_table)} "
                f"WHERE {quote(pk.column)} = %s",
                [pk.get_db_prep_value(self.pk, connection)],
            )
            row = cursor.fetchone()
        if row is None:
            raise Workflow.DoesNotExist(f"Workflow {self.pk} was deleted.")
        return row[0]

    # Operations: see django_workflows.engine.operations for what each guarantees.

    def resume(self, dry_run: bool = False) -> "Plan":
        """Run again what failed or was canceled, reusing the stored results."""
        from .engine import resume

        return resume(self, dry_run=dry_run)

    def rerun_from(self, task_run: "TaskRun | str", dry_run: bool = False) -> "Plan":
        """Run ``task_run`` and everything downstream of it again."""
        from .engine import rerun_from

        return rerun_from(self, task_run, dry_run=dry_run)

    def relaunch(self, user: Any = None) -> "Workflow":
        """Start a new run of the same definition with the same payload."""
        from .engine import relaunch

        return relaunch(self, user=user)

    def cancel(self, terminate: bool = False) -> "Workflow":
        """Stop the run: nothing starts after this returns."""
        from .engine import cancel

        return cancel(self, terminate=terminate)


class TaskRun(models.Model):
    """One node of a workflow's DAG. Its primary key is the Celery task id."""

    id = models.UUIDField(_("task id"), primary_key=True, default=uuid7, editable=False)
    workflow = models.ForeignKey(
        Workflow,
        verbose_name=_("workflow"),
        on_delete=models.CASCADE,
        related_name="task_runs",
        db_index=False,  # dw_taskrun_unique_node starts with it
        db_constraint=False,  # see "Foreign keys" above
    )
    #: Stable key of the node in its DAG: its position in the canvas.
    node = models.PositiveIntegerField(_("node"))
    task = models.CharField(_("task name"), max_length=255)
    args = _celery_json(verbose_name=_("args"), default=list, blank=True)
    kwargs = _celery_json(verbose_name=_("kwargs"), default=dict, blank=True)
    options = _celery_json(verbose_name=_("options"), default=dict, blank=True)
    immutable = models.BooleanField(_("immutable"), default=False)
    #: What Celery would prepend to ``args``: null for nothing, a node index
    #: for that node's result, or a (nested) list of indexes for a list of
    #: results (a chord body).
    input = models.JSONField(_("input"), null=True, blank=True)
    parents = models.ManyToManyField(
        "self",
        symmetrical=False,
        through="Edge",
        related_name="children",
        blank=True,
        verbose_name=_("parents"),
    )
    #: Parents that have not succeeded yet; the node is ready at zero.
    waiting = models.PositiveIntegerField(_("waiting for"), default=0)
    #: The dispatch attempt: a token set whenever the node is claimed for
    #: sending (launch, a parent's success, resume, recovery). Its message
    #: carries it, and only reports of the current attempt move the node.
    claim = models.UUIDField(null=True, blank=True, editable=False)
    #: When the claimed message reached the broker: a queued node without it
    #: is claimed but unsent, which the recovery pass sends (the outbox).
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True, editable=False)
    status = models.CharField(
        _("status"), max_length=20, choices=TaskRunStatus, default=TaskRunStatus.PENDING
    )
    result = _celery_json(verbose_name=_("result"), null=True, blank=True)
    exception_type = models.CharField(_("exception type"), max_length=255, blank=True)
    exception_message = models.TextField(_("exception message"), blank=True)
    traceback = models.TextField(_("traceback"), blank=True)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    #: Celery's retry count of the attempt that started last (request.retries).
    retries = models.PositiveIntegerField(_("retries"), default=0)
    #: An operator set the result by hand (TaskRun.mark_success).
    marked_success = models.BooleanField(_("marked as succeeded"), default=False)
    #: Revoked with terminate by a cancel: workers remember that id until resume lifts it.
    revoked = models.BooleanField(_("revoked"), default=False)
    #: An on_success / on_failure hook of the definition, not a node of the DAG.
    is_hook = models.BooleanField(_("hook"), default=False)
    #: A foreach node: when its input is ready it expands into one task run per
    #: item (``map_items``), then gathers their results, in order, as its own.
    is_map = models.BooleanField(_("foreach"), default=False)
    #: How many items a foreach node expanded into (null: not expanded yet).
    map_size = models.PositiveIntegerField(_("items"), null=True, blank=True)
    mapped_from = models.ForeignKey(
        "self",
        verbose_name=_("item of"),
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="map_items",
        db_constraint=False,  # see "Foreign keys" above
    )
    map_index = models.PositiveIntegerField(_("item"), null=True, blank=True)
    #: Task.replace: how this task run's result is read from the task runs of
    #: the canvas it replaced itself with (its ``map_items``, ``map_size`` of
    #: them); null when it did not replace itself.
    replacement = models.JSONField(_("replaced by"), null=True, blank=True)
    worker = models.CharField(_("worker"), max_length=255, blank=True)
    queued_at = models.DateTimeField(_("queued"), null=True, blank=True)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        verbose_name = _("task run")
        verbose_name_plural = _("task runs")
        ordering = ["workflow", "node"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "node"], name="dw_taskrun_unique_node"),
        ]
        # Each filter of the lists with the lists' ordering (workflow, node).
        indexes = [
            models.Index(fields=["status", "workflow", "node"], name="dw_taskrun_status"),
            models.Index(fields=["task", "workflow", "node"], name="dw_taskrun_task"),
            models.Index(
                fields=["workflow", "node"],
                condition=models.Q(is_hook=True),
                name="dw_taskrun_hooks",
            ),
            PrefixIndex(Upper("task"), name="dw_taskrun_task_prefix"),  # search by prefix
            # The outbox: what was claimed and never sent, for the recovery pass.
            models.Index(
                fields=["queued_at"],
                condition=models.Q(status="queued", sent_at__isnull=True),
                name="dw_taskrun_unsent",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task} [{self.pk}]"

    def mark_success(self, result: Any = None) -> "TaskRun":
        """Take this failed task as succeeded with ``result``; its descendants run."""
        from .engine import mark_success

        return mark_success(self, result)


class Edge(models.Model):
    """``TaskRun.parents``: the task run ``from_taskrun`` waits for ``to_taskrun``.

    Django's own table for that many-to-many field, named as Django named it,
    made explicit so that its keys need no database constraint ("Foreign keys" above).
    """

    from_taskrun = models.ForeignKey(
        TaskRun,
        on_delete=models.CASCADE,
        related_name="+",
        db_constraint=False,
        db_index=False,  # the unique (from_taskrun, to_taskrun) starts with it
    )
    to_taskrun = models.ForeignKey(
        TaskRun, on_delete=models.CASCADE, related_name="+", db_constraint=False
    )

    class Meta:
        db_table = "django_workflows_taskrun_parents"
        unique_together = [("from_taskrun", "to_taskrun")]
        default_permissions = ()  # a run's part, as Django's own through table was

    def __str__(self) -> str:
        return f"{self.from_taskrun_id} after {self.to_taskrun_id}"


class TaskAttempt(models.Model):
    """An attempt of a task run that did not succeed: kept when the run retries,
    fails, is resumed or marked as succeeded, so no error is ever lost."""

    task_run = models.ForeignKey(
        TaskRun,
        verbose_name=_("task run"),
        on_delete=models.CASCADE,
        related_name="history",
        db_constraint=False,  # see "Foreign keys" above
    )
    attempt = models.PositiveIntegerField(_("attempt"))
    item = models.PositiveIntegerField(
        _("foreach item"),
        null=True,
        blank=True,
        help_text=_(
            "On a foreach node: the item whose attempt this was, kept when the node "
            "expanded again and its items were replaced."
        ),
    )
    status = models.CharField(_("status"), max_length=20, choices=TaskRunStatus)
    exception_type = models.CharField(_("exception type"), max_length=255, blank=True)
    exception_message = models.TextField(_("exception message"), blank=True)
    traceback = models.TextField(_("traceback"), blank=True)
    worker = models.CharField(_("worker"), max_length=255, blank=True)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    recorded_at = models.DateTimeField(_("recorded"), auto_now_add=True)

    class Meta:
        verbose_name = _("task attempt")
        verbose_name_plural = _("task attempts")
        ordering = ["task_run", "attempt", "id"]

    def __str__(self) -> str:
        return f"{self.task_run_id} #{self.attempt} {self.status}"


class OverlapPolicy(models.TextChoices):
    ALLOW = "allow", _("Start regardless")
    SKIP = "skip", _("Skip while the last run is going")
    CANCEL_PREVIOUS = "cancel_previous", _("Cancel the last run and start a new one")


class WorkflowSchedule(models.Model):
    """What beat does not know about a scheduled workflow.

    The schedule itself (interval, crontab, solar, clocked), enabled, start
    and expiry live in the linked django-celery-beat ``PeriodicTask``, whose
    task is ``django_workflows.launch_workflow`` with kwargs ``name`` and
    ``payload``: beat's admin and DatabaseScheduler see it as any other.
    """

    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        verbose_name=_("periodic task"),
        on_delete=models.CASCADE,
        related_name="workflow_schedule",
    )
    definition = models.CharField(_("workflow"), max_length=200)
    overlap = models.CharField(
        _("overlap"), max_length=20, choices=OverlapPolicy, default=OverlapPolicy.ALLOW
    )
    #: Who saved it last: each fire launches as this person, who must still be allowed
    #: to. None for schedules written by code or YAML files (the project's own).
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        verbose_name = _("workflow schedule")
        verbose_name_plural = _("workflow schedules")
        ordering = ["periodic_task__name"]

    def __str__(self) -> str:
        return self.periodic_task.name


class ScheduleFire(models.Model):
    """One time beat fired a workflow schedule, and what came of it."""

    class Outcome(models.TextChoices):
        LAUNCHED = "launched", _("Launched")
        SKIPPED = "skipped", _("Skipped")
        FAILED = "failed", _("Failed")

    #: History outlives the schedule: deleting it (or its beat entry) keeps its fires,
    #: which keep its name.
    schedule = models.ForeignKey(
        WorkflowSchedule,
        verbose_name=_("schedule"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="fires",
    )
    periodic_task_name = models.CharField(_("periodic task"), max_length=200, blank=True)
    fired_at = models.DateTimeField(_("fired"), auto_now_add=True)
    outcome = models.CharField(_("outcome"), max_length=20, choices=Outcome)
    workflow = models.ForeignKey(
        Workflow,
        verbose_name=_("run"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,  # see "Foreign keys" above
    )
    message = models.TextField(_("message"), blank=True)

    class Meta:
        verbose_name = _("schedule fire")
        verbose_name_plural = _("schedule fires")
        ordering = ["-fired_at"]

    def __str__(self) -> str:
        return f"{self.periodic_task_name} {self.outcome} {self.fired_at:%Y-%m-%d %H:%M:%S}"


_LOCKED = object()


def _unless_locked(read: Any, *args: Any, **kwargs: Any) -> Any:
    """``read(...)``, or ``_LOCKED`` if SQLite said a table is locked.

    An in-memory SQLite test database is one shared cache: while a worker
    thread of the same process (``testing.worker()``) writes a table, a read
    of it fails at once with "database table is locked" instead of waiting.
    A poll reads again.
    """
    try:
        return read(*args, **kwargs)
    except OperationalError as exc:
        if "locked" not in str(exc):
            raise
        return _LOCKED
