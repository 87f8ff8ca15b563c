"""Query filters of the list endpoints (django-filter): an invalid value is a 400."""

import datetime
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.db import models
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_filters import rest_framework as filters
from django_filters.fields import IsoDateTimeField
from drf_spectacular.utils import extend_schema_field
from rest_framework.filters import SearchFilter

from ..lists import free_text_search, run_search, task_run_search
from ..models import TaskRun, TaskRunStatus, Workflow, WorkflowStatus

INT64 = (-(2**63), 2**63 - 1)  # what the databases can compare an id with


@extend_schema_field({"type": "integer", "minimum": INT64[0], "maximum": INT64[1]})
class IntegerFilter(filters.NumberFilter):
    field_class = forms.IntegerField

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, min_value=INT64[0], max_value=INT64[1], **kwargs)


class UTCDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time, in UTC: what the database compares.

    A valid date-time that falls outside Python's range once in UTC (year 1 at
    +14:00, year 9999 at -14:00) is clamped to the first or last one it has.
    """

    def to_python(self, value: Any) -> datetime.datetime | None:
        value = super().to_python(value)
        if value is None or timezone.is_naive(value):
            return value
        try:
            return value.astimezone(datetime.UTC)
        except OverflowError:
            bound = datetime.datetime.min if value.year == 1 else datetime.datetime.max
            return bound.replace(tzinfo=datetime.UTC)


class DateTimeFilter(filters.IsoDateTimeFilter):
    field_class = UTCDateTimeField


def user_filter(**kwargs: object) -> filters.Filter:
    """A filter on a user's id, of the type of the user model's primary key.

    It does not check that the user exists: an unknown id lists nothing (and
    tells nothing about which users exist).
    """
    pk = get_user_model()._meta.pk
    if isinstance(pk, models.UUIDField):
        return filters.UUIDFilter(**kwargs)
    if isinstance(pk, models.IntegerField):
        return IntegerFilter(**kwargs)
    return filters.CharFilter(**kwargs)


class WorkflowFilter(filters.FilterSet):
    name = filters.CharFilter(label=_("Name of the workflow definition (exact)."))
    # distinct=False: a filter on the row's own column finds each row once, and DISTINCT
    # over every column (and a count around it) costs a sort of the whole result.
    status = filters.MultipleChoiceFilter(
        choices=WorkflowStatus.choices,
        distinct=False,
        label=_("Status; repeat the parameter for several."),
    )
    launched_by = user_filter(label=_("Id of the user who launched the run."))
    created_after = DateTimeFilter(
        field_name="created", lookup_expr="gte", label=_("Created at or after (ISO 8601).")
    )
    created_before = DateTimeFilter(
        field_name="created", lookup_expr="lt", label=_("Created before (ISO 8601).")
    )
    schedule = IntegerFilter(label=_("Id of the workflow schedule that started the run."))
    periodic = filters.BooleanFilter(
        field_name="schedule",
        lookup_expr="isnull",
        exclude=True,
        label=_("true: runs started by a schedule; false: the others."),
    )

    class Meta:
        model = Workflow
        fields = [
            "name",
            "status",
            "launched_by",
            "created_after",
            "created_before",
            "schedule",
            "periodic",
        ]


class TaskRunFilter(filters.FilterSet):
    workflow = filters.UUIDFilter(label=_("Id of the workflow run."))
    status = filters.MultipleChoiceFilter(
        choices=TaskRunStatus.choices,
        distinct=False,
        label=_("Status; repeat the parameter for several."),
    )
    task = filters.CharFilter(label=_("Celery task name (exact)."))

    class Meta:
        model = TaskRun
        fields = ["workflow", "status", "task"]


class IndexedSearchFilter(SearchFilter):
    """``?search=``: an id exactly or a name by prefix, on indexes (``lists``); free
    text over ``search_fields`` when ``FREE_TEXT_SEARCH`` is on."""

    def __init__(self, on_indexes: Callable[[str], Q]) -> None:
        self.on_indexes = on_indexes

    def filter_queryset(self, request: Any, queryset: QuerySet, view: Any) -> QuerySet:
        if free_text_search():
            return super().filter_queryset(request, queryset, view)
        term = request.query_params.get(self.search_param, "").strip()
        return queryset.filter(self.on_indexes(term)) if term else queryset


class RunSearchFilter(IndexedSearchFilter):
    def __init__(self) -> None:
        super().__init__(run_search)


class TaskRunSearchFilter(IndexedSearchFilter):
    def __init__(self) -> None:
        super().__init__(task_run_search)
