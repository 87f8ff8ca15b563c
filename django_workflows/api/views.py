"""Viewsets of the API. Every operation calls the engine; none re-implements it."""

import logging
from collections.abc import Callable
from typing import Any

from django.db.models import Prefetch, QuerySet
from django.utils.translation import gettext_lazy as _
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, parsers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.filters import OrderingFilter
from rest_framework.pagination import CursorPagination, PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle

from .. import launch
from ..codec import MAX_DEPTH, depth
from ..conf import get_setting
from ..dag import dag_data
from ..definitions import registry
from ..exceptions import InvalidPayload, UnknownWorkflow
from ..lists import EstimatedCountPaginator
from ..models import TaskAttempt, TaskRun, Workflow
from ..policy import check_launch
from .exceptions import InvalidInputError, as_api_exception
from .filters import RunSearchFilter, TaskRunFilter, WorkflowFilter
from .permissions import (
    DefinitionPermissions,
    ModelPermissions,
    OperationPermissions,
    RelaunchPermissions,
)
from .serializers import (
    CancelSerializer,
    DagSerializer,
    DefinitionSerializer,
    ErrorSerializer,
    LaunchSerializer,
    MarkSuccessSerializer,
    PlanSerializer,
    RerunSerializer,
    ResumeSerializer,
    TaskRunSerializer,
    WorkflowDetailSerializer,
    WorkflowSerializer,
)

logger = logging.getLogger(__name__)

_ERRORS = {
    400: _("Invalid input: the body, a query parameter, or a payload failing its schema."),
    401: _("Not authenticated."),
    403: _("Not allowed: a permission is missing, or the CAN_LAUNCH hook refused."),
    404: _("No such workflow run, task run, definition, or page."),
    409: _("The operation is not allowed in the current state, given in `status`."),
    429: _("Throttled (only when a rate is set for the scope)."),
    503: _("The broker cannot be reached."),
}


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """Documented error responses: the body is always JSON with ``detail``."""
    codes = (*codes, 401, 403, 429)
    return {code: OpenApiResponse(ErrorSerializer, _ERRORS[code]) for code in sorted(set(codes))}


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
    django_paginator_class = EstimatedCountPaginator  # no COUNT(*) of a long history


