"""The REST API: endpoints, filters, errors, permissions, throttling; end to end on a worker.

Without the ``worker`` fixture nothing reaches the broker: the engine's dispatch is
recorded instead, and the worker's reports are made by calling the engine as the
worker would (``report``).
"""

import datetime
import time
import uuid

import pytest
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from django_workflows import engine, launch
from django_workflows.definitions import Definition, example_payload, registry
from django_workflows.models import TaskRun, Workflow
from django_workflows.models import TaskRunStatus as T
from django_workflows.models import WorkflowStatus as W
from tests.helpers import record_sends
from tests.testapp.models import Switch
from tests.testapp.tasks import add, gate

pytestmark = pytest.mark.django_db(transaction=True)

READ = ["view_workflow", "view_taskrun"]
ALL = [*READ, "add_workflow", "change_workflow", "change_taskrun"]


@pytest.fixture(autouse=True)
def sent(request, monkeypatch):
    """Task runs handed to the broker (recorded, not sent), unless a test needs a broker."""
    if {"worker", "broker_down"} & set(request.fixturenames):
        return None
    return record_sends(monkeypatch)


def make_user(username: str, codenames: list[str]) -> User:
    user = User.objects.create_user(username, password="secret")
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="django_workflows", codename__in=codenames
        )
    )
    return user


