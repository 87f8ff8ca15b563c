"""Months of history: lists that count, filter and search without scanning, and
retention that deletes set-based (issue 18). The timings are in benchmarks/history.py;
here, what the pages and the pass do, and the SQL they send where it is deterministic.
"""

import logging
import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.db.models.signals import pre_delete
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from django_workflows.lists import distinct_values, estimated_count
from django_workflows.models import Edge, ScheduleFire, TaskAttempt, TaskRun, Workflow
from django_workflows.models import WorkflowStatus as W
from django_workflows.retention import (
    apply_retention,
    delete_finished,
    delete_finished_matching,
    rules,
)
from tests.helpers import dangling

pytestmark = pytest.mark.django_db

RUNS = "/admin/django_workflows/workflow/"
TASKS = "/admin/django_workflows/taskrun/"


def run(name: str, status: str = W.SUCCESS, age_days: float = 0, tasks: int = 2) -> Workflow:
    wf = Workflow.objects.create(name=name, status=status)
    Workflow.objects.filter(pk=wf.pk).update(created=timezone.now() - timedelta(days=age_days))
    made = [
        TaskRun.objects.create(workflow=wf, node=n, task=f"{name}.step{n}", status="success")
        for n in range(tasks)
    ]
    for parent, child in zip(made, made[1:], strict=False):
        child.parents.add(parent)
    if made:
        TaskAttempt.objects.create(task_run=made[0], attempt=1, status="failure")
    return wf


@pytest.fixture
def admin_client(client):
    client.force_login(get_user_model().objects.create_superuser("root", "r@example.com", "pw"))
    return client


def sqls(context: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in context.captured_queries]


# -- admin lists ------------------------------------------------------------------------


def test_the_runs_list_counts_once_without_distinct_or_a_date_scan(admin_client):
    run("arith"), run("etl", W.FAILURE)
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(RUNS)
    assert page.status_code == 200
    counts = [sql for sql in sqls(queries) if "COUNT(" in sql.upper()]
    # show_full_result_count = False: the page's own count only, not the table's too
    assert len(counts) == 1
    on_runs = [sql for sql in sqls(queries) if "django_workflows_workflow" in sql]
    assert not [sql for sql in on_runs if "DISTINCT" in sql and "name" not in sql]
    assert not [sql for sql in on_runs if "django_date_trunc" in sql or "strftime" in sql]


def test_the_name_filter_offers_registered_and_stored_names(admin_client):
    run("not.registered")
    page = admin_client.get(RUNS).content.decode()
    assert "?name=not.registered" in page and "?name=arith" in page  # arith: registered
    only = admin_client.get(RUNS, {"name": "not.registered"}).content.decode()
    assert "not.registered" in only and admin_client.get(RUNS, {"name": "x"}).status_code == 200


def test_search_looks_up_an_id_exactly_and_a_name_by_prefix(admin_client):
    a, b = run("etl.daily"), run("arith")
    with CaptureQueriesContext(connection) as queries:
        by_id = admin_client.get(RUNS, {"q": str(a.pk)}).context["cl"].result_list
    assert list(by_id) == [a]
    assert not [sql for sql in sqls(queries) if "LIKE" in sql]
    with CaptureQueriesContext(connection) as queries:
        by_prefix = admin_client.get(RUNS, {"q": "ETL."}).context["cl"].result_list
    assert list(by_prefix) == [a]
    assert not [sql for sql in sqls(queries) if "LIKE" in sql and "%ETL" in sql.upper()]
    assert list(admin_client.get(RUNS, {"q": "tl.daily"}).context["cl"].result_list) == []
    with override_settings(DJANGO_WORKFLOWS={"FREE_TEXT_SEARCH": True}):
        found = admin_client.get(RUNS, {"q": "tl.daily"}).context["cl"].result_list
        assert list(found) == [a]
    assert b not in by_prefix


def test_task_runs_list_filters_and_searches_on_indexes(admin_client):
    a, b = run("etl"), run("arith")
    page = admin_client.get(TASKS).content.decode()
    assert "?task=etl.step1" in page and "?workflow__name=arith" in page
    cl = admin_client.get(TASKS, {"task": "etl.step1"}).context["cl"]
    assert [t.workflow_id for t in cl.result_list] == [a.pk]
    cl = admin_client.get(TASKS, {"workflow__name": "arith"}).context["cl"]
    assert {t.workflow_id for t in cl.result_list} == {b.pk}
    cl = admin_client.get(TASKS, {"q": str(b.pk)}).context["cl"]  # a run's id: its tasks
    assert {t.workflow_id for t in cl.result_list} == {b.pk} and cl.result_count == 2
    cl = admin_client.get(TASKS, {"q": "ARITH.STEP"}).context["cl"]
    assert cl.result_count == 2


