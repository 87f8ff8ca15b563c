"""Serializers of the API: runs, task runs, the DAG, definitions, and the bodies of operations."""

import copy
import json
from collections.abc import Mapping
from typing import Any

from django.db.models.manager import BaseManager
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.utils.encoders import JSONEncoder

from ..canvas import compile_canvas
from ..definitions import Definition
from ..details import task_details, task_result_ids
from ..engine.graph import node_edges
from ..models import TaskAttempt, TaskRun, TaskRunStatus, Workflow, WorkflowStatus
from ..policy import may_launch


class _Encoder(JSONEncoder):
    """DRF's encoder (datetimes, UUIDs, Decimals...), with bytes that are not UTF-8."""

    def default(self, obj: Any) -> Any:
        if isinstance(obj, bytes):
            return obj.decode("utf-8", errors="backslashreplace")
        return super().default(obj)


class ValueField(serializers.JSONField):
    """Any JSON value; stored values (kept as Celery's JSON decodes them) come out as JSON.

    PostgreSQL cannot store the NUL character: a value holding one is refused.
    """

    def to_representation(self, value: Any) -> Any:
        return json.loads(json.dumps(value, cls=_Encoder))

    def to_internal_value(self, data: Any) -> Any:
        value = super().to_internal_value(data)
        if _has_nul(value):
            raise serializers.ValidationError(_("Null characters are not allowed."))
        return value


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


