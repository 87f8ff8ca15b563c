"""celery-director's examples, run as director runs them.

Every YAML example of director's documentation, its ``director init``
template, its test suite's ``workflows.yml`` (configured here:
tests/director/workflows.yml) and the periodic settings of its
``tests/test_workflows.py``: each loads, and where its tasks are known
(tests/director/tasks.py, tests/testapp/tasks.py), runs end to end on the
real worker with the arguments director gives: ``workflow_id`` and
``payload`` as keyword arguments, ``None`` first for the first tasks, the
previous result(s) first for the others.
"""

import json
import random
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from celery.schedules import crontab
from django.test import override_settings
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from django_workflows import launch
from django_workflows.definitions import registry
from django_workflows.exceptions import InvalidPayload
from django_workflows.models import TaskRun, Workflow
from django_workflows.models import TaskRunStatus as T
from django_workflows.models import WorkflowStatus as W
from django_workflows.retention import apply_retention, retentions
from django_workflows.schedules import fire
from django_workflows.yaml_files import (
    load_definition_files,
    load_errors,
    load_file,
    loaded_workflows,
    sync_schedules,
)
from tests.helpers import until
from tests.testapp.models import Call
from tests.worker import start_worker, stop_worker

ROOT = Path(__file__).resolve().parents[2]

# -- director's examples, as its documentation and its init command write them -----------------

QUICKSTART = """
example.ETL:
  tasks:
    - EXTRACT
    - TRANSFORM
    - LOAD
"""

INIT_TEMPLATE = """
---
# Simple ETL example
example.ETL:
  tasks:
    - EXTRACT
    - TRANSFORM
    - LOAD

# Group of tasks example
example.RANDOMS:
  tasks:
    - GROUP_RANDOMS:
        type: group
        tasks:
          - RANDOM
          - RANDOM
    - ADD
"""

BUILD_CHAIN = """
example.CHAIN:
  tasks:
    - A
    - B
    - C
"""

BUILD_GROUP = """
example.GROUP:
  tasks:
    - A
    - GROUP_1:
        type: group
        tasks:
          - B
          - C
"""

BUILD_INTERVAL = """
example.CHAIN:
  tasks:
    - A
    - B
    - C
  periodic:
    interval: 60
"""

BUILD_CRONTAB = """
example.CHAIN_CRONTAB:
  tasks:
    - A
    - B
    - C
  periodic:
    crontab: "0 */3 * * *"
"""

BUILD_QUEUE = """
example.ETL:
  tasks:
    - A
    - B
    - C
  queue: q1
"""

CLEANUP = """
---
# Simple ETL example
example.ETL:
  tasks:
    - EXTRACT
    - TRANSFORM
    - LOAD
  retention:
    offset: 2

# Group of tasks example
example.RANDOMS:
  tasks:
    - GROUP_RANDOMS:
        type: group
        tasks:
          - RANDOM
          - RANDOM
    - ADD
"""

HOOKS = """
example.ETL:
  tasks:
    - EXTRACT
    - TRANSFORM
    - LOAD
  hooks:
    failure: ERROR_HANDLER
    success: SUCCESS_HANDLER
"""

ORDER = """
product.ORDER:
  tasks:
    - ORDER_PRODUCT
    - SEND_MAIL
"""

ORDER_SCHEMA = """
product.ORDER:
  tasks:
    - ORDER_PRODUCT
    - SEND_MAIL
  schema: order
"""

ORDER_JSON = """
{
    "type" : "object",
    "properties" : {
        "user" : {"type" : "integer"},
        "product" : {"type" : "integer"}
    },
    "required": ["user", "product"]
}
"""

UPDATE_CACHE = """
users.UPDATE_CACHE:
  tasks:
    - UPDATE_CACHE
  periodic:
    interval: 3600
    payload: {"user": False}
"""

WRITE_TASKS = """
example.NO_PARENT:
  tasks:
    - C
# Result : (None,)

example.ONE_PARENT:
  tasks:
    - A
    - B
    - C
# Result : ({'result': 'b_data'},)

example.MULTIPLE_PARENT:
  tasks:
    - GROUP_1:
        type: group
        tasks:
          - A
          - B
    - C
# Result : ([{'result': 'a_data'}, {'result': 'b_data'}],)
"""

SENTRY = """
# workflows.yml
---
demo.SENTRY_ALERT:
  tasks:
    - WORKING_TASK
    - ERROR_TASK
"""

