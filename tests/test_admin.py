"""The admin: runs list, run page (DAG JSON, details, operations), launch page, permissions.

Runs are moved through their states in process (the broker send recorded):
these tests are about the pages; the browser tests drive a real worker.
"""

import pytest
from celery import chain
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from django_workflows import engine, launch_canvas
from django_workflows.models import TaskRun, Workflow
from django_workflows.models import TaskRunStatus as T
from django_workflows.models import WorkflowStatus as W
from tests.helpers import dangling
from tests.testapp.tasks import add, fail

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("sent")]

ADMIN = "/admin/django_workflows/workflow/"


def user(username: str, *perms: str):
    person = get_user_model().objects.create_user(username, password="pw", is_staff=True)
    for codename in perms:
        person.user_permissions.add(Permission.objects.get(codename=codename))
    return person


@pytest.fixture
def operator(client):
    perms = ("view_workflow", "change_workflow", "add_workflow", "view_taskrun", "change_taskrun")
    client.force_login(user("op", *perms))
    return client


@pytest.fixture
def viewer(client):
    client.force_login(user("viewer", "view_workflow"))
    return client


def failed_run() -> Workflow:
    """add(1, 1) succeeded, fail() failed, add(1) upstream_failed."""
    wf = launch_canvas(chain(add.s(1, 1), fail.s(), add.s(1)))
    first, second, _ = wf.task_runs.order_by("node")
    engine.task_started(str(first.pk), str(wf.pk), "w1")
    engine.task_succeeded(str(first.pk), str(wf.pk), 0, 2)
    engine.task_started(str(second.pk), str(wf.pk), "w1")
    engine.task_failed(str(second.pk), ValueError("disk full"), "Traceback (most recent...)")
    wf.refresh_from_db()
    assert wf.status == W.FAILURE
    return wf


def test_the_runs_list_shows_status_as_text_and_progress_and_filters(operator):
    bad = failed_run()
    good = launch_canvas(add.s(1, 1), name="other")

    page = operator.get(ADMIN).content.decode()
    assert '<span class="dw-badge dw-failure">Failure</span>' in page
    assert "3/3" in page and "(1 failed)" in page
    assert "Launch a workflow" in page
    only_failed = operator.get(ADMIN, {"status__exact": "failure"}).content.decode()
    assert str(bad.pk) in only_failed and str(good.pk) not in only_failed
    assert str(good.pk) in operator.get(ADMIN, {"q": str(good.pk)}).content.decode()


def test_the_run_page_has_the_dag_and_the_buttons_its_state_allows(operator):
    wf = failed_run()
    page = operator.get(f"{ADMIN}{wf.pk}/change/").content.decode()
    assert 'id="dw-dag"' in page and "vendor/dagre-3.1.3.min.js" in page
    assert ">Resume<" in page and ">Relaunch<" in page and ">Cancel<" not in page

    dag = operator.get(f"{ADMIN}{wf.pk}/dag.json").json()
    assert dag["status"] == "failure" and dag["finished"] is True
    assert [(n["node"], n["label"], n["status"]) for n in dag["nodes"]] == [
        (0, "add", "success"),
        (1, "fail", "failure"),
        (2, "add", "upstream_failed"),
    ]
    assert dag["edges"] == [{"source": 0, "target": 1}, {"source": 1, "target": 2}]
    assert dag["progress"] == {"total": 3, "finished": 3, "succeeded": 1, "failed": 1}

    failed = wf.task_runs.get(node=1)
    details = operator.get(f"{ADMIN}{wf.pk}/tasks/{failed.pk}.json").json()
    assert details["exception_type"] == "ValueError"
    assert details["exception_message"] == "disk full"
    assert details["traceback"].startswith("Traceback")
    assert details["history"][0]["status"] == "failure" and details["args"] == []
    assert details["worker"] == "w1" and details["duration"] is not None
    assert "flower" not in details["links"]


def test_task_details_link_to_flower_when_configured(operator, settings):
    settings.DJANGO_WORKFLOWS = {"FLOWER_URL": "http://flower.local:5555/"}
    wf = failed_run()
    failed = wf.task_runs.get(node=1)
    details = operator.get(f"{ADMIN}{wf.pk}/tasks/{failed.pk}.json").json()
    assert details["links"]["flower"] == f"http://flower.local:5555/task/{failed.pk}"


