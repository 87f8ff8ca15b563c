"""The README's permissions table, walked cell by cell, through the API and the admin.

Each row of ``TABLE`` is one action on one channel and what it needs: a list of
alternatives, each a set of permissions that suffices. It is tried as every user
holding exactly one permission of the app, and as a user holding exactly the first
alternative: each cell must be allowed exactly when the user's permissions hold an
alternative, and a refused cell must change nothing (no run started, none moved).
"""

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from rest_framework.test import APIClient

from django_workflows import engine, launch
from django_workflows.models import ScheduleFire, TaskRun, Workflow, WorkflowSchedule
from django_workflows.models import TaskRunStatus as T
from django_workflows.models import WorkflowStatus as W
from tests.helpers import record_sends

pytestmark = pytest.mark.django_db(transaction=True)

ADMIN = "/admin/django_workflows/"
SEES_RUNS = [{"view_workflow"}, {"change_workflow"}]
SEES_TASKS = [{"view_taskrun"}, {"change_taskrun"}]
TASK_DATA = {"args", "kwargs", "result", "exception_type", "exception_message", "traceback"}


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    record_sends(monkeypatch)


def failed_run() -> Workflow:
    """breaks: add(1, 1) succeeded, fail() failed, add(1) upstream_failed."""
    wf = launch("breaks", {})
    for node, error in ((0, None), (1, ValueError("boom"))):
        run = wf.task_runs.get(node=node)
        engine.task_started(str(run.pk), str(wf.pk), "w1")
        if error is None:
            engine.task_succeeded(str(run.pk), str(wf.pk), node, 2)
        else:
            engine.task_failed(str(run.pk), error, "Traceback")
    wf.refresh_from_db()
    assert wf.status == W.FAILURE
    return wf


def running_run() -> Workflow:
    return launch("arith", {"x": 1, "y": 2})


def started(before: int) -> bool:
    return Workflow.objects.count() > before


# -- each cell: do the action as ``client``; return whether it was allowed --------------------
# A refusal is checked to be one (403, or the form's error), never a 500 or a silent no-op.


def refused(response, *allowed_codes: int) -> bool:
    assert response.status_code in (403, *allowed_codes), response.status_code
    return False


def api_see_run(client) -> bool:
    wf = failed_run()
    response = client.get(f"/api/workflows/{wf.pk}/")
    return response.status_code == 200 or refused(response)


def api_see_dag(client) -> bool:
    wf = failed_run()
    response = client.get(f"/api/workflows/{wf.pk}/dag/")
    return response.status_code == 200 or refused(response)


def api_see_task_data(client) -> bool:
    wf = failed_run()
    response = client.get(f"/api/workflows/{wf.pk}/")
    if response.status_code == 403:
        return False
    failed = response.json()["task_runs"][1]
    shown = TASK_DATA & set(failed)
    assert shown in (set(), TASK_DATA), shown  # all of it or none of it
    return bool(shown) and failed["exception_message"] == "boom"


def api_list_task_runs(client) -> bool:
    wf = failed_run()
    response = client.get(f"/api/task-runs/{wf.task_runs.get(node=1).pk}/")
    return response.status_code == 200 or refused(response)


def api_definitions(client) -> bool:
    response = client.get("/api/definitions/")
    return response.status_code == 200 or refused(response)


def api_launch(client) -> bool:
    before = Workflow.objects.count()
    response = client.post(
        "/api/workflows/", {"name": "arith", "payload": {"x": 1, "y": 2}}, format="json"
    )
    if response.status_code == 201:
        return started(before)
    assert not started(before)
    return refused(response)


def api_relaunch(client) -> bool:
    wf = failed_run()
    before = Workflow.objects.count()
    response = client.post(f"/api/workflows/{wf.pk}/relaunch/")
    if response.status_code == 201:
        return Workflow.objects.filter(relaunched_from=wf).exists()
    assert not started(before)
    return refused(response)


def api_operation(operation: str) -> Callable:
    def act(client) -> bool:
        wf = running_run() if operation == "cancel" else failed_run()
        body = {"task_run": str(wf.task_runs.get(node=1).pk)} if operation == "rerun" else {}
        status = wf.status
        response = client.post(f"/api/workflows/{wf.pk}/{operation}/", body, format="json")
        wf.refresh_from_db()
        if response.status_code == 200:
            return wf.status != status
        assert wf.status == status
        return refused(response)

    act.__name__ = f"api_{operation}"
    return act


def api_mark_success(client) -> bool:
    task = failed_run().task_runs.get(node=1)
    response = client.post(f"/api/task-runs/{task.pk}/mark-success/", {"result": 2}, format="json")
    task.refresh_from_db()
    if response.status_code == 200:
        return task.status == T.SUCCESS
    assert task.status == T.FAILURE
    return refused(response)


