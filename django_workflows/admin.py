"""Admin: workflow runs (status, progress, a live DAG picture, operations),
task runs, workflow schedules and their fires.

The engine owns every row: nothing here edits a run's fields directly; the
buttons and actions call the same operations as the Python API. Who may do
what is the API's rule too (``policy``; README, "Permissions").
"""

import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import display_for_field
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, re_path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _t
from django.utils.translation import gettext_lazy as _

from . import summary
from .canvas import public_options
from .dag import FOLD_OVER, dag_data, find, group_members
from .definitions import registry
from .details import task_details
from .exceptions import WorkflowError
from .forms import LaunchForm, MarkSuccessForm, WorkflowScheduleForm
from .lists import (
    EstimatedCountPaginator,
    distinct_values,
    free_text_search,
    run_search,
    task_run_search,
)
from .models import FINISHED_WORKFLOW, ScheduleFire, TaskRun, Workflow, WorkflowSchedule
from .policy import check_launch, may_launch
from .retention import delete_finished


class DisplayJSONEncoder(DjangoJSONEncoder):
    """JSON for people: ISO dates, and repr() of what JSON cannot show (bytes...)."""

    def default(self, o: Any) -> Any:
        try:
            return super().default(o)
        except TypeError:
            return repr(o)


def _json(value: Any) -> str:
    return json.dumps(value, cls=DisplayJSONEncoder, indent=2, sort_keys=True)


#: Rows per page of the run page's task table.
TASK_TABLE_PAGE = 25


def _get_or_404(queryset: type[Model] | QuerySet, **lookup: Any) -> Any:
    """The row, or a 404 for an unknown id and for one that is not an id at all."""
    try:
        return get_object_or_404(queryset, **lookup)
    except (ValidationError, ValueError):
        raise Http404 from None


#: At most this many choices in a filter read from the table (names, task names).
FILTER_CHOICES = 200


class ValueFilter(admin.SimpleListFilter):
    """A filter on a column's value, its choices read without a scan (``distinct_values``)
    and with no ``DISTINCT`` in the list's query."""

    model: type[Model]
    field: str

    def choices_from_rows(self) -> list[str]:
        return distinct_values(self.model, self.field, limit=FILTER_CHOICES)

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        values = sorted(set(self.choices_from_rows()) | {self.value()} - {None})
        return [(value, value) for value in values]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(**{self.parameter_name: value}) if value is not None else queryset


class WorkflowNameFilter(ValueFilter):
    """Workflow names: the registered definitions, and those found in the runs."""

    title = _("name")
    parameter_name = "name"
    model, field = Workflow, "name"

    def choices_from_rows(self) -> list[str]:
        return [d.name for d in registry] + super().choices_from_rows()


class TaskRunWorkflowNameFilter(WorkflowNameFilter):
    parameter_name = "workflow__name"


class TaskNameFilter(ValueFilter):
    title = _("task name")
    parameter_name = "task"
    model, field = TaskRun, "task"


class FastListMixin:
    """A list that stays fast at millions of rows (``lists``): no full count, an
    estimated one on PostgreSQL, search on indexed columns unless free text is on."""

    show_full_result_count = False
    paginator = EstimatedCountPaginator
    search_on_indexes: Any  # a term -> Q
    free_text_fields: tuple[str, ...] = ()

    def get_search_fields(self, request: HttpRequest) -> tuple[str, ...]:
        return self.free_text_fields if free_text_search() else self.search_fields

    def get_search_results(self, request, queryset, search_term):
        if not search_term or free_text_search():
            return super().get_search_results(request, queryset, search_term)
        return queryset.filter(type(self).search_on_indexes(search_term.strip())), False