# -- API lists ---------------------------------------------------------------------------


@pytest.fixture
def api():
    client = APIClient()
    client.force_authenticate(get_user_model().objects.create_superuser("api", "a@x.com", "pw"))
    return client


def test_api_status_filters_need_no_distinct(api):
    run("etl"), run("etl", W.FAILURE)
    for url in ("/api/task-runs/?status=success", "/api/workflows/?status=failure"):
        with CaptureQueriesContext(connection) as queries:
            response = api.get(url)
        assert response.status_code == 200
        assert not [sql for sql in sqls(queries) if "DISTINCT" in sql], url
    assert api.get("/api/task-runs/?status=success").json()["count"] == 4


def test_api_cursor_pagination_is_an_option(api):
    runs = [run("etl", age_days=d, tasks=0) for d in range(3)]
    with override_settings(DJANGO_WORKFLOWS={"API_PAGINATION": "cursor"}):
        first = api.get("/api/workflows/", {"page_size": 2}).json()
        assert "count" not in first and first["previous"] is None
        assert [r["id"] for r in first["results"]] == [str(runs[0].pk), str(runs[1].pk)]
        rest = api.get(first["next"]).json()
        assert [r["id"] for r in rest["results"]] == [str(runs[2].pk)] and rest["next"] is None
    assert api.get("/api/workflows/").json()["count"] == 3


def test_api_search_is_id_name_prefix_or_key(api):
    a = run("etl.daily")
    Workflow.objects.filter(pk=a.pk).update(idempotency_key="monday", error="disk full")
    found = {"etl": [str(a.pk)], str(a.pk): [str(a.pk)], "monday": [str(a.pk)], "disk": []}
    for term, ids in found.items():
        results = api.get("/api/workflows/", {"search": term}).json()["results"]
        assert [r["id"] for r in results] == ids, term
    with override_settings(DJANGO_WORKFLOWS={"FREE_TEXT_SEARCH": True}):
        assert api.get("/api/workflows/", {"search": "disk"}).json()["count"] == 1


def test_distinct_values_and_the_count_outside_postgresql():
    for name in ("b", "a", "b", "c"):
        run(name, tasks=0)
    assert distinct_values(Workflow, "name") == ["a", "b", "c"]
    assert distinct_values(Workflow, "name", limit=2) == ["a", "b"]
    assert estimated_count(Workflow.objects.filter(name="b")) == 2  # exact: not PostgreSQL


# -- retention ---------------------------------------------------------------------------


def names_left() -> list[tuple[str, int]]:
    return sorted(Workflow.objects.values_list("name", "tasks_total"))


def test_retention_by_days_for_every_workflow_keeps_what_is_alive(caplog):
    old, recent = run("etl", age_days=40), run("etl", age_days=2)
    alive = run("adhoc", W.RUNNING, age_days=90)  # not finished: never deleted
    gone = run("adhoc", W.FAILURE, age_days=31)
    with override_settings(DJANGO_WORKFLOWS={"RETENTION": {"days": 30}}):
        with caplog.at_level(logging.INFO, logger="django_workflows.retention"):
            assert apply_retention() == {"adhoc": 1, "etl": 1}
    assert set(Workflow.objects.all()) == {recent, alive}
    assert not TaskRun.objects.filter(workflow__in=[old.pk, gone.pk]).exists()
    assert "2 finished run(s) and 4 task run(s) deleted" in caplog.text


def test_retention_by_runs_and_per_workflow():
    etl = [run("etl", age_days=d) for d in (5, 4, 3, 2, 1)]  # oldest first
    arith = [run("arith", age_days=d) for d in (50, 1)]
    other = [run("other", age_days=d) for d in (60, 1)]
    setting = {"runs": 2, "workflows": {"arith": {"days": 10}, "other": None}}
    with override_settings(DJANGO_WORKFLOWS={"RETENTION": setting}):
        assert apply_retention() == {"etl": 3, "arith": 1}
    assert set(Workflow.objects.all()) == {etl[3], etl[4], arith[1], *other}


