"""Admin for workflow runs and task runs (read-only: the engine owns them)."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _

from .forms import WorkflowScheduleForm
from .models import ScheduleFire, TaskRun, Workflow, WorkflowSchedule


class TaskRunInline(admin.TabularInline):
    model = TaskRun
    fields = ("node", "task", "status", "attempts", "worker", "started_at", "finished_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin):
    list_display = ("name", "status", "tasks_finished", "tasks_total", "created", "finished")
    list_filter = ("status", "name", "schedule")
    search_fields = ("id", "name")
    date_hierarchy = "created"
    readonly_fields = [f.name for f in Workflow._meta.fields]
    inlines = [TaskRunInline]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(TaskRun)
class TaskRunAdmin(admin.ModelAdmin):
    list_display = ("task", "workflow", "node", "status", "attempts", "started_at", "finished_at")
    list_filter = ("status", "task")
    search_fields = ("id", "task", "workflow__id")
    list_select_related = ("workflow",)
    readonly_fields = [f.name for f in TaskRun._meta.fields] + ["parents"]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(WorkflowSchedule)
class WorkflowScheduleAdmin(admin.ModelAdmin):
    """Whole-workflow schedules, kept as django-celery-beat periodic tasks."""

    form = WorkflowScheduleForm
    list_display = ("name", "definition", "when", "overlap", "enabled", "last_run")
    list_filter = ("definition", "overlap", "periodic_task__enabled")
    search_fields = ("periodic_task__name", "definition")
    list_select_related = ("periodic_task",)
    readonly_fields = ("recent_runs", "recent_fires")
    fieldsets = [
        (None, {"fields": ["name", "definition", "payload", "overlap", "enabled", "description"]}),
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