class Cursor(CursorPagination):
    """``API_PAGINATION = "cursor"``: next/previous links and no count at all."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class RunCursor(Cursor):
    ordering = ("-created", "-pk")


class TaskRunCursor(Cursor):
    ordering = ("workflow", "node")


class OptionalScopedRateThrottle(ScopedRateThrottle):
    """Throttles a view's ``throttle_scope`` only if DEFAULT_THROTTLE_RATES names it."""

    @property
    def THROTTLE_RATES(self) -> dict[str, Any]:  # noqa: N802 (DRF's name); read at each request
        return api_settings.DEFAULT_THROTTLE_RATES

    def allow_request(self, request: Request, view: Any) -> bool:
        if getattr(view, "throttle_scope", None) not in self.THROTTLE_RATES:
            return True
        return super().allow_request(request, view)


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing values nested more than ``codec.MAX_DEPTH`` deep."""

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            data = None
        else:
            if depth(data) <= MAX_DEPTH:
                return data
        raise ParseError(
            _("JSON nested more than %(depth)d levels deep is refused.") % {"depth": MAX_DEPTH}
        )


class APIMixin:
    """What every viewset of the API shares: engine errors as JSON, JSON bodies, throttling."""

    throttle_scope = "django_workflows"
    parser_classes = [JSONParser]  # payloads and results are JSON values: forms cannot carry them

    def get_throttles(self) -> list:
        # The project's throttles apply, except a plain ScopedRateThrottle: it would fail
        # on our scope when no rate is set for it.
        throttles = super().get_throttles()  # type: ignore[misc]
        kept = [t for t in throttles if type(t) is not ScopedRateThrottle]
        return [*kept, OptionalScopedRateThrottle()]

    def handle_exception(self, exc: Exception) -> Response:
        return super().handle_exception(as_api_exception(exc))  # type: ignore[misc]

    cursor_pagination_class: type[CursorPagination]

    @property
    def paginator(self) -> Any:
        """The page-number paginator, or the cursor one if ``API_PAGINATION`` says so."""
        if not hasattr(self, "_paginator"):
            cursor = get_setting("API_PAGINATION") == "cursor"
            self._paginator = (self.cursor_pagination_class if cursor else self.pagination_class)()
        return self._paginator


def validated(serializer_class: type[Serializer], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def building(launch_call: Callable[[], Workflow], name: str) -> Workflow:
    """Run ``launch_call``; a definition that cannot build a canvas from the payload is a 400.

    A definition without schema takes any payload, and its factory may fail on it
    (a KeyError, a TypeError...): the client sent input the definition cannot use.
    """
    try:
        return launch_call()
    except (UnknownWorkflow, InvalidPayload):
        raise
    except (LookupError, TypeError, ValueError, AttributeError) as exc:
        logger.warning("Workflow %r could not be built from its payload", name, exc_info=True)
        raise InvalidInputError(
            _("Workflow %(name)r could not be built from this payload: %(error)s")
            % {"name": name, "error": f"{type(exc).__name__}: {exc}"},
            "invalid_payload",
        ) from exc


@extend_schema_view(
    list=extend_schema(
        summary=_("List runs, newest first"),
        responses={200: WorkflowSerializer(many=True), **errors(400, 404)},
    ),
    retrieve=extend_schema(
        summary=_("A run with its task runs, their attempts, and its edges"),
        responses={200: WorkflowDetailSerializer, **errors(404)},
    ),
)
class WorkflowViewSet(APIMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """Workflow runs: list, launch, inspect, and the operations on a run."""

    queryset = Workflow.objects.all()
    serializer_class = WorkflowSerializer
    lookup_value_regex = "[^/]+"  # a malformed id is the API's JSON 404, not Django's page
    permission_classes = [ModelPermissions]
    pagination_class = Pagination
    cursor_pagination_class = RunCursor
    filter_backends = [DjangoFilterBackend, RunSearchFilter, OrderingFilter]
    filterset_class = WorkflowFilter
    search_fields = ["name", "idempotency_key", "error"]  # with FREE_TEXT_SEARCH
    ordering_fields = ["created", "started", "finished", "name", "status"]
    ordering = ["-created"]

    def get_queryset(self) -> QuerySet:
        if self.action == "retrieve":
            return self.detail_queryset()
        return Workflow.objects.select_related("launched_by")

    def detail_queryset(self) -> QuerySet:
        """One query per level: the run, its task runs, their attempts."""
        return Workflow.objects.select_related("launched_by").prefetch_related(
            Prefetch(
                "task_runs",
                TaskRun.objects.order_by("node").prefetch_related(
                    Prefetch("history", TaskAttempt.objects.order_by("id"))
                ),
            )
        )

    def respond(self, workflow: Workflow, code: int = status.HTTP_200_OK) -> Response:
        """The run as the detail shows it, read again after an operation."""
        workflow = self.detail_queryset().get(pk=workflow.pk)
        return Response(self.detail_data(workflow), status=code)

    def detail_data(self, workflow: Workflow) -> dict[str, Any]:
        """The run's detail; its tasks' data only for whom ``policy.sees_task_data``."""
        return WorkflowDetailSerializer(workflow, context={"request": self.request}).data

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(self.detail_data(self.get_object()))

    @extend_schema(
        summary=_("Launch a run of a registered definition"),
        request=LaunchSerializer,
        responses={
            201: OpenApiResponse(WorkflowDetailSerializer, _("The new run.")),
            200: OpenApiResponse(
                WorkflowDetailSerializer, _("The run launched earlier with this idempotency key.")
            ),
            **errors(400, 404, 503),
        },
    )
    def create(self, request: Request) -> Response:
        data = validated(LaunchSerializer, request)
        definition = registry.get(data["name"])
        check_launch(request.user, definition.name)
        key = data.get("idempotency_key") or None
        workflow = building(
            lambda: launch(
                definition.name, data["payload"], user=request.user, idempotency_key=key
            ),
            definition.name,
        )
        return self.respond(
            workflow, status.HTTP_201_CREATED if workflow.launched_now else status.HTTP_200_OK
        )

    @extend_schema(
        summary=_("The DAG with live statuses, as the admin draws it: progress, nodes, edges"),
        responses={200: DagSerializer, **errors(404)},
    )
    @action(detail=True, methods=["get"])
    def dag(self, request: Request, pk: str | None = None) -> Response:
        return Response(DagSerializer(dag_data(self.get_object())).data)

    @extend_schema(
        summary=_("Run again what failed or was canceled, reusing stored results"),
        request=ResumeSerializer,
        responses={200: PlanSerializer, **errors(400, 404, 409, 503)},
    )
    @action(detail=True, methods=["post"], permission_classes=[OperationPermissions])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        workflow = self.get_object()
        data = validated(ResumeSerializer, request)
        return Response(PlanSerializer(workflow.resume(dry_run=data["dry_run"])).data)

    @extend_schema(
        summary=_("Run a task run and everything downstream of it again"),
        request=RerunSerializer,
        responses={200: PlanSerializer, **errors(400, 404, 409, 503)},
    )
    @action(detail=True, methods=["post"], permission_classes=[OperationPermissions])
    def rerun(self, request: Request, pk: str | None = None) -> Response:
        workflow = self.get_object()
        data = validated(RerunSerializer, request)
        if not workflow.task_runs.filter(pk=data["task_run"], is_hook=False).exists():
            raise ValidationError(
                {"task_run": [_("This is not a task run of workflow %s.") % workflow.pk]}
            )
        plan = workflow.rerun_from(data["task_run"], dry_run=data["dry_run"])
        return Response(PlanSerializer(plan).data)

    @extend_schema(
        summary=_("Start a new run with the same definition and payload"),
        request=None,
        responses={
            201: OpenApiResponse(WorkflowDetailSerializer, _("The new run.")),
            **errors(400, 404, 409, 503),
        },
    )
    @action(detail=True, methods=["post"], permission_classes=[RelaunchPermissions])
    def relaunch(self, request: Request, pk: str | None = None) -> Response:
        workflow = self.get_object()
        check_launch(request.user, workflow.name)
        new = building(lambda: workflow.relaunch(user=request.user), workflow.name)
        return self.respond(new, status.HTTP_201_CREATED)

    @extend_schema(
        summary=_("Cancel the run: nothing starts after this returns"),
        request=CancelSerializer,
        responses={200: WorkflowDetailSerializer, **errors(400, 404, 409, 503)},
    )
    @action(detail=True, methods=["post"], permission_classes=[OperationPermissions])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        workflow = self.get_object()
        data = validated(CancelSerializer, request)
        return self.respond(workflow.cancel(terminate=data["terminate"]))


@extend_schema_view(
    list=extend_schema(
        summary=_("List task runs"),
        responses={200: TaskRunSerializer(many=True), **errors(400, 404)},
    ),
    retrieve=extend_schema(
        summary=_("A task run with its attempts"), responses={200: TaskRunSerializer, **errors(404)}
    ),
)
class TaskRunViewSet(APIMixin, viewsets.ReadOnlyModelViewSet):
    """Task runs of every workflow run, and marking a failed one as succeeded."""

    serializer_class = TaskRunSerializer
    lookup_value_regex = "[^/]+"
    permission_classes = [ModelPermissions]
    pagination_class = Pagination
    cursor_pagination_class = TaskRunCursor
    filter_backends = [DjangoFilterBackend, OrderingFilter]
    filterset_class = TaskRunFilter
    ordering_fields = ["node", "queued_at", "started_at", "finished_at"]

    def get_queryset(self) -> QuerySet:
        return TaskRun.objects.prefetch_related(
            Prefetch("history", TaskAttempt.objects.order_by("id"))
        )

    @extend_schema(
        summary=_("Take a failed task run as succeeded with this result; its children run"),
        request=MarkSuccessSerializer,
        responses={200: TaskRunSerializer, **errors(400, 404, 409, 503)},
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="mark-success",
        permission_classes=[OperationPermissions],
    )
    def mark_success(self, request: Request, pk: str | None = None) -> Response:
        task_run = self.get_object()
        data = validated(MarkSuccessSerializer, request)
        task_run.mark_success(data["result"])
        return Response(self.get_serializer(self.get_queryset().get(pk=task_run.pk)).data)


@extend_schema_view(
    list=extend_schema(
        summary=_("Registered workflow definitions"),
        responses={200: DefinitionSerializer(many=True), **errors()},
    ),
    retrieve=extend_schema(
        summary=_("A workflow definition"),
        responses={200: DefinitionSerializer, **errors(404)},
    ),
)
class DefinitionViewSet(APIMixin, viewsets.ViewSet):
    """The definitions of the registry, with their payload schema and DAG shape."""

    permission_classes = [DefinitionPermissions]
    lookup_field = "name"
    lookup_value_regex = "[^/]+"

    def list(self, request: Request) -> Response:
        context = {"request": request}
        return Response(DefinitionSerializer(list(registry), many=True, context=context).data)

    def retrieve(self, request: Request, name: str | None = None) -> Response:
        definition = registry.get(name or "")
        return Response(DefinitionSerializer(definition, context={"request": request}).data)
