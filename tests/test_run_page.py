"""The admin's run page: live header and failure summary, folded big DAGs, find, task table.

What the page's one poll (``dag.json``) and its fragments say; the browser tests
(test_browser.py) check that the page shows it.
"""

import statistics
import time

import pytest
from celery import chain
from django.contrib.auth import get_user_model

from django_workflows import engine, launch_canvas
from django_workflows.dag import dag_data
from tests.helpers import chord_run
from tests.test_admin import ADMIN, failed_run, user
from tests.testapp.tasks import add

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("sent")]


@pytest.fixture
def operator(client):
    client.force_login(user("op", "view_workflow", "change_workflow", "add_workflow"))
    return client


@pytest.fixture
def viewer(client):
    client.force_login(user("viewer", "view_workflow"))
    return client


def test_the_page_says_what_it_is(operator):
    wf = failed_run()
    page = operator.get(f"{ADMIN}{wf.pk}/change/").content.decode()
    assert f"<title>adhoc {wf.pk} | Run of workflow “adhoc” |" in page
    assert "<h1>Run of workflow “adhoc”</h1>" in page and "Change workflow run" not in page


def test_the_header_follows_the_run_from_running_to_success_in_the_one_poll(operator):
    wf = launch_canvas(chain(add.s(1, 1), add.s(2)))
    first, second = wf.task_runs.order_by("node")
    engine.task_started(str(first.pk), str(wf.pk), "w1")

    header = operator.get(f"{ADMIN}{wf.pk}/dag.json", {"panels": "1"}).json()["panels"]["header"]
    assert ">Running<" in header and "0/2" in header and 'data-op="cancel"' in header
    assert 'data-op="relaunch"' not in header and "Result" not in header

    engine.task_succeeded(str(first.pk), str(wf.pk), 0, 2)
    engine.task_started(str(second.pk), str(wf.pk), "w1")
    engine.task_succeeded(str(second.pk), str(wf.pk), 0, 4)
    poll = operator.get(f"{ADMIN}{wf.pk}/dag.json", {"panels": "1"}).json()
    header = poll["panels"]["header"]
    assert poll["finished"] is True and ">Success<" in header and "2/2" in header
    assert 'data-op="relaunch"' in header and 'data-op="cancel"' not in header
    assert '<pre data-fact="result">4</pre>' in header
    assert '<dd data-fact="finished">-</dd>' not in header
    assert poll["panels"]["failures"].strip() == ""


def test_a_failed_run_says_which_task_failed_with_what_what_never_ran_and_the_resume_plan(
    operator,
):
    wf = failed_run()  # add ✓, fail ✗ ValueError("disk full"), add ⊘
    page = operator.get(f"{ADMIN}{wf.pk}/change/").content.decode()
    assert "This run failed" in page
    assert 'data-node="1">#1 tests.testapp.tasks.fail</button>' in page
    assert "<code>ValueError</code>: disk full" in page
    assert "1 task never ran because of that (upstream failed)" in page
    assert 'data-node="2">#2 tests.testapp.tasks.add</button>' in page
    assert "Resume runs 2 tasks again" in page and "reuses the stored result of 1 task" in page
    assert f'action="{ADMIN}{wf.pk}/resume/"' in page and 'name="confirm" value="yes"' in page
    # The header names the failure instead of an empty "Error".
    assert "#1 tests.testapp.tasks.fail: ValueError: disk full" in page


def test_view_only_staff_see_the_failure_but_no_resume(viewer):
    wf = failed_run()
    page = viewer.get(f"{ADMIN}{wf.pk}/change/").content.decode()
    assert "This run failed" in page and "disk full" in page
    assert "Resume runs" not in page and 'data-op="' not in page


def test_a_big_group_folds_into_one_node_with_its_counts(operator):
    wf = chord_run(2000, failed=8)
    dag = operator.get(f"{ADMIN}{wf.pk}/dag.json", {"panels": "1"}).json()
    assert [(n["node"], n["label"], n["status"]) for n in dag["nodes"]] == [
        (0, "add", "success"),
        (1, "add ×1,998", "failure"),
        (1999, "add", "upstream_failed"),
    ]
    fold = dag["nodes"][1]
    assert fold["id"] == "group-1" and fold["task"] == "tests.testapp.tasks.add"
    assert fold["group"] == {"size": 1998, "counts": {"failure": 8, "success": 1990}}
    assert dag["edges"] == [{"source": 0, "target": 1}, {"source": 1, "target": 1999}]
    # The API's DAG stays node by node.
    assert len(dag_data(wf)["nodes"]) == 2000


def test_twenty_siblings_stay_nodes_more_fold(operator):
    small = launch_canvas(add.s(1, 1) | chain(add.s(0)) | add.s(0).set())
    assert len(dag_data(small, fold=20)["nodes"]) == 3
    wf = chord_run(22)  # a group of exactly 20
    assert len(dag_data(wf, fold=20)["nodes"]) == 22
    wf = chord_run(23)
    assert [n["label"] for n in dag_data(wf, fold=20)["nodes"]] == ["add", "add ×21", "add"]