def test_resume_shows_the_plan_then_resumes(operator, sent):
    wf = failed_run()
    plan = operator.get(f"{ADMIN}{wf.pk}/resume/").content.decode()
    assert "#1 tests.testapp.tasks.fail (failure)" in plan
    assert "#0 tests.testapp.tasks.add" in plan.split('id="dw-plan-reused"')[1]
    assert Workflow.objects.get().status == W.FAILURE  # showing the plan changes nothing

    response = operator.post(f"{ADMIN}{wf.pk}/resume/", {"confirm": "yes"})
    assert response.status_code == 302
    wf.refresh_from_db()
    assert wf.status == W.RUNNING and sent[-1].endswith("fail")


def test_relaunch_cancel_rerun_and_mark_success_from_the_run_page(operator):
    wf = failed_run()
    failed = wf.task_runs.get(node=1)
    form = operator.get(f"{ADMIN}{wf.pk}/mark-success/", {"task_run": failed.pk})
    assert "result (JSON)" in form.content.decode()
    operator.post(
        f"{ADMIN}{wf.pk}/mark-success/", {"task_run": failed.pk, "result": "40", "confirm": "yes"}
    )
    failed.refresh_from_db()
    assert failed.status == T.SUCCESS and failed.result == 40 and failed.marked_success

    operator.post(f"{ADMIN}{wf.pk}/cancel/", {"confirm": "yes"})
    wf.refresh_from_db()
    assert wf.status == W.CANCELED

    operator.post(f"{ADMIN}{wf.pk}/rerun/", {"task_run": failed.pk, "confirm": "yes"})
    wf.refresh_from_db()
    assert wf.status == W.RUNNING and wf.task_runs.get(node=1).status == T.QUEUED
    operator.post(f"{ADMIN}{wf.pk}/cancel/", {"confirm": "yes"})

    response = operator.post(f"{ADMIN}{wf.pk}/relaunch/", {"confirm": "yes"})
    new = Workflow.objects.exclude(pk=wf.pk).get()
    assert response["Location"].endswith(f"{new.pk}/change/") and new.relaunched_from == wf


def test_an_operation_in_the_wrong_state_says_why(operator):
    wf = failed_run()
    response = operator.post(f"{ADMIN}{wf.pk}/cancel/", {"confirm": "yes"}, follow=True)
    assert "it is failure" in response.content.decode()
    wf.refresh_from_db()
    assert wf.status == W.FAILURE


def test_bulk_actions_ask_for_confirmation_first(operator):
    runs = [failed_run(), failed_run()]
    ids = [str(r.pk) for r in runs]
    page = operator.post(ADMIN, {"action": "resume_runs", "_selected_action": ids})
    assert page.status_code == 200 and "Resume these workflow runs?" in page.content.decode()
    assert set(Workflow.objects.values_list("status", flat=True)) == {W.FAILURE}

    operator.post(ADMIN, {"action": "resume_runs", "_selected_action": ids, "confirm": "yes"})
    assert set(Workflow.objects.values_list("status", flat=True)) == {W.RUNNING}
    operator.post(ADMIN, {"action": "cancel_runs", "_selected_action": ids, "confirm": "yes"})
    assert set(Workflow.objects.values_list("status", flat=True)) == {W.CANCELED}
    operator.post(ADMIN, {"action": "relaunch_runs", "_selected_action": ids, "confirm": "yes"})
    assert Workflow.objects.filter(relaunched_from__in=runs).count() == 2


def test_view_only_staff_see_the_run_without_buttons_and_cannot_operate(viewer):
    wf = failed_run()
    page = viewer.get(f"{ADMIN}{wf.pk}/change/").content.decode()
    assert 'id="dw-dag"' in page and ">Resume<" not in page and 'data-can-operate="0"' in page
    assert viewer.get(f"{ADMIN}{wf.pk}/dag.json").status_code == 200
    assert viewer.post(f"{ADMIN}{wf.pk}/resume/", {"confirm": "yes"}).status_code == 403
    assert viewer.get(f"{ADMIN}launch/").status_code == 403
    assert "resume_runs" not in viewer.get(ADMIN).content.decode()
    wf.refresh_from_db()
    assert wf.status == W.FAILURE


