"""Bulk inserts without model instances store what the ORM stores."""

import datetime
import decimal
import uuid

import pytest
from django.utils import timezone

from django_workflows.engine import rows
from django_workflows.models import TaskRun, Workflow
from django_workflows.models import TaskRunStatus as T

#: Values Celery's JSON serializer carries, at the top of a column and nested.
VALUES = {
    "task": 'tasks.it\'s "quoted" ü',
    "args": ["text", 'it\'s "quoted" ü', 1, 2.5, True, False, None, [1, [2]], {"a": None}],
    "kwargs": {
        "when": datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.UTC),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "price": decimal.Decimal("1.10"),
        "day": datetime.date(2024, 5, 6),
    },
    "options": {},
}
INPUTS = [None, 3, [0, [1, 2]], "text", True, False, 1.5, {"k": "v"}]


def stored(run: TaskRun) -> dict:
    fields = [f.attname for f in TaskRun._meta.concrete_fields if f.attname not in ("id", "node")]
    return {name: getattr(run, name) for name in fields}


@pytest.mark.django_db(transaction=True)
def test_rows_are_read_back_as_the_orm_saved_them():
    workflow = Workflow.objects.create(name="rows")
    now = timezone.now()
    columns = ("id", "node", "task", "args", "kwargs", "options", "input", "queued_at", "claim")
    claim = uuid.uuid4()
    inserted = [
        (uuid.uuid4(), i, *VALUES.values(), value, now, claim) for i, value in enumerate(INPUTS)
    ]
    rows.insert(TaskRun, columns, iter(inserted), workflow=workflow.pk, status=T.QUEUED)
    offset = len(INPUTS)
    for i, value in enumerate(INPUTS):
        TaskRun.objects.create(
            workflow=workflow,
            node=offset + i,
            input=value,
            queued_at=now,
            claim=claim,
            status=T.QUEUED,
            **VALUES,
        )
    saved = {run.node: run for run in TaskRun.objects.filter(workflow=workflow)}
    for i, value in enumerate(INPUTS):
        by_rows, by_orm = saved[i], saved[offset + i]
        assert by_rows.pk == inserted[i][0]
        assert by_rows.input == value
        assert stored(by_rows) == stored(by_orm)


@pytest.mark.django_db(transaction=True)
def test_rows_insert_in_batches(monkeypatch):
    monkeypatch.setattr(rows, "BATCH_SIZE", 2)
    workflow = Workflow.objects.create(name="rows")
    count = rows.insert(
        TaskRun,
        ("node", "id", "task"),
        ((i, uuid.uuid4(), "t") for i in range(5)),
        workflow=workflow.pk,
    )
    assert count == 5
    assert sorted(workflow.task_runs.values_list("node", flat=True)) == [0, 1, 2, 3, 4]