@admin.register(Workflow)
class WorkflowAdmin(FastListMixin, admin.ModelAdmin):
    list_display = ("name", "status_badge", "progress", "duration", "origin", "created")
    # No date_hierarchy: its year links are a SELECT DISTINCT over every run.
    list_filter = (
        "status",
        WorkflowNameFilter,
        ("created", admin.DateFieldListFilter),
        "schedule",
        "launched_by",
    )
    search_fields = ("=id", "^name", "=idempotency_key")  # what run_search looks up
    free_text_fields = ("=id", "name", "idempotency_key", "error")
    search_on_indexes = staticmethod(run_search)
    list_select_related = ("launched_by", "schedule__periodic_task")
    readonly_fields = [
        "id",
        "name",
        "status_badge",
        "progress",
        "payload_json",
        "result_json",
        "error",
        "created",
        "started",
        "finished",
        "duration",
        "launched_by",
        "schedule",
        "relaunched_from",
        "idempotency_key",
    ]
    # What does not change; status, progress, times, result and error are the page's
    # live header (run_header.html), refreshed with the DAG.
    fields = [
        "id",
        "name",
        "payload_json",
        "created",
        "launched_by",
        "schedule",
        "relaunched_from",
        "idempotency_key",
    ]
    actions = ["resume_runs", "relaunch_runs", "cancel_runs"]
    change_form_template = "admin/django_workflows/workflow/change_form.html"

    class Media:
        css = {"all": ["django_workflows/admin.css"]}

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # runs are launched (see the launch page), never typed in

    # -- deleting: finished runs only, as retention does ----------------------------

    def has_delete_permission(self, request: HttpRequest, obj: Workflow | None = None) -> bool:
        """A run that has not finished has no delete button: cancel it first."""
        if obj is not None and obj.status not in FINISHED_WORKFLOW:
            return False
        return super().has_delete_permission(request, obj)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple:
        """What the confirmation page lists: the runs, with their task runs
        counted (never collected one by one: a run may hold 100,000), and any
        run not finished as protected, which Django's delete then refuses."""
        runs = list(objs)
        # a run's task runs go with it: deleting runs needs delete_workflow alone
        perms_needed = set() if self.has_delete_permission(request) else {_t("run")}
        protected = [
            _t("%(run)s (%(status)s: cancel it first)")
            % {"run": run, "status": run.get_status_display()}
            for run in runs
            if run.status not in FINISHED_WORKFLOW
        ]
        model_count = {
            Workflow._meta.verbose_name_plural: len(runs),
            TaskRun._meta.verbose_name_plural: sum(run.tasks_total for run in runs),
        }
        return [str(run) for run in runs], model_count, perms_needed, protected

    def delete_model(self, request: HttpRequest, obj: Workflow) -> None:
        delete_finished([obj.pk])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        """Set-based (one statement per table, :mod:`..retention`), and only what has
        finished by the time of the delete."""
        delete_finished(list(queryset.values_list("pk", flat=True)))

    # -- columns --------------------------------------------------------------------

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: Workflow) -> str:
        return format_html(
            '<span class="dw-badge dw-{}">{}</span>', obj.status, obj.get_status_display()
        )

    @admin.display(description=_("progress"))
    def progress(self, obj: Workflow) -> str:
        total = obj.tasks_total or 1
        done = 100 * (obj.tasks_finished - obj.tasks_failed) / total
        failed = 100 * obj.tasks_failed / total
        return format_html(
            '<span class="dw-progress" title="{}"><span class="dw-done" style="width:{}%">'
            '</span><span class="dw-failed" style="width:{}%"></span></span> {}/{}{}',
            _t("%(finished)s of %(total)s tasks finished, %(failed)s failed")
            % {
                "finished": obj.tasks_finished,
                "total": obj.tasks_total,
                "failed": obj.tasks_failed,
            },
            f"{done:.1f}",
            f"{failed:.1f}",
            obj.tasks_finished,
            obj.tasks_total,
            format_html(
                ' <span class="dw-failed-text">({} {})</span>', obj.tasks_failed, _t("failed")
            )
            if obj.tasks_failed
            else "",
        )

    @admin.display(description=_("duration"))
    def duration(self, obj: Workflow) -> str:
        seconds = summary.duration(obj)
        if seconds is None:
            return "-"
        return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"

    @admin.display(description=_("launched by"))
    def origin(self, obj: Workflow) -> str:
        if obj.schedule_id:
            return format_html("⏱ {}", obj.schedule)
        return str(obj.launched_by or "-")

    @admin.display(description=_("payload"))
    def payload_json(self, obj: Workflow) -> str:
        return format_html("<pre>{}</pre>", _json(obj.payload))

    @admin.display(description=_("result"))
    def result_json(self, obj: Workflow) -> str:
        return format_html("<pre>{}</pre>", _json(obj.result))

    # -- bulk actions, each with a confirmation page -------------------------------------

    def has_launch_permission(self, request: HttpRequest) -> bool:
        """Starting runs (the launch page, relaunches): ``add_workflow``; a relaunch also
        needs to see the run. ``CAN_LAUNCH`` is asked per definition (``policy``)."""
        return request.user.has_perm("django_workflows.add_workflow")

    def _bulk(self, request, queryset, verb: str, operate, allowed: bool) -> HttpResponse | None:
        if not allowed:
            raise PermissionDenied
        if request.POST.get("confirm") != "yes":
            return TemplateResponse(
                request,
                "django_workflows/admin/confirm_action.html",
                {
                    **self.admin_site.each_context(request),
                    "title": _t("Are you sure?"),
                    "verb": verb,
                    "action": request.POST["action"],
                    "runs": queryset,
                    "opts": self.model._meta,
                    "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
                },
            )
        done, refused = 0, []
        for run in queryset:
            try:
                operate(run)
                done += 1
            except WorkflowError as exc:
                refused.append(str(exc))
        if done:
            self.message_user(
                request,
                _t("%(verb)s: %(count)d run(s).") % {"verb": verb, "count": done},
                messages.SUCCESS,
            )
        for text in refused:
            self.message_user(request, text, messages.WARNING)
        return None

    @admin.action(description=_("Resume selected runs"), permissions=["change"])
    def resume_runs(self, request, queryset):
        allowed = self.has_change_permission(request)
        return self._bulk(request, queryset, _t("Resume"), lambda run: run.resume(), allowed)

    @admin.action(description=_("Relaunch selected runs"), permissions=["launch"])
    def relaunch_runs(self, request, queryset):
        def relaunch(run: Workflow) -> Workflow:
            check_launch(request.user, run.name)
            return run.relaunch(user=request.user)

        allowed = self.has_launch_permission(request)
        return self._bulk(request, queryset, _t("Relaunch"), relaunch, allowed)

    @admin.action(description=_("Cancel selected runs"), permissions=["change"])
    def cancel_runs(self, request, queryset):
        allowed = self.has_change_permission(request)
        return self._bulk(request, queryset, _t("Cancel"), lambda run: run.cancel(), allowed)

    # -- the run page: DAG, details, operations ------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("launch/", view(self.launch_view), name="django_workflows_workflow_launch"),
            path("<uuid:pk>/dag.json", view(self.dag_view), name="django_workflows_workflow_dag"),
            path(
                "<uuid:pk>/groups/<int:first>.json",
                view(self.group_view),
                name="django_workflows_workflow_group",
            ),
            path(
                "<uuid:pk>/find.json", view(self.find_view), name="django_workflows_workflow_find"
            ),
            path(
                "<uuid:pk>/task-table/",
                view(self.task_table_view),
                name="django_workflows_workflow_task_table",
            ),
            path(
                "<uuid:pk>/tasks/<uuid:task_pk>.json",
                view(self.task_view),
                name="django_workflows_workflow_task",
            ),
            path(
                "<uuid:pk>/timeline/",
                view(self.timeline_view),
                name="django_workflows_workflow_timeline",
            ),
            re_path(
                r"^(?P<pk>[0-9a-f-]{36})/(?P<operation>resume|relaunch|cancel|rerun|mark-success)/$",
                view(self.operation_view),
                name="django_workflows_workflow_operation",
            ),
        ] + super().get_urls()

    def _run(self, request: HttpRequest, pk: Any) -> Workflow:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        return _get_or_404(Workflow, pk=pk)

    def _may(self, request: HttpRequest, operation: str, run: Workflow) -> bool:
        """The API's rule: a relaunch is a launch, mark-success changes a task run."""
        if operation == "relaunch":
            return self.has_launch_permission(request) and may_launch(request.user, run.name)
        if operation == "mark-success":
            return request.user.has_perm("django_workflows.change_taskrun")
        return self.has_change_permission(request, run)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        run = self._run(request, object_id)
        urls = {
            name: reverse(f"admin:django_workflows_workflow_{name}", args=[run.pk])
            for name in ("find", "task_table")
        }
        extra = {
            "title": _t("Run of workflow “%(name)s”") % {"name": run.name},
            "panels": self._panels(request, run),
            "find_url": urls["find"],
            "task_table_url": urls["task_table"],
            "group_url": reverse("admin:django_workflows_workflow_group", args=[run.pk, 0]),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "show_delete": False,
            "can_operate": self.has_change_permission(request, run),
            "can_relaunch": self._may(request, "relaunch", run),
            "can_mark_success": self._may(request, "mark-success", run),
            "dag_url": reverse("admin:django_workflows_workflow_dag", args=[run.pk]),
            "task_url": reverse(
                "admin:django_workflows_workflow_task",
                args=[run.pk, "00000000-0000-0000-0000-000000000000"],
            ),
            "timeline_url": reverse("admin:django_workflows_workflow_timeline", args=[run.pk]),
            "operation_url": reverse(
                "admin:django_workflows_workflow_operation", args=[run.pk, "resume"]
            ).replace("resume", "OPERATION"),
            "run": run,
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, extra)

    def _panels(self, request: HttpRequest, run: Workflow) -> dict[str, str]:
        """The live header and failure summary, as HTML: drawn by the page, then by each poll."""
        can_operate = self.has_change_permission(request, run)
        failures = summary.failure_summary(run, plan=can_operate)
        context = {
            "run": run,
            "status_badge": self.status_badge(run),
            "progress": self.progress(run),
            "duration": self.duration(run),
            "result": _json(run.result) if run.status == "success" else None,
            "summary": failures,
            "first_failure": failures["failed"][0] if failures and failures["failed"] else None,
            "can_operate": can_operate,
            "operations": [op for op in summary.operations(run) if self._may(request, op, run)],
        }
        return {
            name: render_to_string(f"django_workflows/admin/run_{name}.html", context, request)
            for name in ("header", "failures")
        }

    def dag_view(self, request: HttpRequest, pk: Any) -> JsonResponse:
        """The page's one poll: the folded DAG and the live header and failure summary.

        The panels come with ``?panels=1``: not in the page's first poll of a run that
        had finished when the page was drawn (they cannot have changed, and a failed
        run's resume plan reads every row again). Without them and folds (a DAG of at
        most ``FOLD_OVER`` siblings) it is the API's DAG, to the byte.
        """
        run = self._run(request, pk)
        data = dag_data(run, fold=FOLD_OVER)
        if request.GET.get("panels") == "1":
            data["panels"] = self._panels(request, run)
        return JsonResponse(data)

    def group_view(self, request: HttpRequest, pk: Any, first: int) -> JsonResponse:
        members = group_members(self._run(request, pk), first, request.GET.get("page", 1))
        if members is None:
            return JsonResponse({"error": _t("No such group of tasks.")}, status=404)
        return JsonResponse(members)

    def find_view(self, request: HttpRequest, pk: Any) -> JsonResponse:
        return JsonResponse(find(self._run(request, pk), request.GET.get("q", "")))

    def task_table_view(self, request: HttpRequest, pk: Any) -> TemplateResponse:
        """The run's task runs as a table (a fragment the page pages and filters in place)."""
        run = self._run(request, pk)
        status = request.GET.get("status", "")
        runs = run.task_runs.order_by("node").only(
            "id",
            "node",
            "task",
            "status",
            "attempts",
            "started_at",
            "finished_at",
            "exception_type",
            "map_index",
            "is_hook",
        )
        if status:
            runs = runs.filter(status=status)
        return TemplateResponse(
            request,
            "django_workflows/admin/run_task_table.html",
            {
                "run": run,
                "page": Paginator(runs, TASK_TABLE_PAGE).get_page(request.GET.get("page")),
                "status": status,
                "statuses": TaskRun._meta.get_field("status").choices,
            },
        )

    def task_view(self, request: HttpRequest, pk: Any, task_pk: Any) -> JsonResponse:
        run = _get_or_404(TaskRun, workflow=self._run(request, pk), pk=task_pk)
        return JsonResponse(task_details(run, user=request.user), encoder=DisplayJSONEncoder)

    def timeline_view(self, request: HttpRequest, pk: Any) -> TemplateResponse:
        run = self._run(request, pk)
        tasks = list(run.task_runs.exclude(started_at=None).order_by("started_at", "node"))
        start = min((t.queued_at or t.started_at for t in tasks), default=None)
        end = max((t.finished_at or t.started_at for t in tasks), default=None)
        span = max(((end - start).total_seconds() if tasks else 0), 0.001)
        bars = [
            {
                "task": t,
                "wait": 100
                * ((t.started_at - (t.queued_at or t.started_at)).total_seconds())
                / span,
                "offset": 100 * ((t.queued_at or t.started_at) - start).total_seconds() / span,
                "width": max(
                    0.3, 100 * ((t.finished_at or end) - t.started_at).total_seconds() / span
                ),
                "seconds": ((t.finished_at or end) - t.started_at).total_seconds(),
            }
            for t in tasks
        ]
        return TemplateResponse(
            request,
            "django_workflows/admin/timeline.html",
            {
                **self.admin_site.each_context(request),
                "title": _t("Timeline of %(run)s") % {"run": run},
                "run": run,
                "bars": bars,
                "span": span,
                "opts": self.model._meta,
            },
        )

    def operation_view(self, request: HttpRequest, pk: Any, operation: str) -> HttpResponse:
        """Resume (after showing the plan), relaunch, cancel, rerun from a node, mark success."""
        run = self._run(request, pk)
        if not self._may(request, operation, run):
            raise PermissionDenied
        back = reverse("admin:django_workflows_workflow_change", args=[run.pk])
        task = None
        if operation in {"rerun", "mark-success"}:
            task = _get_or_404(
                TaskRun,
                workflow=run,
                pk=request.POST.get("task_run") or request.GET.get("task_run"),
            )
        form = MarkSuccessForm(request.POST or None) if operation == "mark-success" else None
        if (
            request.method != "POST"
            or (operation == "resume" and "confirm" not in request.POST)
            or (form is not None and not form.is_valid())
        ):
            try:
                plan = run.resume(dry_run=True) if operation == "resume" else None
            except WorkflowError as exc:
                self.message_user(request, str(exc), messages.ERROR)
                return HttpResponseRedirect(back)
            return TemplateResponse(
                request,
                "django_workflows/admin/confirm_operation.html",
                {
                    **self.admin_site.each_context(request),
                    "title": _t("Confirm"),
                    "run": run,
                    "operation": operation,
                    "plan": plan,
                    "task": task,
                    "form": form,
                    "opts": self.model._meta,
                },
            )
        try:
            if operation == "resume":
                run.resume()
            elif operation == "relaunch":
                new = run.relaunch(user=request.user)
                self.message_user(request, _t("Relaunched as %(run)s.") % {"run": new.pk})
                return HttpResponseRedirect(
                    reverse("admin:django_workflows_workflow_change", args=[new.pk])
                )
            elif operation == "cancel":
                run.cancel(terminate=request.POST.get("terminate") == "on")
            elif operation == "rerun":
                run.rerun_from(task)
            else:
                task.mark_success(form.cleaned_data["result"])
        except WorkflowError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(request, _t("Done: %(operation)s.") % {"operation": operation})
        return HttpResponseRedirect(back)

    # -- the launch page ---------------------------------------------------------------------

    def launch_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_launch_permission(request):
            raise PermissionDenied
        form = LaunchForm(
            request.POST or None,
            initial={"definition": request.GET.get("name")},
            user=request.user,
        )
        if request.method == "POST" and form.is_valid():
            try:
                run = form.launch()
            except WorkflowError as exc:  # e.g. the broker is down: the run is recorded
                form.add_error(None, str(exc))
            else:
                return HttpResponseRedirect(
                    reverse("admin:django_workflows_workflow_change", args=[run.pk])
                )
        return TemplateResponse(
            request,
            "django_workflows/admin/launch.html",
            {
                **self.admin_site.each_context(request),
                "title": _t("Launch a workflow"),
                "form": form,
                "opts": self.model._meta,
                "definitions": [
                    {
                        "name": d.name,
                        "description": d.description,
                        "example": _json(form.example_payload(d)),
                    }
                    for d in registry
                ],
            },
        )

    def changelist_view(self, request, extra_context=None):
        can_launch = self.has_launch_permission(request)
        return super().changelist_view(request, {"can_launch": can_launch, **(extra_context or {})})


