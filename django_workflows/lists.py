"""What keeps the admin's and the API's lists fast at millions of rows.

A list page reads one page of rows through an index that matches its filter and
ordering; what costs is around it: counting every row, listing a filter's choices
with ``SELECT DISTINCT`` over the table, searching with ``LIKE '%term%'``. Here:

- :class:`EstimatedCountPaginator`: PostgreSQL's own estimate (``pg_class.reltuples``
  for a whole table, the planner's row estimate for a filtered list) once it is large,
  an exact ``COUNT(*)`` below that;
- :func:`distinct_values`: a column's distinct values by walking its index (one probe
  per value), not by scanning the table;
- :func:`run_search`, :func:`task_run_search`: search on indexed columns (an id,
  exactly; a name, by prefix); free text is opt-in (``FREE_TEXT_SEARCH``).
"""

import json
import uuid
from typing import Any

from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Model, Q, QuerySet
from django.utils.functional import cached_property

from .conf import get_setting

#: Above this many rows (by PostgreSQL's estimate) a list shows the estimate.
ESTIMATE_ABOVE = 10_000


def estimated_count(queryset: QuerySet, above: int = ESTIMATE_ABOVE) -> int:
    """How many rows ``queryset`` has: estimated on PostgreSQL when it is many."""
    connection = connections[queryset.db]
    if connection.vendor == "postgresql" and not queryset.query.distinct:
        if not queryset.query.where:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples FROM pg_class WHERE oid = %s::regclass",
                    [connection.ops.quote_name(queryset.model._meta.db_table)],
                )
                row = cursor.fetchone()
            estimate = int(row[0]) if row else -1  # -1: never analyzed
        else:
            plan = json.loads(queryset.order_by().explain(format="json"))
            estimate = int(plan[0]["Plan"]["Plan Rows"])
        if estimate >= above:
            return estimate
    return queryset.count()


class EstimatedCountPaginator(Paginator):
    """Django's paginator, with :func:`estimated_count` as its count."""

    @cached_property
    def count(self) -> int:
        if isinstance(self.object_list, QuerySet):
            return estimated_count(self.object_list)
        return super().count


def distinct_values(model: type[Model], field: str, limit: int | None = 200) -> list[Any]:
    """The distinct values of an indexed column, in order, at most ``limit`` of them.

    On PostgreSQL a recursive query asks the column's index for the next value after
    the last one (a "loose index scan"): as many index probes as values, whatever the
    table's size. Elsewhere, ``SELECT DISTINCT``.
    """
    queryset = model._default_manager.all()
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        values = queryset.order_by(field).values_list(field, flat=True).distinct()
        return list(values if limit is None else values[:limit])
    table = connection.ops.quote_name(model._meta.db_table)
    column = connection.ops.quote_name(model._meta.get_field(field).column)
    sql = (
        f"WITH RECURSIVE v(value) AS ("
        f" (SELECT {column} FROM {table} ORDER BY {column} LIMIT 1)"
        f" UNION ALL"
        f" SELECT (SELECT {column} FROM {table} WHERE {column} > v.value"
        f" ORDER BY {column} LIMIT 1) FROM v WHERE v.value IS NOT NULL"
        f") SELECT value FROM v WHERE value IS NOT NULL"
    )
    params: list[Any] = []
    if limit is not None:
        sql += " LIMIT %s"
        params.append(limit)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def as_uuid(term: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(term.strip())
    except ValueError:
        return None


def run_search(term: str) -> Q:
    """Runs a search term finds without free text: the run of that id, or the runs whose
    name starts with it (any case) or whose idempotency key it is."""
    if (pk := as_uuid(term)) is not None:
        return Q(pk=pk)
    return Q(name__istartswith=term) | (Q(idempotency_key=term) & ~Q(idempotency_key=""))


def task_run_search(term: str) -> Q:
    """Task runs a search term finds without free text: the task run (its Celery task id)
    or the workflow run of that id, or the task runs whose task name starts with it."""
    if (pk := as_uuid(term)) is not None:
        return Q(pk=pk) | Q(workflow_id=pk)
    return Q(task__istartswith=term)


def free_text_search() -> bool:
    """Search lists with ``LIKE '%term%'`` over more columns (a scan of the table)."""
    return bool(get_setting("FREE_TEXT_SEARCH"))