def client_for(user: User | None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def api():
    """A user with every permission of the app, logged in (session)."""
    return client_for(make_user("operator", ALL))


@pytest.fixture
def viewer():
    return client_for(make_user("viewer", READ))


def report(wf: Workflow, node: int, value=None, error: Exception | None = None) -> None:
    """What the worker reports when it runs node ``node`` of ``wf``."""
    run = wf.task_runs.get(node=node)
    assert engine.task_started(str(run.pk), str(wf.pk), "worker-1")
    if error is None:
        engine.task_succeeded(str(run.pk), str(wf.pk), node, value)
    else:
        engine.task_failed(str(run.pk), error, "Traceback (most recent call last):\n...")


def succeeded_arith() -> Workflow:
    """arith(1, 2): add -> [add 1, add 2] -> tsum = 9."""
    wf = launch("arith", {"x": 1, "y": 2})
    for node, value in [(0, 3), (1, 4), (2, 5), (3, 9)]:
        report(wf, node, value)
    wf.refresh_from_db()
    assert wf.status == W.SUCCESS
    return wf


def failed_breaks() -> Workflow:
    """breaks: add(1, 1) -> fail -> add(1); the second node fails."""
    wf = launch("breaks", {})
    report(wf, 0, 2)
    report(wf, 1, error=ValueError("boom"))
    wf.refresh_from_db()
    assert wf.status == W.FAILURE
    return wf


def until(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise TimeoutError(f"Timed out waiting for {what}")


# -- permissions -------------------------------------------------------------------------

ID = "00000000-0000-0000-0000-000000000001"
READS = [
    "/api/workflows/",
    f"/api/workflows/{ID}/",
    f"/api/workflows/{ID}/dag/",
    "/api/task-runs/",
    f"/api/task-runs/{ID}/",
    "/api/definitions/",
    "/api/definitions/arith/",
]
OPERATIONS = [
    f"/api/workflows/{ID}/resume/",
    f"/api/workflows/{ID}/rerun/",
    f"/api/workflows/{ID}/relaunch/",
    f"/api/workflows/{ID}/cancel/",
    f"/api/task-runs/{ID}/mark-success/",
]


@pytest.mark.parametrize(
    "method,url",
    [("get", url) for url in READS] + [("post", u) for u in ["/api/workflows/"] + OPERATIONS],
)
def test_anonymous_requests_are_refused(method, url):
    response = getattr(APIClient(), method)(url, {}, format="json")
    assert response.status_code in (401, 403)
    assert "credentials were not provided" in response.json()["detail"]


def test_token_authentication_works_and_a_bad_token_is_refused():
    user = make_user("robot", ALL)
    token = Token.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    response = client.post(
        "/api/workflows/", {"name": "arith", "payload": {"x": 1, "y": 2}}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["launched_by_username"] == "robot"
    assert client.get("/api/workflows/").json()["count"] == 1

    client.credentials(HTTP_AUTHORIZATION="Token nope")
    refused = client.get("/api/workflows/")
    # 401 when the project lists TokenAuthentication first; the example lists sessions first
    assert refused.status_code in (401, 403) and refused.json()["detail"] == "Invalid token."


def test_a_view_only_user_reads_everything_but_cannot_launch_or_operate(viewer):
    failed = failed_breaks()
    failed_task = failed.task_runs.get(node=1)
    for url in [
        "/api/workflows/",
        f"/api/workflows/{failed.pk}/",
        f"/api/workflows/{failed.pk}/dag/",
        "/api/task-runs/",
        f"/api/task-runs/{failed_task.pk}/",
        "/api/definitions/",
        "/api/definitions/arith/",
    ]:
        assert viewer.get(url).status_code == 200, url

    refused = [
        ("/api/workflows/", {"name": "arith", "payload": {"x": 1, "y": 2}}),
        (f"/api/workflows/{failed.pk}/resume/", {}),
        (f"/api/workflows/{failed.pk}/rerun/", {"task_run": str(failed_task.pk)}),
        (f"/api/workflows/{failed.pk}/relaunch/", {}),
        (f"/api/workflows/{failed.pk}/cancel/", {}),
        (f"/api/task-runs/{failed_task.pk}/mark-success/", {"result": 1}),
    ]
    for url, body in refused:
        response = viewer.post(url, body, format="json")
        assert response.status_code == 403, url
        assert "permission" in response.json()["detail"]
    assert Workflow.objects.count() == 1
    failed.refresh_from_db()
    assert failed.status == W.FAILURE
    assert viewer.get("/api/definitions/arith/").json()["can_launch"] is False


def test_reading_needs_the_view_permission():
    client = client_for(make_user("launcher", ["add_workflow"]))
    assert client.get("/api/workflows/").status_code == 403
    assert client.get("/api/definitions/").status_code == 403
    assert client.get("/api/task-runs/").status_code == 403
    # launching needs add only
    response = client.post(
        "/api/workflows/", {"name": "arith", "payload": {"x": 1, "y": 2}}, format="json"
    )
    assert response.status_code == 201


def test_task_runs_use_the_task_run_permissions():
    client = client_for(make_user("runs-only", ["view_workflow", "change_workflow"]))
    failed = failed_breaks()
    assert client.get("/api/task-runs/").status_code == 403
    task = failed.task_runs.get(node=1)
    response = client.post(f"/api/task-runs/{task.pk}/mark-success/", {}, format="json")
    assert response.status_code == 403
    assert client.post(f"/api/workflows/{failed.pk}/resume/", {}, format="json").status_code == 200


def only_arith(user, definition) -> bool:
    """A CAN_LAUNCH hook: only arith may be launched."""
    return definition.name == "arith"


def test_the_can_launch_hook_decides_per_definition(api, settings):
    old = failed_breaks()
    settings.DJANGO_WORKFLOWS = {"CAN_LAUNCH": "tests.api.test_views.only_arith"}

    refused = api.post("/api/workflows/", {"name": "breaks"}, format="json")
    assert refused.status_code == 403
    assert refused.json()["detail"] == "You are not allowed to launch workflow 'breaks'."
    assert api.post(f"/api/workflows/{old.pk}/relaunch/").status_code == 403
    ok = api.post("/api/workflows/", {"name": "arith", "payload": {"x": 1, "y": 2}}, format="json")
    assert ok.status_code == 201
    can = {d["name"]: d["can_launch"] for d in api.get("/api/definitions/").json()}
    assert can["arith"] is True and can["breaks"] is False
    assert Workflow.objects.count() == 2


def test_relaunch_needs_add_workflow_as_a_launch_does():
    old = failed_breaks()
    changer = client_for(make_user("changer", ["view_workflow", "change_workflow"]))
    assert changer.post("/api/workflows/", {"name": "breaks"}, format="json").status_code == 403
    assert changer.post(f"/api/workflows/{old.pk}/relaunch/").status_code == 403
    assert Workflow.objects.count() == 1

    launcher = client_for(make_user("launcher", ["view_workflow", "add_workflow"]))
    assert launcher.post(f"/api/workflows/{old.pk}/relaunch/").status_code == 201
    assert Workflow.objects.filter(relaunched_from=old).count() == 1


TASK_DATA = {"args", "kwargs", "result", "exception_type", "exception_message", "traceback"}


def test_the_run_detail_shows_task_data_only_with_view_taskrun():
    wf = failed_breaks()
    viewer = client_for(make_user("runs-viewer", ["view_workflow"]))
    body = viewer.get(f"/api/workflows/{wf.pk}/").json()
    for task_run in body["task_runs"]:
        assert not (TASK_DATA | {"history"}) & set(task_run), task_run
        assert {"id", "node", "task", "status", "started_at", "finished_at"} <= set(task_run)
    assert body["edges"] == [{"source": 0, "target": 1}, {"source": 1, "target": 2}]
    assert "boom" not in viewer.get(f"/api/workflows/{wf.pk}/").content.decode()

    reader = client_for(make_user("reader", ["view_workflow", "view_taskrun"]))
    failed = reader.get(f"/api/workflows/{wf.pk}/").json()["task_runs"][1]
    assert TASK_DATA | {"history"} <= set(failed) and failed["exception_message"] == "boom"


# -- launch --------------------------------------------------------------------------------


def test_launch_returns_201_with_the_run_its_task_runs_and_edges(api, sent):
    response = api.post(
        "/api/workflows/", {"name": "arith", "payload": {"x": 2, "y": 3}}, format="json"
    )

    assert response.status_code == 201
    body = response.json()
    wf = Workflow.objects.get()
    assert body["id"] == str(wf.pk) and body["name"] == "arith"
    assert body["payload"] == {"x": 2, "y": 3}
    assert body["status"] == W.RUNNING
    assert body["launched_by_username"] == "operator"
    assert [(r["node"], r["task"].rsplit(".", 1)[1]) for r in body["task_runs"]] == [
        (0, "add"),
        (1, "add"),
        (2, "add"),
        (3, "tsum"),
    ]
    assert body["edges"] == [
        {"source": 0, "target": 1},
        {"source": 0, "target": 2},
        {"source": 1, "target": 3},
        {"source": 2, "target": 3},
    ]
    assert [run.node for run in sent] == [0]


def test_a_repeated_idempotency_key_returns_200_with_the_first_run(api):
    body = {"name": "arith", "payload": {"x": 1, "y": 2}, "idempotency_key": "nightly-1"}
    first = api.post("/api/workflows/", body, format="json")
    again = api.post("/api/workflows/", body, format="json")
    other = api.post("/api/workflows/", {**body, "idempotency_key": "nightly-2"}, format="json")

    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 201)
    assert again.json()["id"] == first.json()["id"] != other.json()["id"]
    assert Workflow.objects.count() == 2


def test_an_invalid_payload_is_400_listing_every_error_with_its_path(api):
    response = api.post(
        "/api/workflows/",
        {"name": "arith", "payload": {"x": "two", "y": -1, "extra": True}},
        format="json",
    )

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_payload"
    assert body["detail"].startswith("The payload does not match the schema of workflow 'arith'")
    assert {e["path"] for e in body["errors"]} == {"", "x", "y"}
    assert any("'two' is not of type 'integer'" in e["message"] for e in body["errors"])
    assert not Workflow.objects.exists()


def test_an_unknown_workflow_is_404_naming_the_registered_ones(api):
    response = api.post("/api/workflows/", {"name": "nope"}, format="json")

    assert response.status_code == 404
    body = response.json()
    assert body["code"] == "unknown_workflow"
    assert "'nope'" in body["detail"] and "arith" in body["available"]


@pytest.mark.parametrize(
    "body,path",
    [
        ({}, "name"),
        ({"name": 12, "payload": {"x": 1, "y": 1}}, None),  # 12 -> "12": an unknown name, 404
        ({"name": ["arith"]}, "name"),
        ({"name": "arith", "payload": None}, "payload"),
        ({"name": "arith", "idempotency_key": "k" * 201}, "idempotency_key"),
        ({"name": "breaks", "payload": {"message": "a\x00b"}}, "payload"),
        ([1, 2], ""),
    ],
)
def test_malformed_launch_bodies_are_client_errors(api, body, path):
    response = api.post("/api/workflows/", body, format="json")

    if path is None:
        assert response.status_code == 404
    else:
        assert response.status_code == 400
        assert response.json()["code"] == "invalid"
        assert [e["path"] for e in response.json()["errors"]] == [path]
    assert not Workflow.objects.exists()


def test_bodies_that_are_not_json_or_nest_too_deep_are_refused(api):
    broken = api.post("/api/workflows/", "{not json", content_type="application/json")
    assert broken.status_code == 400 and "JSON parse error" in broken.json()["detail"]
    form = api.post("/api/workflows/", {"name": "arith"}, format="multipart")
    assert form.status_code == 415
    for depth in (200, 100_000):  # Python's recursion limit must not make it a 500
        deep = '{"name": "breaks", "payload": {"a": ' + "[" * depth + "]" * depth + "}}"
        response = api.post("/api/workflows/", deep, content_type="application/json")
        assert response.status_code == 400
        assert response.json()["detail"] == "JSON nested more than 100 levels deep is refused."
    assert not Workflow.objects.exists()


def test_a_payload_the_definition_cannot_build_from_is_400(api):
    # breaks has no schema, and its factory calls payload.get()
    response = api.post("/api/workflows/", {"name": "breaks", "payload": [1]}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_payload"
    assert "could not be built from this payload: AttributeError" in body["detail"]
    assert not Workflow.objects.exists()


def test_an_unreachable_broker_is_503_and_the_run_is_recorded_as_failed(api, broker_down):
    response = api.post(
        "/api/workflows/", {"name": "arith", "payload": {"x": 1, "y": 2}}, format="json"
    )

    assert response.status_code == 503
    assert response.json()["code"] == "broker_unavailable"
    assert "broker could not be reached" in response.json()["detail"]
    wf = Workflow.objects.get()
    assert wf.status == W.FAILURE and "broker" in wf.error
    assert response.json()["workflow"] == str(wf.pk)  # what to resume when the broker is back


# -- reading -------------------------------------------------------------------------------


def test_the_list_is_paginated_newest_first(api):
    ids = [str(launch("arith", {"x": i, "y": 0}).pk) for i in range(3)]

    page = api.get("/api/workflows/", {"page_size": 2}).json()
    assert page["count"] == 3
    assert [r["id"] for r in page["results"]] == ids[::-1][:2]
    assert page["previous"] is None and "page=2" in page["next"]
    last = api.get(page["next"]).json()
    assert [r["id"] for r in last["results"]] == [ids[0]] and last["next"] is None
    assert "task_runs" not in last["results"][0]
    assert api.get("/api/workflows/", {"page": 9}).status_code == 404


def test_workflow_filters_search_and_ordering(api):
    user = User.objects.get(username="operator")
    first = launch("arith", {"x": 1, "y": 2}, user=user, idempotency_key="monday")
    failed = failed_breaks()
    done = succeeded_arith()
    Workflow.objects.filter(pk=first.pk).update(created="2020-01-01T00:00:00Z")

    def ids(**params):
        response = api.get("/api/workflows/", params)
        assert response.status_code == 200, response.json()
        return {r["id"] for r in response.json()["results"]}

    assert ids(name="arith") == {str(first.pk), str(done.pk)}
    assert ids(status=W.FAILURE) == {str(failed.pk)}
    assert ids(status=[W.FAILURE, W.SUCCESS]) == {str(failed.pk), str(done.pk)}
    assert ids(launched_by=user.pk) == {str(first.pk)}
    assert ids(launched_by=user.pk + 1000) == set()  # an unknown user: nothing, and no error
    assert ids(created_before="2021-01-01T00:00:00Z") == {str(first.pk)}
    assert ids(created_after="2021-01-01T00:00:00Z") == {str(failed.pk), str(done.pk)}
    # valid date-times beyond Python's range in UTC (year 0, year 10000) are clamped
    everything = {str(first.pk), str(failed.pk), str(done.pk)}
    assert ids(created_after="0001-01-01T00:00:00+14:00") == everything
    assert ids(created_before="9999-12-31T23:59:59-14:00") == everything
    assert ids(search="monday") == {str(first.pk)}
    assert ids(search="brea") == {str(failed.pk)}
    ordered = api.get("/api/workflows/", {"ordering": "created"}).json()["results"]
    assert ordered[0]["id"] == str(first.pk)
    ordered = api.get("/api/workflows/", {"ordering": "name"}).json()["results"]
    assert [r["name"] for r in ordered] == ["arith", "arith", "breaks"]


@pytest.mark.parametrize(
    "params,path",
    [
        ({"status": "bogus"}, "status"),
        ({"launched_by": "abc"}, "launched_by"),
        ({"launched_by": str(10**30)}, "launched_by"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"name": "a\x00b"}, "name"),
    ],
)
def test_invalid_filter_values_are_400(api, params, path):
    response = api.get("/api/workflows/", params)
    assert response.status_code == 400
    assert [e["path"] for e in response.json()["errors"]] == [path]


def test_the_detail_has_task_runs_with_errors_attempts_and_results(api):
    wf = failed_breaks()

    body = api.get(f"/api/workflows/{wf.pk}/").json()

    assert body["status"] == W.FAILURE and body["tasks_failed"] == 1
    first, failed, skipped = body["task_runs"]
    assert (first["status"], first["result"], first["attempts"]) == (T.SUCCESS, 2, 1)
    assert first["worker"] == "worker-1" and first["started_at"] and first["finished_at"]
    assert (failed["status"], failed["exception_type"]) == (T.FAILURE, "ValueError")
    assert failed["exception_message"] == "boom" and failed["traceback"].startswith("Traceback")
    assert [(h["attempt"], h["status"]) for h in failed["history"]] == [(1, T.FAILURE)]
    assert skipped["status"] == T.UPSTREAM_FAILED and skipped["history"] == []
    assert body["edges"] == [{"source": 0, "target": 1}, {"source": 1, "target": 2}]


def test_task_run_options_leave_out_the_engines_own(api):
    from celery import chord

    from django_workflows import launch_canvas

    wf = launch_canvas(chord([add.si(1, 1).set(priority=3)], add.si(2, 2)))
    assert "django_workflows_chord" in wf.task_runs.get(node=0).options

    body = api.get(f"/api/workflows/{wf.pk}/").json()
    assert [run["options"] for run in body["task_runs"]] == [{"priority": 3}, {}]


def test_results_only_celery_json_carries_come_out_as_json(api):
    """Celery's JSON carries bytes (any), datetimes, UUIDs; the API's JSON shows them."""
    wf = launch("breaks", {})
    report(wf, 0, {"raw": b"\xff", "at": datetime.date(2024, 1, 2), "id": uuid.UUID(int=1)})

    response = api.get(f"/api/workflows/{wf.pk}/")

    assert response.status_code == 200
    assert response.json()["task_runs"][0]["result"] == {
        "raw": "\\xff",
        "at": "2024-01-02",
        "id": "00000000-0000-0000-0000-000000000001",
    }


def test_the_detail_costs_a_fixed_number_of_queries(django_assert_max_num_queries):
    wf = launch("arith", {"x": 1, "y": 2})
    client = APIClient()
    client.force_authenticate(User.objects.create_superuser("root"))
    # the run, its task runs, their attempts, their django-celery-results rows (links), the edges
    with django_assert_max_num_queries(5):
        assert client.get(f"/api/workflows/{wf.pk}/").status_code == 200


def test_lists_cost_a_fixed_number_of_queries(django_assert_max_num_queries):
    for _ in range(5):
        failed_breaks()
    client = APIClient()
    client.force_authenticate(User.objects.create_superuser("root"))
    # PostgreSQL asks the planner's estimate first (django_workflows.lists): one more.
    estimate = 1 if connection.vendor == "postgresql" else 0
    with django_assert_max_num_queries(2 + estimate):  # count, page
        assert len(client.get("/api/workflows/").json()["results"]) == 5
    # count, page, attempts, result rows (links)
    with django_assert_max_num_queries(4 + estimate):
        assert len(client.get("/api/task-runs/").json()["results"]) == 15


@pytest.mark.parametrize("width", [2, 50])
def test_the_dag_is_nodes_and_edges_in_three_queries(django_assert_num_queries, width):
    from celery import chord

    from django_workflows import launch_canvas
    from tests.testapp.tasks import tsum

    wf = launch_canvas(chord([add.s(i, i) for i in range(width)], tsum.s()) | add.s(1))
    client = APIClient()
    client.force_authenticate(User.objects.create_superuser("root"))

    with django_assert_num_queries(3):  # the run, its nodes, its edges
        response = client.get(f"/api/workflows/{wf.pk}/dag/")

    body = response.json()
    assert body["id"] == str(wf.pk) and body["status"] == W.RUNNING
    assert body["finished"] is False
    assert body["progress"] == {"total": width + 2, "finished": 0, "succeeded": 0, "failed": 0}
    assert len(body["nodes"]) == width + 2
    assert body["nodes"][0] == {
        "id": str(wf.task_runs.get(node=0).pk),
        "node": 0,
        "task": add.name,
        "label": "add",
        "status": T.QUEUED,
        "attempts": 0,
        "hook": False,
        "marked_success": False,
    }
    assert len(body["edges"]) == width + 1
    assert {"source": width, "target": width + 1} in body["edges"]


def test_the_api_and_the_admin_show_one_dag_hooks_flagged():
    wf = launch("hooked", {})
    report(wf, 0, 2)
    report(wf, 1, 3)  # success: the on_success hook is recorded as a task run
    hook = wf.task_runs.get(is_hook=True)
    client = APIClient()
    client.force_login(User.objects.create_superuser("root"))

    body = client.get(f"/api/workflows/{wf.pk}/dag/").json()

    assert body == client.get(f"/admin/django_workflows/workflow/{wf.pk}/dag.json").json()
    assert body["name"] == "hooked" and body["finished"] is True
    assert [(n["node"], n["hook"]) for n in body["nodes"]] == [(0, False), (1, False), (2, True)]
    assert body["nodes"][2]["id"] == str(hook.pk)
    assert body["edges"] == [{"source": 0, "target": 1}]  # a hook is not a node of the DAG
    components = client.get("/api/schema/", {"format": "json"}).json()["components"]["schemas"]
    assert components["Dag"]["properties"].keys() == body.keys()
    assert components["DagProgress"]["properties"].keys() == body["progress"].keys()
    assert components["DagNode"]["properties"].keys() == body["nodes"][0].keys()


def test_the_api_and_the_admin_show_one_task_run_shape(settings):
    from django_celery_results.models import TaskResult

    settings.DJANGO_WORKFLOWS = {"FLOWER_URL": "http://flower.local:5555/"}
    wf = failed_breaks()
    failed = wf.task_runs.get(node=1)
    stored = TaskResult.objects.create(task_id=str(failed.pk), status="FAILURE")
    client = APIClient()
    client.force_login(User.objects.create_superuser("root"))

    body = client.get(f"/api/task-runs/{failed.pk}/").json()
    admin = client.get(f"/admin/django_workflows/workflow/{wf.pk}/tasks/{failed.pk}.json").json()

    def without_dates(value):  # the admin shows milliseconds, the API microseconds
        if isinstance(value, dict):
            return {k: without_dates(v) for k, v in value.items() if not k.endswith("_at")}
        return [without_dates(v) for v in value] if isinstance(value, list) else value

    assert without_dates(body) == without_dates(admin)
    assert body.keys() == admin.keys() and body["history"][0].keys() == admin["history"][0].keys()
    finished = [datetime.datetime.fromisoformat(b["finished_at"]) for b in (body, admin)]
    assert all(abs(at - failed.finished_at) < datetime.timedelta(milliseconds=1) for at in finished)
    assert body["links"] == {
        "task_result": f"/admin/django_celery_results/taskresult/{stored.pk}/change/",
        "flower": f"http://flower.local:5555/task/{failed.pk}",
    }
    assert (body["status_display"], body["input_from"]) == ("Failure", 0)
    assert body["duration"] is not None and body["history"][0]["status"] == T.FAILURE
    # the same in the run's detail and in the list (their links looked up in one query)
    assert client.get(f"/api/workflows/{wf.pk}/").json()["task_runs"][1] == body
    listed = client.get("/api/task-runs/", {"workflow": str(wf.pk)}).json()["results"]
    assert [r for r in listed if r["id"] == str(failed.pk)] == [body]
    others = [r for r in listed if r["id"] != str(failed.pk)]
    assert len(others) == 2 and all(
        r["links"] == {"flower": f"http://flower.local:5555/task/{r['id']}"} for r in others
    )
    components = client.get("/api/schema/", {"format": "json"}).json()["components"]["schemas"]
    assert components["TaskRun"]["properties"].keys() == body.keys()
    assert components["TaskAttempt"]["properties"].keys() == body["history"][0].keys()
    assert components["TaskRunLinks"]["properties"].keys() == body["links"].keys()


@pytest.mark.parametrize(
    "url",
    [
        "/api/workflows/not-a-uuid/",
        f"/api/workflows/{uuid.uuid4()}/",
        f"/api/workflows/{uuid.uuid4()}/dag/",
        "/api/task-runs/12/",
        f"/api/task-runs/{uuid.uuid4()}/",
        "/api/definitions/nope/",
    ],
)
def test_unknown_or_malformed_ids_are_404(api, url):
    response = api.get(url)
    assert response.status_code == 404
    assert response.json()["detail"]


@pytest.mark.parametrize(
    "url",
    [f"/api/workflows/{ID}/resume/", "/api/workflows/x/cancel/", "/api/task-runs/x/mark-success/"],
)
def test_operations_on_unknown_ids_are_404(api, url):
    assert api.post(url, {}, format="json").status_code == 404


def test_task_run_filters(api):
    failed = failed_breaks()
    done = succeeded_arith()

    def nodes(**params):
        response = api.get("/api/task-runs/", params)
        assert response.status_code == 200
        return [(r["workflow"], r["node"]) for r in response.json()["results"]]

    assert nodes(workflow=str(failed.pk)) == [(str(failed.pk), n) for n in (0, 1, 2)]
    assert nodes(status=T.FAILURE) == [(str(failed.pk), 1)]
    assert nodes(status=[T.FAILURE, T.UPSTREAM_FAILED]) == [
        (str(failed.pk), 1),
        (str(failed.pk), 2),
    ]
    assert nodes(task="tests.testapp.tasks.tsum") == [(str(done.pk), 3)]
    assert len(nodes()) == 7
    assert api.get("/api/task-runs/", {"workflow": "nope"}).status_code == 400
    assert api.get("/api/task-runs/", {"status": "nope"}).status_code == 400


# -- operations ----------------------------------------------------------------------------


def test_resume_dry_run_returns_the_plan_then_resume_reopens_the_run(api, sent):
    wf = failed_breaks()
    url = f"/api/workflows/{wf.pk}/resume/"

    dry = api.post(url, {"dry_run": True}, format="json")
    assert dry.status_code == 200
    plan = dry.json()
    assert plan["dry_run"] is True and plan["workflow_id"] == str(wf.pk)
    assert [(i["node"], i["status"]) for i in plan["rerun"]] == [
        (1, T.FAILURE),
        (2, T.UPSTREAM_FAILED),
    ]
    assert [i["node"] for i in plan["reused"]] == [0]
    wf.refresh_from_db()
    assert wf.status == W.FAILURE  # nothing changed

    done = api.post(url, {}, format="json")
    assert done.status_code == 200 and done.json()["dry_run"] is False
    wf.refresh_from_db()
    assert wf.status == W.RUNNING and [r.node for r in sent][-1] == 1

    again = api.post(url, {}, format="json")
    assert again.status_code == 409
    assert again.json()["code"] == "invalid_state" and again.json()["status"] == W.RUNNING
    assert "it is running" in again.json()["detail"]


def test_rerun_from_a_task_run_and_its_refusals(api):
    done = succeeded_arith()
    other = failed_breaks()
    url = f"/api/workflows/{done.pk}/rerun/"
    middle = done.task_runs.get(node=1)

    for body in [
        {},
        {"task_run": "not-a-uuid"},
        {"task_run": str(uuid.uuid4())},
        {"task_run": str(other.task_runs.get(node=0).pk)},
    ]:
        response = api.post(url, body, format="json")
        assert response.status_code == 400, body
        assert response.json()["errors"][0]["path"] == "task_run"

    dry = api.post(url, {"task_run": str(middle.pk), "dry_run": True}, format="json").json()
    assert [i["node"] for i in dry["rerun"]] == [1, 3] and dry["dry_run"] is True
    response = api.post(url, {"task_run": str(middle.pk)}, format="json")
    assert response.status_code == 200
    assert [i["node"] for i in response.json()["rerun"]] == [1, 3]
    assert [i["node"] for i in response.json()["reused"]] == [0, 2]

    running = api.post(url, {"task_run": str(middle.pk)}, format="json")
    assert running.status_code == 409 and running.json()["status"] == W.RUNNING


def test_relaunch_is_201_with_a_new_linked_run(api):
    old = succeeded_arith()
    response = api.post(f"/api/workflows/{old.pk}/relaunch/")

    assert response.status_code == 201
    new = response.json()
    assert new["id"] != str(old.pk) and new["relaunched_from"] == str(old.pk)
    assert new["payload"] == old.payload and new["launched_by_username"] == "operator"
    again = api.post(f"/api/workflows/{new['id']}/relaunch/")
    assert again.status_code == 409 and again.json()["status"] == W.RUNNING


def test_cancel_and_cancel_again(api):
    wf = launch("arith", {"x": 1, "y": 2})
    url = f"/api/workflows/{wf.pk}/cancel/"

    assert api.post(url, {"terminate": "maybe"}, format="json").status_code == 400
    response = api.post(url, {"terminate": True}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == W.CANCELED
    assert {r["status"] for r in body["task_runs"]} == {T.CANCELED}

    again = api.post(url, {}, format="json")
    assert again.status_code == 409 and again.json()["status"] == W.CANCELED


def test_mark_success_continues_downstream(api, sent):
    wf = failed_breaks()
    failed = wf.task_runs.get(node=1)
    url = f"/api/task-runs/{failed.pk}/mark-success/"

    response = api.post(url, {"result": {"fixed": [1, 2]}}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == T.SUCCESS and body["marked_success"] is True
    assert body["result"] == {"fixed": [1, 2]}
    assert [(h["attempt"], h["status"]) for h in body["history"]] == [(1, T.FAILURE)]
    assert sent[-1].node == 2
    again = api.post(url, {"result": 1}, format="json")
    assert again.status_code == 409 and again.json()["status"] == T.SUCCESS


# -- throttling ----------------------------------------------------------------------------


def test_throttling_is_off_by_default_and_follows_the_scope_rate(api, settings):
    cache.clear()
    for _ in range(20):
        assert api.get("/api/workflows/").status_code == 200

    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"django_workflows": "3/minute"},
    }
    try:
        codes = [api.get("/api/definitions/").status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        assert "throttled" in api.get("/api/workflows/").json()["detail"]
    finally:
        cache.clear()


# -- definitions ---------------------------------------------------------------------------


def test_definitions_show_schema_example_payload_and_shape(api):
    body = api.get("/api/definitions/").json()
    by_name = {d["name"]: d for d in body}
    assert {"arith", "breaks", "etl"} <= by_name.keys()

    arith = by_name["arith"]
    assert arith["description"] == "Adds, fans out, sums."
    assert arith["payload_schema"]["required"] == ["x", "y"]
    assert arith["example_payload"] == {"x": 0, "y": 0}
    assert [n["node"] for n in arith["shape"]["nodes"]] == [0, 1, 2, 3]
    assert arith["shape"]["nodes"][3]["task"] == "tests.testapp.tasks.tsum"
    assert arith["shape"]["edges"] == [
        {"source": 0, "target": 1},
        {"source": 0, "target": 2},
        {"source": 1, "target": 3},
        {"source": 2, "target": 3},
    ]
    assert arith["shape_error"] is None and arith["can_launch"] is True
    # defaults are used
    assert by_name["etl"]["example_payload"] == {
        "source": "s3://bucket/numbers.csv",
        "target": "warehouse.numbers",
    }
    assert api.get("/api/definitions/breaks/").json()["payload_schema"] is None


@pytest.fixture
def registered():
    names = []

    def register(definition: Definition) -> Definition:
        names.append(definition.name)
        return registry.register(definition)

    yield register
    for name in names:
        registry.unregister(name)


def test_a_definition_whose_factory_fails_has_no_shape_and_says_why(api, registered):
    registered(Definition("needs.key", lambda payload: add.s(payload["missing"], 1)))

    body = api.get("/api/definitions/needs.key/").json()

    assert body["shape"] is None
    assert body["shape_error"] == "KeyError: 'missing'"


@pytest.mark.parametrize(
    "schema,example",
    [
        (None, {}),
        ({"type": "object"}, {}),
        ({"required": ["a"]}, {"a": None}),
        (
            {
                "type": "object",
                "properties": {
                    "n": {"type": "integer", "minimum": 3},
                    "s": {"type": "string", "minLength": 2},
                    "flag": {"type": "boolean", "default": True},
                    "kind": {"enum": ["a", "b"]},
                    "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                    "opt": {"type": ["null", "number"], "exclusiveMaximum": -1},
                    "skipped": {"type": "string"},
                },
                "required": ["n", "s", "kind", "tags", "opt"],
            },
            {"n": 3, "s": "xx", "kind": "a", "tags": [""], "opt": -2, "flag": True},
        ),
    ],
)
def test_example_payloads_follow_the_schema(schema, example):
    assert example_payload(schema) == example


# -- the schema ----------------------------------------------------------------------------


def test_the_openapi_schema_documents_every_endpoint_and_its_errors(api):
    schema = api.get("/api/schema/", {"format": "json"}).json()
    paths = schema["paths"]
    operations = {(path, method) for path, ops in paths.items() for method in ops}

    assert operations >= {
        ("/api/workflows/", "get"),
        ("/api/workflows/", "post"),
        ("/api/workflows/{id}/", "get"),
        ("/api/workflows/{id}/dag/", "get"),
        ("/api/workflows/{id}/resume/", "post"),
        ("/api/workflows/{id}/rerun/", "post"),
        ("/api/workflows/{id}/relaunch/", "post"),
        ("/api/workflows/{id}/cancel/", "post"),
        ("/api/task-runs/", "get"),
        ("/api/task-runs/{id}/", "get"),
        ("/api/task-runs/{id}/mark-success/", "post"),
        ("/api/definitions/", "get"),
        ("/api/definitions/{name}/", "get"),
    }
    for path, method in operations - {("/api/schema/", "get")}:
        responses = paths[path][method]["responses"]
        assert {"401", "403"} <= responses.keys(), (path, method)
    launch_op = paths["/api/workflows/"]["post"]
    assert {"200", "201", "400", "404", "503"} <= launch_op["responses"].keys()
    ref = launch_op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/Launch")
    for action in ("resume", "rerun", "cancel"):
        assert {"400", "404", "409", "503"} <= paths[f"/api/workflows/{{id}}/{action}/"]["post"][
            "responses"
        ].keys()
    assert "409" in paths["/api/task-runs/{id}/mark-success/"]["post"]["responses"]


# -- end to end, on the real worker ---------------------------------------------------------


@pytest.mark.worker
def test_a_launch_runs_on_the_worker_and_its_results_show(api, worker):
    response = api.post(
        "/api/workflows/", {"name": "arith", "payload": {"x": 2, "y": 3}}, format="json"
    )
    assert response.status_code == 201
    url = f"/api/workflows/{response.json()['id']}/"

    body = until(lambda: (b := api.get(url).json())["status"] == W.SUCCESS and b, what="success")

    assert body["result"] == 13
    assert [r["result"] for r in body["task_runs"]] == [5, 6, 7, 13]
    assert {r["status"] for r in body["task_runs"]} == {T.SUCCESS}
    assert all(r["worker"].startswith("worker-") for r in body["task_runs"])


@pytest.mark.worker
def test_a_failure_shows_and_resume_brings_the_run_to_success(api, worker, registered):
    registered(Definition("api_gated", lambda payload: add.s(1, 1) | gate.s() | add.s(10)))
    response = api.post("/api/workflows/", {"name": "api_gated"}, format="json")
    url = f"/api/workflows/{response.json()['id']}/"

    body = until(lambda: (b := api.get(url).json())["status"] == W.FAILURE and b, what="failure")
    first, gated, last = body["task_runs"]
    assert first["status"] == T.SUCCESS and first["result"] == 2
    assert (gated["status"], gated["exception_type"]) == (T.FAILURE, "RuntimeError")
    assert gated["exception_message"] == "gate gate is closed"
    assert 'raise RuntimeError(f"gate {key} is closed")' in gated["traceback"]
    assert last["status"] == T.UPSTREAM_FAILED
    dag = api.get(f"{url}dag/").json()
    assert [n["status"] for n in dag["nodes"]] == [T.SUCCESS, T.FAILURE, T.UPSTREAM_FAILED]

    Switch.objects.create(key="gate")
    plan = api.post(f"{url}resume/", {}, format="json").json()
    assert [i["node"] for i in plan["rerun"]] == [1, 2]

    body = until(lambda: (b := api.get(url).json())["status"] == W.SUCCESS and b, what="success")
    assert body["result"] == 12
    gated = body["task_runs"][1]
    assert gated["attempts"] == 2 and gated["exception_message"] == ""
    assert [(h["attempt"], h["exception_message"]) for h in gated["history"]] == [
        (1, "gate gate is closed")
    ]
    assert TaskRun.objects.filter(workflow_id=body["id"], status=T.SUCCESS).count() == 3


def test_runs_filter_by_schedule_and_by_periodic(api, monkeypatch):
    from django_workflows.forms import WorkflowScheduleForm
    from django_workflows.schedules import fire

    monkeypatch.setattr("django_workflows.engine.progress.dispatch", lambda runs, results: None)
    form = WorkflowScheduleForm(
        data={
            "name": "nightly",
            "definition": "arith",
            "payload": '{"x": 1, "y": 2}',
            "overlap": "allow",
            "enabled": "on",
            "kind": "interval",
            "every": "10",
            "period": "seconds",
        }
    )
    assert form.is_valid(), form.errors
    schedule = form.save()
    scheduled = fire("arith", {"x": 1, "y": 2}, periodic_task_name="nightly")
    by_hand = str(launch("arith", {"x": 1, "y": 2}).pk)

    def ids(**params):
        return [r["id"] for r in api.get("/api/workflows/", params).json()["results"]]

    assert ids(schedule=schedule.pk) == [scheduled]
    assert ids(periodic="true") == [scheduled]
    assert ids(periodic="false") == [by_hand]