@admin.register(TaskRun)
class TaskRunAdmin(FastListMixin, admin.ModelAdmin):
    list_display = ("task", "run_link", "node", "status", "attempts", "started_at", "finished_at")
    list_filter = ("status", TaskNameFilter, TaskRunWorkflowNameFilter, "is_hook")
    search_fields = ("=id", "^task", "=workflow__id")  # what task_run_search looks up
    free_text_fields = ("=id", "task", "=workflow__id", "exception_message")
    search_on_indexes = staticmethod(task_run_search)
    list_select_related = ("workflow",)
    # The options as Celery is given them: the engine's own notes left out.
    readonly_fields = [
        "celery_options" if f.name == "options" else f.name for f in TaskRun._meta.fields
    ]
    exclude = ["parents", "options"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description=_("options"))
    def celery_options(self, obj: TaskRun) -> str:
        field = TaskRun._meta.get_field("options")
        return display_for_field(public_options(obj.options), field, self.get_empty_value_display())

    def has_delete_permission(self, request, obj=None) -> bool:
        """A task run goes with its run: deleted alone, it would leave its run's
        DAG without a node (the run's delete permission deletes the whole run)."""
        return False

    @admin.display(description=_("workflow run"), ordering="workflow")
    def run_link(self, obj: TaskRun) -> str:
        url = reverse("admin:django_workflows_workflow_change", args=[obj.workflow_id])
        return format_html('<a href="{}">{}</a>', url, obj.workflow)