def test_retention_days_and_runs_together_delete_beyond_either():
    runs = [run("etl", age_days=d) for d in (20, 9, 8, 1)]
    with override_settings(DJANGO_WORKFLOWS={"RETENTION": {"days": 10, "runs": 2}}):
        assert apply_retention() == {"etl": 2}
    assert set(Workflow.objects.all()) == {runs[2], runs[3]}


@pytest.mark.parametrize(
    "setting",
    [{"days": -1}, {"runs": "3"}, {"weeks": 2}, {"workflows": {"a": {"runs": 1.5}}}, "x"],
)
def test_a_wrong_retention_setting_says_so(setting):
    with override_settings(DJANGO_WORKFLOWS={"RETENTION": setting}):
        with pytest.raises(ImproperlyConfigured, match="RETENTION"):
            rules()


def test_the_set_based_delete_removes_what_hangs_on_a_run():
    wf, kept = run("etl", tasks=3), run("etl")
    relaunch = Workflow.objects.create(name="etl", relaunched_from=wf, status=W.RUNNING)
    fire = ScheduleFire.objects.create(workflow=wf, outcome="launched")
    with CaptureQueriesContext(connection) as queries:
        assert delete_finished([wf.pk, relaunch.pk]) == 1  # the relaunch is running
    assert not TaskRun.objects.filter(workflow_id=wf.pk).exists()
    assert Edge.objects.count() == 1  # kept's one edge
    assert TaskAttempt.objects.count() == 1
    relaunch.refresh_from_db(), fire.refresh_from_db()
    assert relaunch.relaunched_from is None and fire.workflow is None
    assert kept.task_runs.count() == 2
    assert dangling() == {}  # nothing left pointing at a deleted row
    # one statement per table, not one per task run
    deletes = [sql for sql in sqls(queries) if sql.startswith("DELETE")]
    assert len(deletes) == 4, deletes  # attempts, edges, task runs, runs


def test_a_project_listening_to_deletes_gets_djangos_delete():
    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance.pk)

    wf = run("etl")
    pre_delete.connect(receiver, sender=TaskRun)
    try:
        assert delete_finished([wf.pk]) == 1
    finally:
        pre_delete.disconnect(receiver, sender=TaskRun)
    assert len(seen) == 2 and not Workflow.objects.exists()
    assert dangling() == {}  # Django's collector cascades what the database no longer does


def test_a_delete_in_batches_reports_every_batch_and_keeps_what_is_alive():
    finished = [
        run(name, status, tasks=3)
        for name, status in [("etl", W.SUCCESS), ("etl", W.FAILURE), ("arith", W.CANCELED)] * 3
    ]
    alive = [run("etl", W.RUNNING, tasks=3), run("arith", W.PENDING, tasks=3)]
    fires = [ScheduleFire.objects.create(workflow=wf, outcome="launched") for wf in finished]
    deleted = delete_finished_matching(Workflow.objects.all(), batch_size=4)  # 3 batches
    assert deleted.runs == {"etl": 6, "arith": 3} and deleted.task_runs == 27
    assert set(Workflow.objects.all()) == set(alive)
    assert TaskRun.objects.count() == 6 and Edge.objects.count() == 4
    assert TaskAttempt.objects.count() == 2
    assert ScheduleFire.objects.filter(pk__in=[f.pk for f in fires], workflow=None).count() == 9
    assert dangling() == {}


def test_ids_are_time_ordered_so_a_runs_rows_lie_together(monkeypatch):
    """Runs and task runs get version 7 UUIDs: a later run's ids sort after an
    earlier run's, so the oldest runs (retention's) are together in each index."""
    from celery import chain

    from django_workflows import launch_canvas
    from tests.helpers import record_sends
    from tests.testapp.tasks import add

    record_sends(monkeypatch)
    first = launch_canvas(chain(add.s(1, 1), add.s(1), add.s(1)))
    time.sleep(0.002)  # the ids' time is in milliseconds
    second = launch_canvas(chain(add.s(1, 1), add.s(1)))
    ids = [[run.pk, *run.task_runs.values_list("pk", flat=True)] for run in (first, second)]
    assert {pk.version for pks in ids for pk in pks} == {7}
    assert max(ids[0]) < min(ids[1])