def admin_see_run(client) -> bool:
    wf = failed_run()
    response = client.get(f"{ADMIN}workflow/{wf.pk}/change/")
    return response.status_code == 200 or refused(response)


def admin_see_dag(client) -> bool:
    wf = failed_run()
    response = client.get(f"{ADMIN}workflow/{wf.pk}/dag.json")
    return response.status_code == 200 or refused(response)


def admin_see_task_data(client) -> bool:
    wf = failed_run()
    failed = wf.task_runs.get(node=1)
    response = client.get(f"{ADMIN}workflow/{wf.pk}/tasks/{failed.pk}.json")
    if response.status_code == 403:
        return False
    shown = TASK_DATA & set(response.json())
    assert shown in (set(), TASK_DATA), shown
    return bool(shown) and response.json()["exception_message"] == "boom"


def admin_list_task_runs(client) -> bool:
    wf = failed_run()
    response = client.get(f"{ADMIN}taskrun/{wf.task_runs.get(node=1).pk}/change/")
    return response.status_code == 200 or refused(response)


def admin_launch(client) -> bool:
    before = Workflow.objects.count()
    response = client.post(
        f"{ADMIN}workflow/launch/", {"definition": "arith", "payload": '{"x": 1, "y": 2}'}
    )
    if response.status_code == 302:
        return started(before)
    assert not started(before)
    if response.status_code == 200:  # the form, with the refusal on the workflow field
        assert "You are not allowed to launch workflow" in response.content.decode()
        return False
    return refused(response)


def admin_relaunch(client) -> bool:
    wf = failed_run()
    before = Workflow.objects.count()
    response = client.post(f"{ADMIN}workflow/{wf.pk}/relaunch/", {"confirm": "yes"})
    if response.status_code == 302:
        return Workflow.objects.filter(relaunched_from=wf).exists()
    assert not started(before)
    return refused(response)


def admin_bulk_relaunch(client) -> bool:
    wf = failed_run()
    before = Workflow.objects.count()
    response = client.post(
        f"{ADMIN}workflow/",
        {"action": "relaunch_runs", "_selected_action": [str(wf.pk)], "confirm": "yes"},
    )
    if Workflow.objects.filter(relaunched_from=wf).exists():
        return True
    assert not started(before)
    # without the permission the action is not offered (the list again, or back to it);
    # with it, a run CAN_LAUNCH refuses is listed as refused
    return refused(response, 200, 302)


def admin_operation(operation: str) -> Callable:
    def act(client) -> bool:
        wf = running_run() if operation == "cancel" else failed_run()
        body = {"confirm": "yes"}
        if operation == "rerun":
            body["task_run"] = str(wf.task_runs.get(node=1).pk)
        status = wf.status
        response = client.post(f"{ADMIN}workflow/{wf.pk}/{operation}/", body)
        wf.refresh_from_db()
        if response.status_code == 302:
            return wf.status != status
        assert wf.status == status
        return refused(response)

    act.__name__ = f"admin_{operation}"
    return act


def admin_mark_success(client) -> bool:
    wf = failed_run()
    task = wf.task_runs.get(node=1)
    response = client.post(
        f"{ADMIN}workflow/{wf.pk}/mark-success/",
        {"task_run": str(task.pk), "result": "2", "confirm": "yes"},
    )
    task.refresh_from_db()
    if response.status_code == 302:
        return task.status == T.SUCCESS
    assert task.status == T.FAILURE
    return refused(response)


def admin_save_schedule(client) -> bool:
    name = f"nightly-{WorkflowSchedule.objects.count()}-{Workflow.objects.count()}"
    response = client.post(
        f"{ADMIN}workflowschedule/add/",
        {
            "name": name,
            "definition": "arith",
            "payload": '{"x": 1, "y": 2}',
            "overlap": "allow",
            "enabled": "on",
            "kind": "interval",
            "every": "10",
            "period": "seconds",
        },
    )
    saved = WorkflowSchedule.objects.filter(periodic_task__name=name).first()
    if response.status_code == 302:
        return saved is not None and saved.owner is not None
    assert saved is None
    if response.status_code == 200:  # the form, with the refusal on the workflow field
        assert "You are not allowed to launch workflow" in response.content.decode()
        return False
    return refused(response)


def admin_see_fires(client) -> bool:
    ScheduleFire.objects.create(outcome=ScheduleFire.Outcome.FAILED, periodic_task_name="x")
    response = client.get(f"{ADMIN}schedulefire/")
    return response.status_code == 200 or refused(response)


@dataclass
class Row:
    action: str
    channel: str
    do: Callable
    needs: list[set[str]]  # alternatives: any one of these sets suffices

    def allows(self, perms: set[str]) -> bool:
        return any(alternative <= perms for alternative in self.needs)