def test_anonymous_users_are_sent_to_log_in(client):
    wf = failed_run()
    for url in (ADMIN, f"{ADMIN}{wf.pk}/change/", f"{ADMIN}{wf.pk}/dag.json", f"{ADMIN}launch/"):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_the_launch_page_prefills_validates_inline_and_redirects_to_the_run(operator, sent):
    page = operator.get(f"{ADMIN}launch/", {"name": "arith"}).content.decode()
    assert "Adds, fans out, sums." in page
    assert "&quot;x&quot;: 0, &quot;y&quot;: 0, &quot;tag&quot;: &quot;&quot;" in page

    bad = operator.post(f"{ADMIN}launch/", {"definition": "arith", "payload": '{"x": "a"}'})
    content = bad.content.decode()
    assert bad.status_code == 200 and not Workflow.objects.exists()
    assert "x: &#x27;a&#x27; is not of type &#x27;integer&#x27;" in content
    assert "(payload): &#x27;y&#x27; is a required property" in content

    good = operator.post(f"{ADMIN}launch/", {"definition": "arith", "payload": '{"x": 1, "y": 2}'})
    run = Workflow.objects.get()
    assert good["Location"].endswith(f"{run.pk}/change/")
    assert run.launched_by.username == "op" and sent == ["tests.testapp.tasks.add"]


def test_the_timeline_shows_each_started_task(operator):
    wf = failed_run()
    page = operator.get(f"{ADMIN}{wf.pk}/timeline/").content.decode()
    assert page.count('class="dw-bar') == 2 and "tests.testapp.tasks.fail" in page


def test_task_runs_are_read_only_and_link_to_their_run(operator, admin_client):
    wf = failed_run()
    page = admin_client.get("/admin/django_workflows/taskrun/", {"status__exact": "failure"})
    content = page.content.decode()
    assert f"{ADMIN}{wf.pk}/change/" in content and content.count("tests.testapp.tasks.fail") >= 1
    assert admin_client.get("/admin/django_workflows/taskrun/add/").status_code == 403
    # a task run goes with its run: never deleted alone, even by a superuser
    task = wf.task_runs.get(node=1)
    assert admin_client.get(f"/admin/django_workflows/taskrun/{task.pk}/delete/").status_code == 403
    listing = admin_client.get("/admin/django_workflows/taskrun/").content.decode()
    assert "delete_selected" not in listing


def test_deleting_runs_deletes_finished_ones_whole_and_refuses_the_others(client):
    client.force_login(user("deleter", "view_workflow", "delete_workflow"))
    finished, running = failed_run(), launch_canvas(chain(add.s(1, 1), add.s(2)))
    ids = [str(finished.pk), str(running.pk)]
    # a run not finished is protected: Django's delete refuses the selection
    page = client.post(ADMIN, {"action": "delete_selected", "_selected_action": ids})
    content = page.content.decode()
    assert page.status_code == 200 and "Cannot delete" in content and "cancel it first" in content
    client.post(ADMIN, {"action": "delete_selected", "_selected_action": ids, "post": "yes"})
    assert Workflow.objects.count() == 2
    assert client.get(f"{ADMIN}{running.pk}/delete/").status_code == 403
    # a finished run: its task runs are counted (never listed), then deleted with it
    page = client.post(ADMIN, {"action": "delete_selected", "_selected_action": ids[:1]})
    content = page.content.decode()
    assert "Task runs: 3" in content and "tests.testapp.tasks.fail" not in content
    page = client.post(
        ADMIN, {"action": "delete_selected", "_selected_action": ids[:1], "post": "yes"}
    )
    assert page.status_code == 302
    assert list(Workflow.objects.all()) == [running]
    assert not TaskRun.objects.filter(workflow_id=finished.pk).exists()
    assert dangling() == {}


def test_a_task_runs_options_are_shown_without_the_engines_own(admin_client):
    from celery import chord

    from django_workflows.canvas import CHORD, CHORD_BODIES
    from tests.testapp.tasks import collect

    body = collect.si("body").on_error(collect.si("errback"))
    wf = launch_canvas(chord([add.si(1, 1).set(queue="q")], body))
    header = wf.task_runs.get(node=0)
    assert {CHORD, CHORD_BODIES} <= set(header.options)  # what the engine keeps

    details = admin_client.get(f"{ADMIN}{wf.pk}/tasks/{header.pk}.json").json()
    assert details["options"] == {"queue": "q"}
    page = admin_client.get(f"/admin/django_workflows/taskrun/{header.pk}/change/")
    content = page.content.decode()
    assert page.status_code == 200 and "queue" in content and "django_workflows_" not in content