@admin.register(WorkflowSchedule)
class WorkflowScheduleAdmin(admin.ModelAdmin):
    """Whole-workflow schedules, kept as django-celery-beat periodic tasks."""

    form = WorkflowScheduleForm
    list_display = ("name", "definition", "when", "overlap", "enabled", "owner", "last_run")
    list_filter = ("definition", "overlap", "periodic_task__enabled")
    search_fields = ("periodic_task__name", "definition")
    list_select_related = ("periodic_task", "owner")
    readonly_fields = ("owner", "recent_runs", "recent_fires")
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "name",
                    "definition",
                    "payload",
                    "overlap",
                    "enabled",
                    "description",
                    "owner",
                ]
            },
        ),
        (
            _("When"),
            {
                "fields": [
                    "kind",
                    "every",
                    "period",
                    "minute",
                    "hour",
                    "day_of_week",
                    "day_of_month",
                    "month_of_year",
                    "timezone",
                    "event",
                    "latitude",
                    "longitude",
                    "clocked_time",
                    "start_time",
                    "expires",
                    "one_off",
                ]
            },
        ),
        (_("History"), {"fields": ["recent_runs", "recent_fires"]}),
    ]

    @admin.display(description=_("name"), ordering="periodic_task__name")
    def name(self, obj: WorkflowSchedule) -> str:
        return obj.periodic_task.name

    @admin.display(description=_("runs"))
    def when(self, obj: WorkflowSchedule) -> str:
        task = obj.periodic_task
        return str(task.interval or task.crontab or task.solar or task.clocked or "")

    @admin.display(description=_("enabled"), boolean=True)
    def enabled(self, obj: WorkflowSchedule) -> bool:
        return obj.periodic_task.enabled

    @admin.display(description=_("last run"))
    def last_run(self, obj: WorkflowSchedule) -> str:
        run = obj.runs.order_by("-created").first()
        return f"{run.get_status_display()} ({run.created:%Y-%m-%d %H:%M})" if run else "-"

    @admin.display(description=_("last runs"))
    def recent_runs(self, obj: WorkflowSchedule) -> str:
        runs = obj.runs.order_by("-created")[:10] if obj.pk else []
        return (
            format_html_join(
                mark_safe("<br>"),
                '<a href="{}">{}</a> {} {}',
                (
                    (
                        reverse("admin:django_workflows_workflow_change", args=[r.pk]),
                        r.pk,
                        r.get_status_display(),
                        f"{r.created:%Y-%m-%d %H:%M:%S}",
                    )
                    for r in runs
                ),
            )
            or "-"
        )

    @admin.display(description=_("last fires"))
    def recent_fires(self, obj: WorkflowSchedule) -> str:
        fires = obj.fires.all()[:10] if obj.pk else []
        return (
            format_html_join(
                mark_safe("<br>"),
                "{} {} {}",
                (
                    (f"{f.fired_at:%Y-%m-%d %H:%M:%S}", f.get_outcome_display(), f.message)
                    for f in fires
                ),
            )
            or "-"
        )

    def get_form(self, request, obj=None, change=False, **kwargs):
        """The form knows who saves: they must be allowed to launch the workflow, and own it."""
        form = super().get_form(request, obj, change, **kwargs)
        return type(form.__name__, (form,), {"user": request.user})

    def delete_queryset(self, request, queryset) -> None:
        for schedule in queryset:  # one by one: each takes its periodic task along
            schedule.delete()


@admin.register(ScheduleFire)
class ScheduleFireAdmin(admin.ModelAdmin):
    list_display = ("fired_at", "periodic_task_name", "outcome", "workflow", "message")
    list_filter = ("outcome", "schedule")
    search_fields = ("periodic_task_name", "message")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
