"""Admin for workflow runs and task runs (read-only: the engine owns them)."""

from django.contrib import admin

from .models import TaskRun, Workflow


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
    list_filter = ("status", "name")
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