#: name -> (where in director, the YAML, extra files next to it)
EXAMPLES = {
    "quickstart": ("docs/quickstart.md", QUICKSTART, {}),
    "init": ("director init template", INIT_TEMPLATE, {}),
    "build chain": ("docs/guides/build-workflows.md", BUILD_CHAIN, {}),
    "build group": ("docs/guides/build-workflows.md", BUILD_GROUP, {}),
    "build interval": ("docs/guides/build-workflows.md", BUILD_INTERVAL, {}),
    "build crontab": ("docs/guides/build-workflows.md", BUILD_CRONTAB, {}),
    "build queue": ("docs/guides/build-workflows.md", BUILD_QUEUE, {}),
    "cleanup": ("docs/guides/cleanup-workflows.md", CLEANUP, {}),
    "hooks": ("docs/guides/trigger-hooks.md", HOOKS, {}),
    "order": ("README.md, docs/index.md, docs/guides/use-payload.md", ORDER, {}),
    "order schema": (
        "docs/guides/use-payload.md",
        ORDER_SCHEMA,
        {"schemas/order.json": ORDER_JSON},
    ),
    "update cache": ("docs/guides/use-payload.md", UPDATE_CACHE, {}),
    "write tasks": ("docs/guides/write-tasks.md", WRITE_TASKS, {}),
    "sentry": ("docs/guides/error-tracking.md", SENTRY, {}),
}


def write(folder: Path, text: str, name: str = "workflows.yml") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


@pytest.fixture
def director_file(tmp_path):
    """Load one of director's examples as the project's workflows.yml; the
    configured files come back after."""

    def load(example: str) -> Path:
        _, text, files = EXAMPLES[example]
        for name, content in files.items():
            write(tmp_path, content, name)
        path = write(tmp_path, text)
        errors = load_definition_files([path])
        assert errors == [], [str(e) for e in errors]
        return path

    yield load
    load_definition_files()


def calls(wf: Workflow) -> dict[str, list[tuple[list, dict]]]:
    """What each task of the run received: {task: [(args, kwargs), ...]}."""
    ids = [str(pk) for pk in wf.task_runs.values_list("pk", flat=True)]
    seen: dict[str, list] = {}
    for call in Call.objects.filter(task_id__in=ids).order_by("id"):
        seen.setdefault(call.task, []).append((call.args, call.kwargs))
    return seen


def statuses(wf: Workflow) -> list[tuple[str, str]]:
    return list(wf.task_runs.order_by("node").values_list("task", "status"))


def director_kwargs(wf: Workflow) -> dict:
    return {"workflow_id": str(wf.pk), "payload": wf.payload}


# -- loading ------------------------------------------------------------------------------------


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_example_loads_and_passes_the_check(example, director_file):
    from django.core import checks

    path = director_file(example)
    _, text, _ = EXAMPLES[example]
    names = {w.name for w in loaded_workflows()}
    assert names and all(f"{name}:" in text for name in names)
    with override_settings(DJANGO_WORKFLOWS={"DEFINITION_FILES": [path]}):
        # no W002 either: every task is known once the task modules are imported
        assert [m for m in checks.run_checks() if m.id.startswith("django_workflows")] == []


def test_director_test_file_is_configured_and_loads_whole():
    assert [e for e in load_errors() if "director" in e.file] == []
    assert {
        "example.WORKFLOW", "example.SIMPLE_CHAIN", "example.SIMPLE_GROUP", "example.ERROR",
        "example.SIMPLE_CHAIN_ERROR", "example.SIMPLE_GROUP_ERROR", "schemas.SIMPLE_SCHEMA",
        "example.CELERY_ERROR_ONE_TASK", "example.CELERY_ERROR_MULTIPLE_TASKS",
        "example.RETURN_VALUES", "example.RETURN_EXCEPTION", "example.TASK_ROUTING",
        "example.DELAY_TASK", "example.SUCCESSANDFAILURE_HOOK", "example.FAILURE_HOOK",
    } <= {d.name for d in registry}  # fmt: skip


def test_build_queue_routes_every_task_to_its_queue(director_file):
    director_file("build queue")
    from django_workflows.canvas import compile_canvas

    dag = compile_canvas(registry.get("example.ETL").build({}))
    assert [n.options for n in dag.nodes] == [{"queue": "q1"}] * 3