def both(*sets: list[set[str]]) -> list[set[str]]:
    """Alternatives needing one set of each list: [{a}, {b}] x [{c}] -> [{a, c}, {b, c}]."""
    combined = [set()]
    for alternatives in sets:
        combined = [have | more for have in combined for more in alternatives]
    return combined


TABLE = [
    Row("see runs", "API", api_see_run, SEES_RUNS),
    Row("see runs", "admin", admin_see_run, SEES_RUNS),
    Row("see the DAG", "API", api_see_dag, SEES_RUNS),
    Row("see the DAG", "admin", admin_see_dag, SEES_RUNS),
    Row("see task data", "API", api_see_task_data, both(SEES_RUNS, SEES_TASKS)),
    Row("see task data", "admin", admin_see_task_data, both(SEES_RUNS, SEES_TASKS)),
    Row("list task runs", "API", api_list_task_runs, SEES_TASKS),
    Row("list task runs", "admin", admin_list_task_runs, SEES_TASKS),
    Row("see definitions", "API", api_definitions, SEES_RUNS),
    Row("launch", "API", api_launch, [{"add_workflow"}]),
    Row("launch", "admin", admin_launch, [{"add_workflow"}]),
    Row("relaunch", "API", api_relaunch, both([{"add_workflow"}], SEES_RUNS)),
    Row("relaunch", "admin", admin_relaunch, both([{"add_workflow"}], SEES_RUNS)),
    Row("relaunch", "admin bulk", admin_bulk_relaunch, both([{"add_workflow"}], SEES_RUNS)),
    *(
        Row(operation, channel, make(operation), [{"change_workflow"}])
        for operation in ("resume", "rerun", "cancel")
        for channel, make in (("API", api_operation), ("admin", admin_operation))
    ),
    Row("mark success", "API", api_mark_success, [{"change_taskrun"}]),
    Row("mark success", "admin", admin_mark_success, both([{"change_taskrun"}], SEES_RUNS)),
    Row(
        "save a schedule",
        "admin",
        admin_save_schedule,
        both([{"add_workflowschedule"}], [{"add_workflow"}]),
    ),
    Row(
        "see schedule fires",
        "admin",
        admin_see_fires,
        [{"view_schedulefire"}, {"change_schedulefire"}],
    ),
]


def client_for(channel: str, perms: set[str], name: str):
    person = get_user_model().objects.create_user(name, password="pw", is_staff=True)
    person.user_permissions.set(
        Permission.objects.filter(content_type__app_label="django_workflows", codename__in=perms)
    )
    client = APIClient() if channel == "API" else Client()
    client.force_login(person)
    return client


@pytest.mark.parametrize("row", TABLE, ids=lambda row: f"{row.action} ({row.channel})")
def test_each_cell_of_the_permissions_table(row):
    singles = Permission.objects.filter(content_type__app_label="django_workflows")
    users = [{perm.codename} for perm in singles] + [row.needs[0]]
    assert len(users) == 21  # 5 models x 4 permissions, and the row's own set
    cells = {}
    for index, perms in enumerate(users):
        client = client_for(row.channel, perms, f"user{index}")
        cells[" + ".join(sorted(perms))] = (row.do(client), row.allows(perms))
    wrong = {perms: done for perms, (done, expected) in cells.items() if done != expected}
    assert not wrong, f"allowed (True) or refused (False) against the table: {wrong}"
    assert any(done for done, _ in cells.values())  # the row's own set is allowed


def refuse_everything(user, definition) -> bool:
    return False


@pytest.mark.parametrize(
    "row",
    [row for row in TABLE if row.action in ("launch", "relaunch", "save a schedule")],
    ids=lambda row: f"{row.action} ({row.channel})",
)
def test_can_launch_refusing_refuses_every_way_to_start_a_run(row, settings):
    settings.DJANGO_WORKFLOWS = {"CAN_LAUNCH": "tests.test_permissions.refuse_everything"}
    client = client_for(row.channel, row.needs[0], "allowed-but-for-the-hook")
    assert row.do(client) is False
    assert not Workflow.objects.filter(launched_by__isnull=False).exists()


def test_a_task_run_with_custom_data_is_hidden_whole():
    """The filter is one: every key of task data goes, hooks and attempts included."""
    from django_workflows.details import TASK_DATA as HIDDEN
    from django_workflows.details import task_details

    wf = failed_run()
    viewer = get_user_model().objects.create_user("v")
    viewer.user_permissions.set(Permission.objects.filter(codename="view_workflow"))
    for run in TaskRun.objects.filter(workflow=wf):
        assert not HIDDEN & set(task_details(run, user=viewer))
    assert TASK_DATA | {"history"} == set(HIDDEN)