# -- bad input: 404s and form errors, never a 500 ---------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    "path",
    [
        "not-a-uuid/change/",
        "------------------------------------/change/",
        "------------------------------------/resume/",
        "------------------------------------/dag.json",
    ],
)
def test_malformed_run_ids_are_404(operator, path):
    assert operator.get(f"{ADMIN}{path}", follow=True).status_code == 404


def test_malformed_or_unknown_task_run_ids_are_404(operator):
    wf = failed_run()
    for task_run in ("not-a-uuid", "00000000-0000-0000-0000-000000000001"):
        assert operator.get(f"{ADMIN}{wf.pk}/rerun/", {"task_run": task_run}).status_code == 404
        response = operator.post(
            f"{ADMIN}{wf.pk}/mark-success/", {"task_run": task_run, "confirm": "yes"}
        )
        assert response.status_code == 404


@pytest.mark.parametrize("text", [DEEP, '{"x": ', "[1, 2"])
def test_bad_json_in_the_launch_form_is_a_form_error(operator, text):
    response = operator.post(f"{ADMIN}launch/", {"definition": "arith", "payload": text})
    assert response.status_code == 200 and not Workflow.objects.exists()
    assert "errorlist" in response.content.decode()


@pytest.mark.parametrize("text", [DEEP, '{"x": ', "nope"])
def test_bad_json_in_the_mark_success_form_is_a_form_error(operator, text):
    wf = failed_run()
    failed = wf.task_runs.get(node=1)
    response = operator.post(
        f"{ADMIN}{wf.pk}/mark-success/", {"task_run": failed.pk, "result": text, "confirm": "yes"}
    )
    assert response.status_code == 200 and "errorlist" in response.content.decode()
    failed.refresh_from_db()
    assert failed.status == T.FAILURE


# -- one launch policy: CAN_LAUNCH and add_workflow hold in the admin ---------------------------


def refuse_everything(user, definition) -> bool:
    return False


def failed_breaks() -> Workflow:
    """A run of the registered definition "breaks", failed: relaunchable."""
    from django_workflows import launch

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


def test_can_launch_refusing_holds_on_the_launch_page_and_relaunches(operator, settings):
    old = failed_breaks()
    settings.DJANGO_WORKFLOWS = {"CAN_LAUNCH": "tests.test_admin.refuse_everything"}

    page = operator.post(f"{ADMIN}launch/", {"definition": "arith", "payload": '{"x": 1, "y": 2}'})
    assert page.status_code == 200
    assert "You are not allowed to launch workflow" in page.content.decode()
    assert operator.post(f"{ADMIN}{old.pk}/relaunch/", {"confirm": "yes"}).status_code == 403
    bulk = operator.post(
        ADMIN,
        {"action": "relaunch_runs", "_selected_action": [str(old.pk)], "confirm": "yes"},
        follow=True,
    )
    assert "You are not allowed to launch workflow" in bulk.content.decode()
    assert Workflow.objects.count() == 1


def test_relaunch_in_the_admin_needs_add_workflow(client):
    old = failed_breaks()
    client.force_login(user("changer", "view_workflow", "change_workflow"))
    assert client.post(f"{ADMIN}{old.pk}/relaunch/", {"confirm": "yes"}).status_code == 403
    page = client.get(ADMIN).content.decode()
    assert "relaunch_runs" not in page and "resume_runs" in page
    assert Workflow.objects.count() == 1


# -- task data needs view_taskrun -------------------------------------------------------------

TASK_DATA = {"args", "kwargs", "result", "exception_type", "exception_message", "traceback"}


def test_task_details_show_task_data_only_with_view_taskrun(client):
    wf = failed_run()
    failed = wf.task_runs.get(node=1)
    url = f"{ADMIN}{wf.pk}/tasks/{failed.pk}.json"
    client.force_login(user("viewer", "view_workflow"))
    shown = client.get(url).json()
    assert not (TASK_DATA | {"history"}) & set(shown)
    assert shown["status"] == T.FAILURE and shown["started_at"] and shown["finished_at"]
    assert "disk full" not in client.get(url).content.decode()

    client.force_login(user("reader", "view_workflow", "view_taskrun"))
    shown = client.get(url).json()
    assert TASK_DATA | {"history"} <= set(shown) and shown["exception_message"] == "disk full"