def test_the_retention_example_is_on_the_definitions(director_file):
    director_file("cleanup")
    assert registry.get("example.ETL").retention == 2
    assert registry.get("example.RANDOMS").retention is None
    with override_settings(DJANGO_WORKFLOWS={"RETENTION": -1}):  # the guide's .env
        assert retentions()["example.ETL"] == 2 and "example.RANDOMS" not in retentions()
    with override_settings(DJANGO_WORKFLOWS={"RETENTION": 1000}):  # the init template's
        assert retentions()["example.RANDOMS"] == 1000


# -- the check: task modules imported as a worker imports them ----------------------------------


def test_manage_py_check_imports_the_task_modules_before_warning():
    """tests/director/tasks.py is imported by nothing but Celery's autodiscovery."""
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": f"{ROOT}:{ROOT / 'example_project'}",
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run(
        [sys.executable, "-m", "django", "check"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "W002" not in out.stdout + out.stderr
    assert "no issues" in out.stdout


# -- director's test suite: tests/workflows/workflows.yml, end to end ----------------------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
class TestDirectorTestFile:
    def test_one_task(self, worker):
        wf = launch("example.WORKFLOW", {}).wait()
        assert wf.status == W.SUCCESS and wf.result == "task_example"
        assert calls(wf) == {"TASK_EXAMPLE": [([None], director_kwargs(wf))]}

    def test_one_task_error(self, worker):
        wf = launch("example.ERROR", {}).wait()
        assert wf.status == W.FAILURE
        run = wf.task_runs.get()
        assert (run.status, run.exception_type) == (T.FAILURE, "ZeroDivisionError")

    def test_chain(self, worker):
        wf = launch("example.SIMPLE_CHAIN", {}).wait()
        assert wf.status == W.SUCCESS and wf.result == "task_c"
        kwargs = director_kwargs(wf)
        assert calls(wf) == {
            "TASK_A": [([None], kwargs)],
            "TASK_B": [(["task_a"], kwargs)],
            "TASK_C": [(["task_b"], kwargs)],
        }

    def test_chain_error(self, worker):
        wf = launch("example.SIMPLE_CHAIN_ERROR", {}).wait()
        assert wf.status == W.FAILURE
        assert statuses(wf) == [("TASK_A", T.SUCCESS), ("TASK_B", T.SUCCESS),
                                ("TASK_ERROR", T.FAILURE)]  # fmt: skip

    def test_group(self, worker):
        wf = launch("example.SIMPLE_GROUP", {}).wait()
        assert wf.status == W.SUCCESS and wf.result == ["task_b", "task_c"]
        seen = calls(wf)
        assert seen["TASK_B"] == seen["TASK_C"] == [(["task_a"], director_kwargs(wf))]

    def test_group_error_the_sibling_still_runs(self, worker):
        wf = launch("example.SIMPLE_GROUP_ERROR", {}).wait()
        assert wf.status == W.FAILURE
        assert statuses(wf) == [("TASK_A", T.SUCCESS), ("TASK_ERROR", T.FAILURE),
                                ("TASK_C", T.SUCCESS)]  # fmt: skip

    def test_schema(self, worker):
        with pytest.raises(InvalidPayload) as error:
            launch("schemas.SIMPLE_SCHEMA", {"price": 1})
        assert error.value.errors == [{"path": "", "message": "'name' is a required property"}]
        wf = launch("schemas.SIMPLE_SCHEMA", {"name": "foo", "price": 9.5}).wait()
        assert wf.status == W.SUCCESS
        assert calls(wf)["TASK_EXAMPLE"] == [([None], director_kwargs(wf))]

    @pytest.mark.parametrize("name", ["CELERY_ERROR_ONE_TASK", "CELERY_ERROR_MULTIPLE_TASKS"])
    def test_a_result_that_is_not_json_fails_its_task(self, worker, name):
        wf = launch(f"example.{name}", {}).wait()
        assert wf.status == W.FAILURE
        last = wf.task_runs.order_by("node").last()
        assert (last.task, last.status) == ("TASK_CELERY_ERROR", T.FAILURE)
        assert "Unserializable" in last.exception_message + last.exception_type
        assert wf.task_runs.exclude(pk=last.pk).exclude(status=T.SUCCESS).count() == 0

    def test_return_values(self, worker):
        wf = launch("example.RETURN_VALUES", {}).wait()
        assert wf.status == W.SUCCESS
        results = dict(wf.task_runs.values_list("task", "result"))
        assert results == {
            "STR": "return_value",
            "INT": 1234,
            "LIST": ["jack", "sape", "guido"],
            "NONE": None,
            "DICT": {"foo": "bar"},
            "NESTED": {"jack": 4098, "sape": 4139, "guido": 4127, "nested": {"foo": "bar"},
                       "none": None, "list": ["jack", "sape", "guido"]},
        }  # fmt: skip
        # each task got the previous one's value first, NONE's None included
        seen = calls(wf)
        assert seen["NONE"][0][0] == [["jack", "sape", "guido"]] and seen["DICT"][0][0] == [None]

    def test_return_exception(self, worker):
        wf = launch("example.RETURN_EXCEPTION", {}).wait()
        str_run, error_run = wf.task_runs.order_by("node")
        assert (str_run.status, str_run.result) == (T.SUCCESS, "return_value")
        assert error_run.exception_message == "division by zero"
        assert error_run.traceback.startswith("Traceback (most recent call last)")
        assert "ZeroDivisionError: division by zero" in error_run.traceback

    def test_task_routing_and_the_docs_queue_example(self, worker, tmp_path, director_file):
        queues = start_worker(tmp_path / "queues.log", "-Q", "q1,q2", concurrency=1)
        try:
            wf = launch("example.TASK_ROUTING", {}).wait()
            assert wf.status == W.SUCCESS
            runs = wf.task_runs.order_by("node")
            assert [(r.task, r.options.get("queue")) for r in runs] == [
                ("TASK_A", "q1"), ("TASK_B", "q2"), ("TASK_C", "q1")]  # fmt: skip
            assert all(r.worker.startswith("queues-") for r in runs)

            director_file("build queue")  # docs: every task of example.ETL on q1
            wf = launch("example.ETL", {}).wait()
            assert wf.status == W.SUCCESS and wf.result is None
            # (the session worker's example.ETL, tests/testapp's, adds a hook: not on q1)
            runs = wf.task_runs.filter(is_hook=False)
            assert len(runs) == 3 and all(r.worker.startswith("queues-") for r in runs)
        finally:
            stop_worker(queues)

    def test_delay_task_is_canceled(self, worker):
        wf = launch("example.DELAY_TASK", {})
        until(lambda: wf.task_runs.filter(status=T.RUNNING).exists(), what="DELAY to start")
        wf.cancel(terminate=True)
        wf.refresh_from_db()
        assert wf.status == W.CANCELED
        until(lambda: wf.task_runs.get().status == T.CANCELED, what="DELAY canceled")
        assert wf.task_runs.get().revoked

    def test_success_hook(self, worker):
        wf = launch("example.SUCCESSANDFAILURE_HOOK", {}).wait()
        assert wf.status == W.SUCCESS
        until(lambda: Call.objects.filter(task="TASK_B").exists(), what="the hook")
        hook = wf.task_runs.get(is_hook=True)
        until(lambda: TaskRun.objects.get(pk=hook.pk).status == T.SUCCESS, what="the hook")
        assert calls(wf) == {
            "TASK_A": [([None], director_kwargs(wf))],
            "TASK_B": [([None], director_kwargs(wf))],  # after director's end task: None
        }

    def test_failure_hook(self, worker):
        wf = launch("example.FAILURE_HOOK", {"x": 1}).wait()
        assert wf.status == W.FAILURE
        until(lambda: Call.objects.filter(task="TASK_B").exists(), what="the hook")
        assert calls(wf)["TASK_B"] == [([], director_kwargs(wf))]
        assert statuses(wf)[:2] == [("TASK_A", T.SUCCESS), ("TASK_ERROR", T.FAILURE)]


# -- director's documentation and init template, end to end -------------------------------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
class TestDirectorDocs:
    def test_quickstart_and_init_etl(self, worker, director_file):
        for example in ("quickstart", "init"):
            director_file(example)
            wf = launch("example.ETL", {}).wait()
            assert wf.status == W.SUCCESS and wf.result == {"loaded": 3, "total": 60}
            assert calls(wf)["EXTRACT"] == [([None], director_kwargs(wf))]

    def test_init_randoms_with_the_default_payload(self, worker, director_file):
        director_file("init")
        wf = launch("example.RANDOMS", {}).wait()
        number = random.Random(0).randint(0, 10)
        assert wf.status == W.SUCCESS and wf.result == 2 * number
        seen = calls(wf)
        assert seen["RANDOM"] == [([None], director_kwargs(wf))] * 2
        assert seen["ADD"] == [([[number, number]], director_kwargs(wf))]

    def test_build_chain_and_group(self, worker, director_file):
        director_file("build chain")
        wf = launch("example.CHAIN", {}).wait()
        assert wf.status == W.SUCCESS
        assert calls(wf)["C"] == [([{"result": "b_data"}], director_kwargs(wf))]
        director_file("build group")
        wf = launch("example.GROUP", {}).wait()
        assert wf.status == W.SUCCESS and wf.result == [{"result": "b_data"}, None]
        seen = calls(wf)
        assert seen["B"] == seen["C"] == [([{"result": "a_data"}], director_kwargs(wf))]

    def test_write_tasks_results_of_the_parents(self, worker, director_file):
        director_file("write tasks")
        expected = {
            "example.NO_PARENT": [None],
            "example.ONE_PARENT": [{"result": "b_data"}],
            "example.MULTIPLE_PARENT": [[{"result": "a_data"}, {"result": "b_data"}]],
        }
        for name, args in expected.items():
            wf = launch(name, {}).wait()
            assert wf.status == W.SUCCESS
            assert calls(wf)["C"] == [(args, director_kwargs(wf))], name

    def test_hooks(self, worker, director_file):
        director_file("hooks")
        wf = launch("example.ETL", {}).wait()
        assert wf.status == W.SUCCESS
        until(lambda: "SUCCESS_HANDLER" in calls(wf), what="the success hook")
        assert calls(wf)["SUCCESS_HANDLER"] == [([None], director_kwargs(wf))]

        wf = launch("example.ETL", {"numbers": "ab"}).wait()  # LOAD cannot sum strings
        assert wf.status == W.FAILURE
        until(lambda: "ERROR_HANDLER" in calls(wf), what="the failure hook")
        assert calls(wf)["ERROR_HANDLER"] == [([], director_kwargs(wf))]
        assert "SUCCESS_HANDLER" not in calls(wf)

    def test_use_payload(self, worker, director_file):
        director_file("order")
        wf = launch("product.ORDER", {"user": 1234, "product": 1000}).wait()
        assert wf.result == "Your order #12341000 has been received (user 1234)"

        director_file("order schema")
        with pytest.raises(InvalidPayload) as error:
            launch("product.ORDER", {"user": "john", "product": 1000})
        assert error.value.errors == [
            {"path": "user", "message": "'john' is not of type 'integer'"}
        ]
        assert launch("product.ORDER", {"user": 1, "product": 2}).wait().status == W.SUCCESS

    def test_periodic_update_cache_fired_as_beat_fires_it(self, worker, director_file):
        director_file("update cache")
        (name,) = sync_schedules().created
        task = PeriodicTask.objects.get(name=name)
        assert task.interval.every == 3600 and json.loads(task.kwargs)["payload"] == {"user": False}

        wf = Workflow.objects.get(pk=fire(**json.loads(task.kwargs), periodic_task_name=name))
        assert wf.wait().result == "all users"
        manual = launch("users.UPDATE_CACHE", {"user": "john.doe"}).wait()
        assert manual.result == "john.doe"

    def test_error_tracking_tasks_get_what_sentry_reads(self, worker, director_file):
        director_file("sentry")
        wf = launch("demo.SENTRY_ALERT", {"a": 1}).wait()
        assert wf.status == W.FAILURE
        assert statuses(wf) == [("WORKING_TASK", T.SUCCESS), ("ERROR_TASK", T.FAILURE)]
        # director's Sentry integration reads kwargs["workflow_id"] and kwargs["payload"]
        assert calls(wf)["ERROR_TASK"] == [([{"hello": "world"}], director_kwargs(wf))]

    def test_cleanup_keeps_the_two_newest_etl_runs(self, worker, director_file):
        director_file("cleanup")
        etl = [launch("example.ETL", {}).wait() for _ in range(3)]
        randoms = launch("example.RANDOMS", {}).wait()
        with override_settings(DJANGO_WORKFLOWS={"RETENTION": -1}):
            assert apply_retention() == {"example.ETL": 1}
        assert set(Workflow.objects.values_list("pk", flat=True)) >= {etl[1].pk, etl[2].pk,
                                                                       randoms.pk}  # fmt: skip
        assert not Workflow.objects.filter(pk=etl[0].pk).exists()
        assert not TaskRun.objects.filter(workflow_id=etl[0].pk).exists()


# -- periodic: the build-workflows guide and director's tests/test_workflows.py ----------------

# (periodic: as written, Celery's schedule director builds from it) - director's test cases
PERIODIC_CASES = [
    ({"payload": {}, "schedule": 30.0}, 30.0),
    ({"schedule": 30.0}, 30.0),
    ({"schedule": "1 * * * *"}, crontab("1", "*", day_of_week="*")),
    ({"schedule": "* 1 * * *"}, crontab("*", "1")),
    ({"schedule": "* * 1 * *"}, crontab(day_of_week="1")),
    ({"schedule": "* * * 1 *"}, crontab(day_of_month="1")),
    ({"schedule": "* * * * 1"}, crontab(month_of_year="1")),
    (
        {"schedule": "*/10 */11 */12 */13 */14"},
        crontab("*/10", "*/11", day_of_week="*/12", day_of_month="*/13", month_of_year="*/14"),
    ),
    ({"interval": 30.0}, 30.0),
    ({"crontab": "1 * * * *"}, crontab("1")),
    ({"crontab": "* 1 * * *"}, crontab(hour="1")),
    ({"crontab": "* * 1 * *"}, crontab(day_of_month="1")),
    ({"crontab": "* * * 1 *"}, crontab(month_of_year="1")),
    ({"crontab": "* * * * 1"}, crontab(day_of_week="1")),
    (
        {"crontab": "*/10 */11 */12 */13 */14"},
        crontab("*/10", "*/11", day_of_month="*/12", month_of_year="*/13", day_of_week="*/14"),
    ),
    # the build-workflows guide
    ({"interval": 60}, 60),
    ({"crontab": "0 */3 * * *"}, crontab("0", "*/3")),
    # its migration note: schedule "0 12 1 * *" is crontab "0 12 * * 1", Mondays at 12:00
    ({"schedule": "0 12 1 * *"}, crontab("0", "12", day_of_week="1")),
    ({"crontab": "0 12 * * 1"}, crontab("0", "12", day_of_week="1")),
]

INVALID_PERIODIC = [
    ({"crontab": "* * * *"}, "crontab is a string of 5 fields"),
    ({"crontab": "* * * * 12"}, "invalid day of week '12' in '* * * * 12': Invalid end range"),
    ({"non_valid_key": "* * * * *"}, "unknown key 'non_valid_key'"),
]


def _expanded(schedule):
    fields = ("minute", "hour", "day_of_week", "day_of_month", "month_of_year")
    return {f: getattr(schedule, f) for f in fields}


@pytest.mark.django_db
@pytest.mark.parametrize(("periodic", "expected"), PERIODIC_CASES)
def test_periodic_settings_give_director_s_schedule(tmp_path, periodic, expected):
    text = f"example.P:\n  tasks: [A]\n  periodic: {json.dumps(periodic)}\n"
    result = load_file(write(tmp_path, text))
    assert result.ok, [str(e) for e in result.errors]
    legacy = [e for e in result.errors if e.id == "django_workflows.W004"]
    assert len(legacy) == ("schedule" in periodic)

    (name,) = sync_schedules(result.workflows).created
    schedule = PeriodicTask.objects.get(name=name).schedule
    if isinstance(expected, crontab):
        assert _expanded(schedule) == _expanded(expected)
    else:
        assert schedule.run_every == timedelta(seconds=expected)


@pytest.mark.parametrize(("periodic", "message"), INVALID_PERIODIC)
def test_invalid_periodic_settings_are_refused(tmp_path, periodic, message):
    text = f"example.P:\n  tasks: [A]\n  periodic: {json.dumps(periodic)}\n"
    result = load_file(write(tmp_path, text))
    assert not result.ok and result.workflows == []
    assert any(message in e.message for e in result.errors), [str(e) for e in result.errors]


def test_the_legacy_schedule_warning_names_the_new_key_and_the_field_order(tmp_path):
    text = 'example.P:\n  tasks: [A]\n  periodic:\n    schedule: "0 12 1 * *"\n'
    (warning,) = load_file(write(tmp_path, text)).errors
    assert warning.id == "django_workflows.W004" and warning.line == 4
    assert warning.path == "example.P > periodic > schedule"
    assert 'write crontab: "0 12 * * 1" instead' in warning.message
    assert "day_of_week day_of_month month_of_year" in warning.hint
    assert '"0 12 1 * *" becomes "0 12 * * 1"' in warning.hint

    text = "example.P:\n  tasks: [A]\n  periodic: {schedule: 30.0}\n"
    (warning,) = load_file(write(tmp_path, text)).errors
    assert "write interval: 30.0 instead" in warning.message


def test_the_legacy_schedule_warning_is_a_check_warning(tmp_path):
    from django.core import checks

    flows = write(tmp_path, "example.P:\n  tasks: [A]\n  periodic: {schedule: 30}\n")
    with override_settings(DJANGO_WORKFLOWS={"DEFINITION_FILES": [flows]}):
        messages = [m for m in checks.run_checks() if m.id.startswith("django_workflows")]
    assert [(m.id, m.level) for m in messages] == [("django_workflows.W004", checks.WARNING)]


# -- retention ---------------------------------------------------------------------------------

BAD_RETENTION = [
    ("retention: 2", "retention must be a mapping"),
    ("retention: {offset: two}", "offset is the number of newest runs to keep"),
    ("retention: {keep: 2}", "unknown key 'keep'; retention takes offset"),
]


@pytest.mark.parametrize(("line", "message"), BAD_RETENTION)
def test_a_bad_retention_is_an_error(tmp_path, line, message):
    result = load_file(write(tmp_path, f"example.P:\n  tasks: [A]\n  {line}\n"))
    assert not result.ok
    assert any(message in e.message for e in result.errors), [str(e) for e in result.errors]


def _runs(name: str, *status_list: str) -> list[Workflow]:
    """Runs of ``name``, oldest first, one a minute."""
    now = timezone.now()
    runs = []
    for i, status in enumerate(status_list):
        run = Workflow.objects.create(name=name, status=status)
        Workflow.objects.filter(pk=run.pk).update(created=now - timedelta(minutes=100 - i))
        runs.append(run)
    return runs


@pytest.mark.django_db
class TestRetention:
    @pytest.fixture(autouse=True)
    def kept(self, tmp_path):
        flows = write(
            tmp_path,
            "keep.TWO:\n  tasks: [A]\n  retention: {offset: 2}\n"
            "keep.NONE:\n  tasks: [A]\n  retention: {offset: 0}\n"
            "keep.ALL:\n  tasks: [A]\n  retention: {offset: -1}\n"
            "keep.DEFAULT:\n  tasks: [A]\n",
        )
        assert load_definition_files([flows]) == []
        yield
        load_definition_files()

    def test_the_newest_runs_are_kept_and_unfinished_ones_never_go(self):
        two = _runs("keep.TWO", W.SUCCESS, W.RUNNING, W.FAILURE, W.CANCELED, W.SUCCESS, W.PENDING)
        TaskRun.objects.create(workflow=two[0], node=0, task="A")
        with override_settings(DJANGO_WORKFLOWS={"RETENTION": 1}):
            deleted = apply_retention(batch_size=1)
        # the newest two (SUCCESS, PENDING) stay; of the older ones, the finished go
        assert deleted == {"keep.TWO": 3}
        assert set(Workflow.objects.filter(name="keep.TWO")) == {two[1], two[4], two[5]}
        assert not TaskRun.objects.filter(workflow_id=two[0].pk).exists()

    def test_offset_zero_negative_and_the_setting(self):
        none = _runs("keep.NONE", W.SUCCESS, W.RUNNING)
        every = _runs("keep.ALL", W.SUCCESS, W.SUCCESS)
        default = _runs("keep.DEFAULT", W.SUCCESS, W.SUCCESS, W.SUCCESS)
        other = _runs("not.REGISTERED", W.SUCCESS)

        assert apply_retention() == {"keep.NONE": 1}  # RETENTION unset: the rest stays
        with override_settings(DJANGO_WORKFLOWS={"RETENTION": 1}):
            assert apply_retention() == {"keep.DEFAULT": 2}
        remaining = set(Workflow.objects.all())
        assert remaining == {none[1], *every, default[2], *other}

    def test_the_task_runs_the_pass(self):
        from django_workflows.tasks import retention

        _runs("keep.NONE", W.SUCCESS)
        assert retention.apply().get() == {"keep.NONE": 1}