# Named enum components: the schema has two different "status" enums.
@extend_schema_field({"type": "string", "enum": WorkflowStatus.values}, "WorkflowStatus")
class WorkflowStatusField(serializers.ChoiceField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(WorkflowStatus.choices, **kwargs)


@extend_schema_field({"type": "string", "enum": TaskRunStatus.values}, "TaskRunStatus")
class TaskRunStatusField(serializers.ChoiceField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(TaskRunStatus.choices, **kwargs)


# -- runs -------------------------------------------------------------------------------


class TaskAttemptSerializer(serializers.ModelSerializer):
    status = TaskRunStatusField(read_only=True)

    class Meta:
        model = TaskAttempt
        fields = [
            "attempt",
            "item",
            "status",
            "exception_type",
            "exception_message",
            "traceback",
            "worker",
            "started_at",
            "recorded_at",
        ]
        read_only_fields = fields


class TaskRunLinksSerializer(serializers.Serializer):
    task_result = serializers.CharField(
        required=False,
        help_text=_("The admin page of its django-celery-results row, when it has one."),
    )
    flower = serializers.CharField(
        required=False, help_text=_("Its page in Flower, when FLOWER_URL is set.")
    )


class TaskRunListSerializer(serializers.ListSerializer):
    """Task runs with their links: one query for every django-celery-results row, not one each."""

    def to_representation(self, data: Any) -> list[dict[str, Any]]:
        runs = list(data.all() if isinstance(data, BaseManager) else data)
        task_results = task_result_ids(runs)
        return [self.child.to_representation(run, task_results) for run in runs]


_DATA = _("Only with the view_taskrun permission.")


# Encodes and documents ``details.task_details``, the one shape of a task run (the admin's
# details panel shows it too): fields come from that dict, none is added here.
class TaskRunSerializer(serializers.ModelSerializer):
    """A task of a run; ``history`` lists its attempts that did not succeed.

    Its data (args, kwargs, result, exception, traceback, history) are there only for
    users with ``view_taskrun``: those fields are optional, not read-only, so the schema
    says so (the serializer is never used for input).
    """

    id = serializers.UUIDField(read_only=True, help_text=_("The Celery task id."))
    workflow = serializers.UUIDField(read_only=True, help_text=_("The run's id."))
    status = TaskRunStatusField(read_only=True)
    status_display = serializers.CharField(
        read_only=True, help_text=_("The status in words, in the active language.")
    )
    mapped_from = serializers.UUIDField(
        read_only=True, allow_null=True, label=_("Item of"), help_text=_("Its foreach node.")
    )
    args = ValueField(required=False, help_text=_DATA)
    kwargs = ValueField(required=False, help_text=_DATA)
    options = ValueField(read_only=True)
    input_from = ValueField(
        read_only=True,
        help_text=_(
            "What is prepended to args: null for nothing, a node index for that node's "
            "result, or a (nested) list of indexes for a list of results."
        ),
    )
    result = ValueField(required=False, help_text=_DATA)
    exception_type = serializers.CharField(required=False, help_text=_DATA)
    exception_message = serializers.CharField(required=False, help_text=_DATA)
    traceback = serializers.CharField(required=False, help_text=_DATA)
    duration = serializers.FloatField(
        read_only=True, allow_null=True, help_text=_("Seconds from start to finish.")
    )
    history = TaskAttemptSerializer(many=True, required=False, help_text=_DATA)
    links = TaskRunLinksSerializer(read_only=True, help_text=_("Its pages in other tools."))

    class Meta:
        model = TaskRun
        list_serializer_class = TaskRunListSerializer
        fields = [
            "id",
            "workflow",
            "node",
            "task",
            "status",
            "status_display",
            "is_hook",
            "is_map",
            "map_size",
            "mapped_from",
            "map_index",
            "args",
            "kwargs",
            "options",
            "input_from",
            "result",
            "exception_type",
            "exception_message",
            "traceback",
            "attempts",
            "retries",
            "marked_success",
            "revoked",
            "worker",
            "queued_at",
            "started_at",
            "finished_at",
            "duration",
            "history",
            "links",
        ]
        read_only_fields = fields

    def to_representation(
        self, run: TaskRun, task_results: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        request = self.context.get("request")
        user = getattr(request, "user", None)
        return super().to_representation(task_details(run, task_results, user=user))


class WorkflowSerializer(serializers.ModelSerializer):
    """A run, as lists show it."""

    status = WorkflowStatusField(read_only=True)
    payload = ValueField(read_only=True)
    result = ValueField(read_only=True)
    launched_by_username = serializers.CharField(
        source="launched_by.get_username", read_only=True, allow_null=True
    )

    class Meta:
        model = Workflow
        fields = [
            "id",
            "name",
            "status",
            "payload",
            "result",
            "error",
            "idempotency_key",
            "created",
            "started",
            "finished",
            "launched_by",
            "launched_by_username",
            "relaunched_from",
            "tasks_total",
            "tasks_finished",
            "tasks_succeeded",
            "tasks_failed",
        ]
        read_only_fields = fields


class EdgeSerializer(serializers.Serializer):
    source = serializers.IntegerField(help_text=_("Node index of the parent."))
    target = serializers.IntegerField(help_text=_("Node index of the child."))


class WorkflowDetailSerializer(WorkflowSerializer):
    """A run with its task runs (hooks included, flagged) and the edges of its DAG."""

    task_runs = TaskRunSerializer(many=True, read_only=True)
    edges = serializers.SerializerMethodField()

    class Meta(WorkflowSerializer.Meta):
        fields = [*WorkflowSerializer.Meta.fields, "task_runs", "edges"]
        read_only_fields = fields

    @extend_schema_field(EdgeSerializer(many=True))
    def get_edges(self, workflow: Workflow) -> list[dict[str, int]]:
        return node_edges(workflow.pk)


class DagNodeSerializer(serializers.Serializer):
    id = serializers.UUIDField(help_text=_("The task run's id."))
    node = serializers.IntegerField()
    task = serializers.CharField()
    label = serializers.CharField(
        help_text=_("The task's short name; a foreach node says how many items, an item which.")
    )
    status = TaskRunStatusField()
    attempts = serializers.IntegerField()
    hook = serializers.BooleanField(
        help_text=_("An on_success / on_failure hook of the definition: drawn, without edges.")
    )
    marked_success = serializers.BooleanField()


class DagProgressSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    finished = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()


# Encodes and documents ``dag.dag_data``, the one DAG shape (the admin's run page draws it).
class DagSerializer(serializers.Serializer):
    """A run's DAG with live statuses: what a picture of it needs."""

    id = serializers.UUIDField(help_text=_("The run's id."))
    name = serializers.CharField()
    status = WorkflowStatusField()
    finished = serializers.BooleanField(
        help_text=_("Whether the status is final (a yes or no, not the run's end time).")
    )
    progress = DagProgressSerializer(help_text=_("Task run counts, as the run keeps them."))
    nodes = DagNodeSerializer(many=True)
    edges = EdgeSerializer(many=True)


# -- request bodies ------------------------------------------------------------------------


class LaunchSerializer(serializers.Serializer):
    name = serializers.CharField(
        min_length=1,
        max_length=200,
        trim_whitespace=False,
        help_text=_("A registered workflow definition."),
    )
    payload = ValueField(
        required=False, default=dict, help_text=_("Checked against the definition's schema.")
    )
    idempotency_key = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        help_text=_("A second launch of the same name with this key returns the first run."),
    )


class ResumeSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField(
        default=False, help_text=_("Only return the plan; change nothing.")
    )


class RerunSerializer(serializers.Serializer):
    task_run = serializers.UUIDField(help_text=_("Id of a task run of this workflow."))
    dry_run = serializers.BooleanField(
        default=False, help_text=_("Only return the plan; change nothing.")
    )


class CancelSerializer(serializers.Serializer):
    terminate = serializers.BooleanField(
        default=False, help_text=_("Also kill the running tasks (revoke with terminate).")
    )


class MarkSuccessSerializer(serializers.Serializer):
    result = ValueField(
        required=False,
        allow_null=True,
        default=None,
        help_text=_("The result the task's children receive."),
    )


# -- responses of operations ------------------------------------------------------------------


class PlanItemSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    node = serializers.IntegerField()
    task = serializers.CharField()
    status = TaskRunStatusField(help_text=_("Its status before the operation."))


class PlanSerializer(serializers.Serializer):
    workflow_id = serializers.UUIDField()
    rerun = PlanItemSerializer(many=True, help_text=_("Task runs that run again."))
    reused = PlanItemSerializer(many=True, help_text=_("Task runs whose stored result is reused."))
    dry_run = serializers.BooleanField()


class PayloadErrorSerializer(serializers.Serializer):
    path = serializers.CharField(help_text=_("Dotted path of the field; empty: the payload."))
    message = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    """The body of every error the API raises itself (DRF's own errors have ``detail``)."""

    detail = serializers.CharField()
    code = serializers.CharField(required=False)
    errors = PayloadErrorSerializer(many=True, required=False)
    status = serializers.CharField(required=False, help_text=_("The current state (409)."))
    available = serializers.ListField(
        child=serializers.CharField(), required=False, help_text=_("Registered workflows (404).")
    )


# -- definitions --------------------------------------------------------------------------------


class ShapeNodeSerializer(serializers.Serializer):
    node = serializers.IntegerField()
    task = serializers.CharField()


class ShapeSerializer(serializers.Serializer):
    nodes = ShapeNodeSerializer(many=True)
    edges = EdgeSerializer(many=True)


class DefinitionSerializer(serializers.Serializer):
    """A definition, with the DAG it builds from an example payload made from its schema."""

    name = serializers.CharField()
    description = serializers.CharField()
    payload_schema = ValueField(allow_null=True, help_text=_("JSON Schema of the payload."))
    example_payload = ValueField(help_text=_("Built from the schema: defaults, or minimal values."))
    shape = ShapeSerializer(allow_null=True, help_text=_("The DAG built from the example payload."))
    shape_error = serializers.CharField(
        allow_null=True, help_text=_("Why the shape could not be built.")
    )
    can_launch = serializers.BooleanField(help_text=_("Whether you may launch it."))

    def to_representation(self, definition: Definition) -> dict[str, Any]:
        example = definition.example_payload()
        shape, error = None, None
        try:
            dag = compile_canvas(definition.build(copy.deepcopy(example)))
        except Exception as exc:  # the factory is the project's code, given a made-up payload
            error = f"{type(exc).__name__}: {exc}"
        else:
            shape = {
                "nodes": [{"node": node.index, "task": node.task} for node in dag.nodes],
                "edges": [
                    {"source": parent, "target": node.index}
                    for node in dag.nodes
                    for parent in node.parents
                ],
            }
        request = self.context.get("request")
        user = getattr(request, "user", None)
        return {
            "name": definition.name,
            "description": definition.description,
            "payload_schema": definition.schema,
            "example_payload": ValueField().to_representation(example),
            "shape": shape,
            "shape_error": error,
            "can_launch": bool(user and may_launch(user, definition.name)),
        }