def test_an_opened_fold_lists_its_members_failures_first_a_page_at_a_time(operator):
    wf = chord_run(2000, failed=8)
    first = operator.get(f"{ADMIN}{wf.pk}/groups/1.json").json()
    assert (first["size"], first["page"], first["pages"], first["start"]) == (1998, 1, 20, 1)
    statuses = [m["status"] for m in first["nodes"]]
    assert statuses[:8] == ["failure"] * 8 and set(statuses[8:]) == {"success"}
    assert [m["node"] for m in first["nodes"][8:11]] == [2, 3, 4]
    last = operator.get(f"{ADMIN}{wf.pk}/groups/1.json", {"page": 20}).json()
    assert (last["start"], last["end"], last["nodes"][-1]["node"]) == (1901, 1998, 1998)
    assert operator.get(f"{ADMIN}{wf.pk}/groups/0.json").status_code == 404


def test_find_a_task_by_number_status_or_name_in_or_out_of_a_fold(operator):
    wf = chord_run(2000, failed=8)
    find = f"{ADMIN}{wf.pk}/find.json"
    by_number = operator.get(find, {"q": "#1500"}).json()
    (match,) = by_number["matches"]
    # Failures come first in the fold: #1500 is the 1,500 - 1 + 6 = 1,505th member.
    assert (match["node"], match["group"], match["page"], by_number["groups"]) == (1500, 1, 16, [1])
    failures = operator.get(find, {"q": "failure"}).json()
    assert failures["total"] == 8 and {m["page"] for m in failures["matches"]} == {1}
    upstream = operator.get(find, {"q": "upstream failed"}).json()
    assert [(m["node"], m["group"]) for m in upstream["matches"]] == [(1999, None)]
    assert upstream["groups"] == []
    by_name = operator.get(find, {"q": "ADD"}).json()
    assert by_name["total"] == 2000 and len(by_name["matches"]) == 20
    assert operator.get(find, {"q": "nothing-like-it"}).json()["total"] == 0


def test_the_task_table_filters_by_status_and_pages(operator):
    wf = chord_run(60, failed=3)
    table = f"{ADMIN}{wf.pk}/task-table/"
    page = operator.get(table).content.decode()
    assert "60 task runs" in page and "page 1 of 3" in page and page.count("<tr>") == 26
    failed = operator.get(table, {"status": "failure"}).content.decode()
    assert "3 task runs" in failed and failed.count("dw-badge dw-failure") == 3
    assert '<option value="failure" selected>' in failed
    last = operator.get(table, {"page": 3}).content.decode()
    assert 'data-node="59"' in last and "page 3 of 3" in last


@pytest.mark.parametrize("size", [2000, 10000])
def test_the_poll_of_a_big_run_is_folded_and_small(operator, settings, size):
    """As the page polls a finished run (the panels came with the page). The
    time is printed, not asserted: timings on a shared machine are noise."""
    settings.DJANGO_WORKFLOWS = {"MAX_NODES": None}
    wf = chord_run(size, failed=8)
    operator.get(f"{ADMIN}{wf.pk}/dag.json")  # warm-up
    times = []
    for _ in range(5):
        start = time.perf_counter()
        response = operator.get(f"{ADMIN}{wf.pk}/dag.json")
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(
        f"\n{size}-task run: dag.json in {median:.3f} s (median of 5), "
        f"{len(response.content) / 1024:.1f} KB"
    )
    assert len(response.json()["nodes"]) == 3 and "panels" not in response.json()
    assert len(response.content) < 4096  # folded: not one entry per task


def test_big_runs_are_only_for_staff(client):
    wf = chord_run(30)
    for url in (f"{wf.pk}/groups/1.json", f"{wf.pk}/find.json?q=1", f"{wf.pk}/task-table/"):
        assert client.get(ADMIN + url).status_code == 302
    client.force_login(get_user_model().objects.create_user("x", password="pw", is_staff=True))
    assert client.get(f"{ADMIN}{wf.pk}/groups/1.json").status_code == 403


def test_relaunch_shows_only_to_who_may_launch(client):
    """A relaunch is a launch: change_workflow alone resumes, not relaunches."""
    client.force_login(user("resumer", "view_workflow", "change_workflow"))
    wf = failed_run()
    header = client.get(f"{ADMIN}{wf.pk}/dag.json", {"panels": "1"}).json()["panels"]["header"]
    assert 'data-op="resume"' in header and 'data-op="relaunch"' not in header


def test_the_header_says_while_a_chord_header_generator_is_being_read(operator):
    from celery import chord

    from django_workflows.models import Workflow
    from tests.testapp.tasks import tsum

    seen = []

    def header_panel(wf_pk):
        poll = operator.get(f"{ADMIN}{wf_pk}/dag.json", {"panels": "1"}).json()
        return poll["panels"]["header"]

    def members():
        for i in range(3):
            if i == 2:
                seen.append(header_panel(Workflow.objects.get().pk))
            yield add.si(i, i)

    wf = launch_canvas(chord(members(), tsum.s()))

    assert 'data-fact="reading"' in seen[0]
    assert "is being read by the process that launched the run" in seen[0]
    assert 'data-fact="reading"' not in header_panel(wf.pk)  # read to its end
