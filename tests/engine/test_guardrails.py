"""Guardrails: maximum tasks per run, payload size and result size, each a clear
error that loses nothing; a warning for canvases native Celery runs wrong.

The worker process reads its limits from tests/settings.py (MAX_NODES 2,000,
MAX_RESULT_SIZE 100,000 bytes); the limits checked at launch are overridden
per test.
"""

import pytest
from celery import chain, chord, group
from django.contrib.auth.models import User
from django.test import override_settings
from rest_framework.test import APIClient

from django_workflows import foreach, launch, launch_canvas
from django_workflows.exceptions import InvalidPayload, NativeCeleryWarning, NodeLimitExceeded
from django_workflows.models import TaskRun, Workflow
from django_workflows.models import TaskRunStatus as T
from django_workflows.models import WorkflowStatus as W
from tests.testapp.tasks import add, collect, const, tsum


def limits(**values):
    return override_settings(DJANGO_WORKFLOWS=values)


@pytest.fixture
def api(db):
    client = APIClient()
    client.force_login(User.objects.create_superuser("root", password="secret"))
    return client


@pytest.mark.django_db
class TestAtLaunch:
    def test_too_many_tasks_is_refused_and_nothing_is_saved(self):
        with limits(MAX_NODES=3), pytest.raises(NodeLimitExceeded) as error:
            launch_canvas(chain(add.s(1, 1), add.s(1), add.s(1), add.s(1)), name="long")

        assert str(error.value) == (
            "Workflow 'long' has 4 tasks; the limit is 3 (DJANGO_WORKFLOWS['MAX_NODES'])."
        )
        assert not Workflow.objects.exists() and not TaskRun.objects.exists()

    @pytest.mark.django_db(transaction=True)  # commits: a message would be sent
    def test_too_many_tasks_is_refused_after_some_were_saved_and_nothing_is_kept(self, monkeypatch):
        sent = []
        monkeypatch.setattr("django_workflows.engine.graph.NODES_PER_WRITE", 2)
        monkeypatch.setattr(
            "django_workflows.engine.progress.dispatch", lambda runs, results: sent.extend(runs)
        )
        with limits(MAX_NODES=5), pytest.raises(NodeLimitExceeded) as error:
            launch_canvas(group(add.s(i, i) for i in range(9)), name="wide")

        assert str(error.value) == (
            "Workflow 'wide' has 9 tasks; the limit is 5 (DJANGO_WORKFLOWS['MAX_NODES'])."
        )
        assert not Workflow.objects.exists() and not TaskRun.objects.exists()
        assert sent == []

    def test_at_the_limit_is_fine(self):
        with limits(MAX_NODES=3):
            wf = launch_canvas(chain(add.s(1, 1), add.s(1), add.s(1)))
        assert wf.tasks_total == 3

    def test_no_limit(self):
        with limits(MAX_NODES=None):
            assert launch_canvas(group(add.s(i, i) for i in range(50))).tasks_total == 50

    def test_too_large_a_payload_is_invalid(self):
        payload = {"x": 1, "y": 2, "tag": "x" * 200}
        with limits(MAX_PAYLOAD_SIZE=100), pytest.raises(InvalidPayload) as error:
            launch("arith", payload)

        assert error.value.errors == [
            {
                "path": "",
                "message": "The payload is 227 bytes as JSON; the limit is 100 "
                "(DJANGO_WORKFLOWS['MAX_PAYLOAD_SIZE']).",
            }
        ]
        assert not Workflow.objects.exists()

    def test_a_payload_that_is_not_json_is_invalid(self):
        with pytest.raises(InvalidPayload, match="Not JSON"):
            launch_canvas(add.s(1, 1), payload={"when": {1, 2}})
        assert not Workflow.objects.exists()

    def test_the_api_says_400_with_the_limit(self, api):
        with limits(MAX_NODES=2):
            response = api.post(
                "/api/workflows/", {"name": "arith", "payload": {"x": 1, "y": 2}}, format="json"
            )
        assert response.status_code == 400
        assert response.json()["code"] == "too_many_tasks"
        assert "the limit is 2" in response.json()["detail"]

        with limits(MAX_PAYLOAD_SIZE=10):
            response = api.post(
                "/api/workflows/", {"name": "arith", "payload": {"x": 1, "y": 2}}, format="json"
            )
        assert response.status_code == 400
        assert "MAX_PAYLOAD_SIZE" in response.json()["errors"][0]["message"]
        assert not Workflow.objects.exists()

    def test_a_shape_native_celery_gets_wrong_warns_and_runs(self):
        canvas = chord([add.s(1, 1), group(add.s(2, 2), add.s(3, 3))], collect.s())
        with pytest.warns(NativeCeleryWarning, match="group nested in a chord's header"):
            wf = launch_canvas(canvas, name="nested")
        assert wf.tasks_total == 4

    def test_ordinary_canvases_do_not_warn(self, recwarn):
        launch_canvas(chord([add.s(1, 1), add.s(2, 2)], tsum.s()))
        assert not [w for w in recwarn if issubclass(w.category, NativeCeleryWarning)]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
class TestOnTheWorker:
    def test_too_large_a_result_fails_its_task_clearly(self, worker):
        wf = launch_canvas(chain(const.s("x" * 150_000), add.s("y"))).wait(timeout=30)

        assert wf.status == W.FAILURE
        big = wf.task_runs.get(node=0)
        assert big.status == T.FAILURE and big.result is None
        assert big.exception_type == "ResultTooLarge"
        assert big.exception_message.startswith(
            "The result is 150002 bytes as JSON; the limit is 100000"
        )
        assert wf.task_runs.get(node=1).status == T.UPSTREAM_FAILED

    def test_a_foreach_past_the_node_limit_fails_its_node(self, worker):
        wf = launch_canvas(chain(const.s(list(range(2500))), foreach(add.s(1)), tsum.s()))
        wf.wait(timeout=30)

        assert wf.status == W.FAILURE
        node = wf.task_runs.get(is_map=True)
        assert node.exception_type == "NodeLimitExceeded"
        assert "would expand into 2500 task runs" in node.exception_message
        assert "the limit is 2000" in node.exception_message
        assert not TaskRun.objects.filter(mapped_from=node).exists()
