"""YAML definitions in celery-director's format: loading, errors, canvases, runs, schedules."""

import json
import random
import textwrap
from pathlib import Path

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.core.management.sql import emit_post_migrate_signal
from django.test import override_settings
from django_celery_beat.models import (
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    PeriodicTasks,
)

from django_workflows import launch, workflow
from django_workflows.canvas import compile_canvas
from django_workflows.definitions import registry
from django_workflows.exceptions import InvalidPayload
from django_workflows.models import WorkflowSchedule
from django_workflows.models import WorkflowStatus as W
from django_workflows.schedules import LAUNCH_TASK
from django_workflows.yaml_files import (
    SyncResult,
    check_files,
    load_definition_files,
    load_errors,
    load_file,
    sync_schedules,
)
from tests.helpers import until
from tests.testapp.models import Call
from tests.testapp.tasks import add

TESTAPP = Path(__file__).resolve().parent.parent / "testapp"


def write(folder: Path, text: str, name: str = "workflows.yml") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def dag_of(name: str, payload: dict | None = None):
    return compile_canvas(registry.get(name).build(payload or {}))


@pytest.fixture
def loaded(tmp_path):
    """Load YAML text as the app does at startup; the configured files come back after."""

    def load(text: str, **files: str):
        for name, content in files.items():
            write(tmp_path, content, name)
        return load_definition_files([write(tmp_path, text)])

    yield load
    load_definition_files()


# -- the files the test settings list ------------------------------------------------------------


def test_the_configured_files_load_cleanly_after_the_workflows_modules():
    assert load_errors() == []
    names = {d.name for d in registry}
    assert {"example.ETL", "example.RANDOMS", "example.NESTED", "example.FOREACH"} <= names
    assert "demo.STATS" in names  # the example project's file
    assert {"arith", "etl"} <= names  # workflows.py modules still there
    etl = registry.get("example.ETL")
    assert etl.description == "Extract numbers, multiply them, load them."
    assert etl.on_success.task == "SUCCESS_HANDLER" and etl.on_failure.task == "ERROR_HANDLER"
    # director's schema rule: a name without extension is schemas/NAME.json
    assert registry.get("example.RANDOMS").schema["required"] == ["start", "end"]


def test_director_chain_compiles_to_a_chain_with_the_payload_everywhere():
    payload = {"numbers": [1, 2]}
    dag = compile_canvas(registry.get("example.ETL").build(payload, "run-1"))

    kwargs = {"workflow_id": "run-1", "payload": payload}
    assert [(n.task, n.args, n.kwargs, n.input, n.parents) for n in dag.nodes] == [
        ("EXTRACT", [None], kwargs, None, []),  # director's start task gave None
        ("TRANSFORM", [], kwargs, 0, [0]),
        ("LOAD", [], kwargs, 1, [1]),
    ]
    assert dag.result == 2


def test_a_group_hands_the_list_of_its_results_to_the_next_task():
    dag = dag_of("example.RANDOMS", {"start": 1, "end": 9})
    assert [(n.task, n.args, n.input) for n in dag.nodes] == [
        ("RANDOM", [None], None),
        ("RANDOM", [None], None),
        ("ADD_RANDOMS", [], [0, 1]),
    ]


def test_nested_groups_and_chains_compile_to_one_dag():
    dag = dag_of("example.NESTED")
    assert [(n.task, n.input, n.parents) for n in dag.nodes] == [
        ("EXTRACT", None, []),
        ("TRANSFORM", 0, [0]),  # the chain in the group
        ("TOTAL", 1, [1]),
        ("COUNT", 0, [0]),  # the group in the group
        ("TOTAL", 0, [0]),
        ("JOIN", [2, 3, 4], [2, 3, 4]),
    ]
    assert dag.native_warnings == []  # no chord objects: the YAML's structure as written


def test_foreach_compiles_to_a_map_node_with_its_args_kwargs_and_options():
    dag = dag_of("example.FOREACH", {"numbers": [1]})
    scale = dag.nodes[1]
    assert (scale.task, scale.map, scale.input) == ("SCALE", True, 0)
    assert scale.kwargs == {"factor": 2, "workflow_id": None, "payload": {"numbers": [1]}}
    assert scale.options == {"priority": 5}
    assert (dag.nodes[2].task, dag.nodes[2].input) == ("TOTAL", 1)


def test_the_schema_refuses_a_bad_payload_with_every_error():
    with pytest.raises(InvalidPayload) as error:
        launch("example.RANDOMS", {"start": "one", "extra": 1})
    messages = {(e["path"], e["message"]) for e in error.value.errors}
    assert ("start", "'one' is not of type 'integer'") in messages
    assert ("", "'end' is a required property") in messages
    assert ("", "Additional properties are not allowed ('extra' was unexpected)") in messages


# -- end to end on the real worker --------------------------------------------------------------


def ran(wf) -> dict[str, list[tuple[list, dict]]]:
    """What each task of the run really received: {task: [(args, kwargs), ...]}."""
    ids = [str(pk) for pk in wf.task_runs.values_list("pk", flat=True)]
    seen: dict[str, list] = {}
    for call in Call.objects.filter(task_id__in=ids).order_by("id"):
        seen.setdefault(call.task, []).append((call.args, call.kwargs))
    return seen


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
class TestEndToEnd:
    def test_director_etl_chain(self, worker):
        payload = {"numbers": [1, 2, 3]}
        wf = launch("example.ETL", payload).wait(timeout=30)

        assert wf.status == W.SUCCESS
        assert wf.result == {"loaded": 3, "total": 60}
        until(lambda: Call.objects.filter(task="SUCCESS_HANDLER").exists(), what="the hook")
        kwargs = {"workflow_id": str(wf.pk), "payload": payload}
        assert ran(wf) == {
            "EXTRACT": [([None], kwargs)],  # first: None, director's start task's result
            "TRANSFORM": [([[1, 2, 3]], kwargs)],
            "LOAD": [([[10, 20, 30]], kwargs)],
            # the success hook, linked after director's end task (result None)
            "SUCCESS_HANDLER": [([None], kwargs)],
        }

    def test_director_group_example(self, worker):
        payload = {"start": 1, "end": 100, "seed": 7}
        number = random.Random(7).randint(1, 100)
        wf = launch("example.RANDOMS", payload).wait(timeout=30)

        assert wf.status == W.SUCCESS and wf.result == 2 * number
        calls = ran(wf)
        kwargs = {"workflow_id": str(wf.pk), "payload": payload}
        assert calls["RANDOM"] == [([None], kwargs)] * 2
        assert calls["ADD_RANDOMS"] == [([[number, number]], kwargs)]

    def test_nested_group_and_chain(self, worker):
        payload = {"numbers": [1, 2, 3], "tag": "nested"}
        wf = launch("example.NESTED", payload).wait(timeout=30)

        assert wf.status == W.SUCCESS
        # [TOTAL(TRANSFORM) = 60, COUNT = 3, TOTAL = 6], then the payload's tag
        assert wf.result == {"parts": [60, 3, 6], "tag": "nested"}
        calls = ran(wf)
        kwargs = {"workflow_id": str(wf.pk), "payload": payload}
        assert calls["TRANSFORM"] == [([[1, 2, 3]], kwargs)]
        assert sorted(args for args, _ in calls["TOTAL"]) == [[[1, 2, 3]], [[10, 20, 30]]]
        assert calls["COUNT"] == [([[1, 2, 3]], kwargs)]
        assert calls["JOIN"] == [([[60, 3, 6]], kwargs)]
        assert wf.tasks_total == 6

    def test_foreach(self, worker):
        wf = launch("example.FOREACH", {"numbers": [1, 2, 3]}).wait(timeout=30)

        assert wf.status == W.SUCCESS and wf.result == 12
        scaled = ran(wf)["SCALE"]
        assert sorted(args[0] for args, _ in scaled) == [1, 2, 3]
        assert all(kwargs["factor"] == 2 for _, kwargs in scaled)

    def test_the_failure_hook_is_called_as_director_calls_it(self, worker):
        # LOAD cannot sum strings
        wf = launch("example.ETL", {"numbers": "abc"}).wait(timeout=30)

        assert wf.status == W.FAILURE
        hook = until(lambda: Call.objects.filter(task="ERROR_HANDLER").first(), what="the hook")
        assert (hook.args, hook.kwargs) == ([], {"workflow_id": str(wf.pk), "payload": {
            "numbers": "abc"}})  # fmt: skip
        assert not Call.objects.filter(task="SUCCESS_HANDLER").exists()


# -- queue, options, args, kwargs ---------------------------------------------------------------


def test_queue_default_customs_and_per_task_options_end_up_on_the_nodes(loaded):
    errors = loaded(
        """
        routed.FLOW:
          queue:
            default: main
            customs:
              TRANSFORM: heavy
              NOTIFY: hooks
          tasks:
            - EXTRACT
            - TRANSFORM
            - SCALE:
                args: [3]
                kwargs: {factor: 2}
                options: {queue: urgent, priority: 9, countdown: 1.5}
            - ONE:
                type: group
                tasks: [LOAD]
          hooks:
            success: NOTIFY
            failure: FAILED
        single.QUEUE:
          queue: only
          tasks: [EXTRACT]
        """
    )
    assert errors == []
    dag = dag_of("routed.FLOW", {"p": 1})
    run = {"workflow_id": None, "payload": {"p": 1}}  # no run id in a preview
    assert [(n.task, n.args, n.kwargs, n.options) for n in dag.nodes] == [
        ("EXTRACT", [None], run, {"queue": "main"}),
        ("TRANSFORM", [], run, {"queue": "heavy"}),
        ("SCALE", [3], {"factor": 2, **run}, {"queue": "urgent", "priority": 9,
                                              "countdown": 1.5}),
        ("LOAD", [], run, {"queue": "main"}),
    ]  # fmt: skip
    # as in Celery and director, a group of one task is that task: no one-item list
    assert dag.result == 3
    definition = registry.get("routed.FLOW")
    on_success, on_failure = definition.on_success, definition.on_failure
    assert (on_success.task, on_success.options) == ("NOTIFY", {"queue": "hooks"})
    assert (on_failure.task, on_failure.options) == ("FAILED", {"queue": "main"})
    assert [n.options for n in dag_of("single.QUEUE").nodes] == [{"queue": "only"}]


def test_foreach_by_task_name_and_every_build_is_new(loaded):
    errors = loaded(
        """
        map.IT:
          tasks:
            - EXTRACT
            - SCALE: {type: foreach}
            - SCALE:
                type: foreach
                kwargs: {factor: 3}
        """
    )
    assert errors == []
    dag = dag_of("map.IT", {"a": 1})
    run = {"workflow_id": None, "payload": {"a": 1}}
    assert [(n.task, n.map, n.input, n.kwargs) for n in dag.nodes] == [
        ("EXTRACT", False, None, run),
        ("SCALE", True, 0, run),
        ("SCALE", True, 1, {"factor": 3, **run}),
    ]
    definition = registry.get("map.IT")
    first = definition.build({"a": 1})
    first.tasks[2].kwargs["task"].kwargs["factor"] = 99
    assert dag_of("map.IT", {"a": 1}).nodes[2].kwargs["factor"] == 3


# -- errors: file, line, key path, problem ------------------------------------------------------


def problems(tmp_path, text: str, **files: str) -> list:
    for name, content in files.items():
        write(tmp_path, content, name)
    return load_file(write(tmp_path, text)).errors


ERRORS = {
    "syntax": (
        """
        example.X:
          tasks: [A, B
        example.Y:
          tasks: [C]
        """,
        "E003",
        "",
        "invalid YAML",
        3,
    ),
    "not a mapping": ("- A\n- B\n", "E004", "", "must map workflow names", 1),
    "empty file": ("# nothing\n", "E004", "", "the file is empty", None),
    "workflow not a mapping": ("example.X: [A, B]\n", "E004", "example.X", "must be a mapping", 1),
    "missing tasks": (
        """
        example.X:
          description: no tasks
        """,
        "E004",
        "example.X",
        "a workflow needs tasks",
        2,
    ),
    "empty tasks": ("example.X:\n  tasks: []\n", "E004", "example.X > tasks", "tasks is empty", 2),
    "tasks not a list": (
        "example.X:\n  tasks: A\n",
        "E004",
        "example.X > tasks",
        "tasks must be a list, got a string 'A'",
        2,
    ),
    "group without tasks": (
        """
        example.ETL:
          tasks:
            - A
            - B
            - GROUP_1:
                type: group
        """,
        "E004",
        "example.ETL > tasks[2] > GROUP_1",
        "a group needs tasks",
        5,
    ),
    "group with empty tasks": (
        """
        example.ETL:
          tasks:
            - A
            - B
            - GROUP_1:
                type: group
                tasks: []
        """,
        "E004",
        "example.ETL > tasks[2] > GROUP_1 > tasks",
        "tasks is empty",
        7,
    ),
    "bad indentation": (
        """
        example.X:
          tasks:
            - A
            - GROUP_1:
              type: group
              tasks: [B, C]
        """,
        "E004",
        "example.X > tasks[1]",
        "got 3 keys (GROUP_1, type, tasks)",
        4,
    ),
    "unknown type": (
        """
        example.X:
          tasks:
            - A
            - G:
                type: chord
                tasks: [B]
        """,
        "E004",
        "example.X > tasks[1] > G > type",
        "unknown type 'chord'; a type is one of task, group, chain, foreach",
        5,
    ),
    "unknown workflow key": (
        """
        example.X:
          tasks: [A]
          retries: 3
        """,
        "E004",
        "example.X",
        "unknown key 'retries'; a workflow takes tasks, description, queue, hooks, schema, "
        "periodic",
        3,
    ),
    "unknown group key": (
        """
        example.X:
          tasks:
            - G:
                type: group
                tasks: [A]
                queue: q
        """,
        "E004",
        "example.X > tasks[0] > G",
        "unknown key 'queue'; a group takes type, tasks",
        6,
    ),
    "unknown task key": (
        """
        example.X:
          tasks:
            - A:
                kwarg: {x: 1}
        """,
        "E004",
        "example.X > tasks[0] > A",
        "unknown key 'kwarg'; a task takes type, args, kwargs, options",
        4,
    ),
    "task item of a wrong type": (
        "example.X:\n  tasks: [A, 3]\n",
        "E004",
        "example.X > tasks[1]",
        "a task is a task name or a mapping NAME: {...}, got an integer 3",
        2,
    ),
    "nested bad item": (
        """
        example.X:
          tasks:
            - G:
                type: group
                tasks:
                  - C:
                      type: chain
                      tasks: [A, [B]]
        """,
        "E004",
        "example.X > tasks[0] > G > tasks[0] > C > tasks[1]",
        "got a list",
        8,
    ),
    "payload kwarg": (
        """
        example.X:
          tasks:
            - A:
                kwargs:
                  payload: 1
        """,
        "E004",
        "example.X > tasks[0] > A > kwargs > payload",
        "payload is reserved",
        5,
    ),
    "unknown option": (
        """
        example.X:
          tasks:
            - A:
                options: {link: B}
        """,
        "E004",
        "example.X > tasks[0] > A > options",
        "unknown key 'link'; options takes queue, routing_key",
        4,
    ),
    "bad option": (
        """
        example.X:
          tasks:
            - A:
                options:
                  priority: 300
        """,
        "E004",
        "example.X > tasks[0] > A > options > priority",
        "priority must be an integer from 0 to 255, got an integer 300",
        5,
    ),
    "foreach first": (
        """
        example.X:
          tasks:
            - A: {type: foreach}
            - B
        """,
        "E004",
        "example.X > tasks[0]",
        "foreach cannot come first",
        3,
    ),
    "bad queue": (
        "example.X:\n  tasks: [A]\n  queue: 3\n",
        "E004",
        "example.X > queue",
        "queue is a queue name or a mapping with default and customs, got an integer 3",
        3,
    ),
    "bad queue key": (
        """
        example.X:
          tasks: [A]
          queue:
            default: q
            custom:
              A: q2
        """,
        "E004",
        "example.X > queue",
        "unknown key 'custom'; queue takes default, customs",
        5,
    ),
    "bad queue customs": (
        """
        example.X:
          tasks: [A]
          queue:
            customs:
              A: [q2]
        """,
        "E004",
        "example.X > queue > customs > A",
        "customs maps a task name to a queue name",
        5,
    ),
    "bad hooks key": (
        """
        example.X:
          tasks: [A]
          hooks:
            succes: B
        """,
        "E004",
        "example.X > hooks",
        "unknown key 'succes'; hooks takes success, failure",
        4,
    ),
    "bad hook": (
        """
        example.X:
          tasks: [A]
          hooks:
            failure: [B]
        """,
        "E004",
        "example.X > hooks > failure",
        "a hook is a task name, got a list",
        4,
    ),
    "missing schema file": (
        "example.X:\n  tasks: [A]\n  schema: order\n",
        "E005",
        "example.X > schema",
        "schema file not found: {tmp}/schemas/order.json",
        3,
    ),
    "bad periodic interval": (
        """
        example.X:
          tasks: [A]
          periodic:
            interval: -60
        """,
        "E006",
        "example.X > periodic > interval",
        "interval is a positive number of seconds, got an integer -60",
        4,
    ),
    "interval as text": (
        """
        example.X:
          tasks: [A]
          periodic: {interval: hourly}
        """,
        "E006",
        "example.X > periodic > interval",
        "got a string 'hourly'",
        3,
    ),
    "crontab of 3 fields": (
        """
        example.X:
          tasks: [A]
          periodic: {crontab: "0 * *"}
        """,
        "E006",
        "example.X > periodic > crontab",
        'crontab is a string of 5 fields, "minute hour day-of-month month day-of-week"',
        3,
    ),
    "crontab minute 61": (
        """
        example.X:
          tasks: [A]
          periodic:
            crontab: "61 */3 * * *"
        """,
        "E006",
        "example.X > periodic > crontab",
        "invalid minute '61' in '61 */3 * * *'",
        4,
    ),
    "periodic without when": (
        """
        example.X:
          tasks: [A]
          periodic:
            payload: {a: 1}
        """,
        "E006",
        "example.X > periodic",
        "periodic needs interval (seconds) or crontab",
        3,
    ),
    "periodic unknown key": (
        """
        example.X:
          tasks: [A]
          periodic:
            interval: 5
            every: "* * * * *"
        """,
        "E006",
        "example.X > periodic",
        "unknown key 'every'; periodic takes interval, crontab, payload, overlap, timezone",
        5,
    ),
    "periodic interval and legacy schedule": (
        """
        example.X:
          tasks: [A]
          periodic:
            interval: 5
            schedule: 5
        """,
        "E006",
        "example.X > periodic",
        "periodic needs either interval (seconds) or crontab, not interval and schedule",
        3,
    ),
    "name without dot": (
        "ETL:\n  tasks: [A]\n",
        "E007",
        "ETL",
        "a workflow name is a string with a dot, as project.name; got a string 'ETL'",
        1,
    ),
    "name not a string": (
        "1.5:\n  tasks: [A]\n",
        "E007",
        "1.5",
        "got a number 1.5",
        1,
    ),
    "name twice": (
        """
        example.X:
          tasks: [A]
        example.X:
          tasks: [B]
        """,
        "E007",
        "example.X",
        "this workflow is defined twice in the file",
        3,
    ),
}


@pytest.mark.parametrize("case", ERRORS)
def test_each_error_names_file_line_key_path_and_problem(tmp_path, case):
    text, code, path, message, line = ERRORS[case]
    file = tmp_path / "workflows.yml"
    message = message.replace("{tmp}", str(tmp_path))

    errors = [e for e in problems(tmp_path, text) if not e.is_warning]

    assert errors, "no error reported"
    error = errors[0]
    assert (error.id, error.file, error.path, error.line) == (
        f"django_workflows.{code}",
        str(file),
        path,
        line,
    ), str(error)
    assert message in error.message, str(error)
    where = f"{file}, line {line}" if line else str(file)
    assert str(error).startswith(f"{where}: {path + ': ' if path else ''}")


def test_a_syntax_error_says_what_and_where(tmp_path):
    (error,) = problems(tmp_path, "example.X:\n  tasks:\n    - A\n   - B\n")
    assert error.id == "django_workflows.E003" and error.line == 4
    assert str(error).startswith(f"{tmp_path / 'workflows.yml'}, line 4: invalid YAML: ")


def test_every_problem_of_a_file_is_reported_not_only_the_first(tmp_path):
    errors = problems(
        tmp_path,
        """
        example.X:
          tasks: []
        Y:
          tasks: [A]
        example.Z:
          tasks: [A]
          queue: {default: 3}
          periodic: {interval: 0}
        """,
    )
    assert [(e.id[-4:], e.path, e.line) for e in errors] == [
        ("E004", "example.X > tasks", 2),
        ("E007", "Y", 3),
        ("E004", "example.Z > queue > default", 7),
        ("E006", "example.Z > periodic > interval", 8),
    ]


def test_schema_files_invalid_json_and_invalid_schema(tmp_path):
    text = """
    example.A:
      tasks: [A]
      schema: broken
    example.B:
      tasks: [A]
      schema: shared/odd.json
    example.C:
      tasks: [A]
      schema: good.yaml
      periodic:
        interval: 60
        payload: {n: "x"}
    """
    errors = problems(
        tmp_path,
        text,
        **{
            "schemas/broken.json": '{"type": "object",\n "properties": }',
            "shared/odd.json": '{"type": "nonsense"}',
            "good.yaml": "type: object\nproperties:\n  n: {type: integer}\n",
        },
    )
    assert [(e.id[-4:], e.path) for e in errors] == [
        ("E005", "example.A > schema"),
        ("E005", "example.B > schema"),
        ("E006", "example.C > periodic > payload"),
    ]
    assert "schemas/broken.json is not JSON: Expecting value (its line 2)" in errors[0].message
    assert "is not a valid JSON Schema: 'nonsense' is not valid" in errors[1].message
    assert "does not fit the workflow's schema: n: 'x' is not of type 'integer'" in str(errors[2])


def test_a_misspelt_custom_queue_is_a_warning_and_the_workflow_loads(tmp_path):
    result = load_file(
        write(
            tmp_path,
            """
            example.X:
              tasks: [EXTRACT]
              queue:
                customs: {EXTRCT: slow}
            """,
        )
    )
    (warning,) = result.errors
    assert warning.id == "django_workflows.W001" and warning.is_warning
    assert warning.path == "example.X > queue > customs > EXTRCT"
    assert [w.name for w in result.workflows] == ["example.X"]


def test_a_file_with_an_error_registers_none_of_its_workflows(loaded):
    errors = loaded(
        """
        good.ONE:
          tasks: [A]
        bad.TWO:
          tasks: []
        """
    )
    assert [e.path for e in errors] == ["bad.TWO > tasks"]
    assert "good.ONE" not in registry and "bad.TWO" not in registry
    # and reloading the configured files brings everything back
    assert load_definition_files() == []
    assert "example.ETL" in registry


def test_names_taken_by_workflows_py_or_another_file_are_errors(tmp_path):
    workflow("taken.NAME")(lambda payload: add.s(1, 1))
    try:
        first = write(tmp_path, "taken.NAME:\n  tasks: [A]\nshared.NAME:\n  tasks: [A]\n", "a.yml")
        second = write(
            tmp_path, "other.NAME:\n  tasks: [A]\n\nshared.NAME:\n  tasks: [B]\n", "b.yml"
        )
        workflows, errors = check_files([first, second])
    finally:
        registry.unregister("taken.NAME")
    assert workflows == []
    assert [(e.id[-4:], e.file, e.path, e.line) for e in errors] == [
        ("E008", str(first), "taken.NAME", 1),
        ("E008", str(second), "shared.NAME", 4),
    ]
    assert "already defined in tests.yaml_files.test_yaml." in errors[0].message
    assert f"already defined in {first}, line 3" in errors[1].message


def test_loading_never_raises(tmp_path, loaded):
    (tmp_path / "folder.yml").mkdir()
    (tmp_path / "binary.yml").write_bytes(b"\xff\xfe\x00")
    errors = load_definition_files(
        [tmp_path / "missing.yml", tmp_path / "folder.yml", tmp_path / "binary.yml"]
    )
    assert [e.id for e in errors] == ["django_workflows.E002"] * 3
    assert "no such file" in errors[0].message
    with override_settings(DJANGO_WORKFLOWS={"DEFINITION_FILES": "workflows.yml"}):
        (error,) = load_definition_files()
    assert error.id == "django_workflows.E001" and "must be a list of file paths" in str(error)


# -- the system check ---------------------------------------------------------------------------


def test_the_configured_files_pass_the_check():
    assert [m for m in checks.run_checks() if m.id.startswith("django_workflows")] == []


def test_the_check_reports_bad_files_and_stops_manage_py_check(tmp_path):
    bad = write(
        tmp_path,
        """
        example.ETL:
          tasks:
            - EXTRACT
            - TRANSFORM
            - GROUP_1:
                type: group
                tasks: []
        """,
    )
    broken = write(tmp_path, "example.X: [\n", "broken.yml")
    with override_settings(DJANGO_WORKFLOWS={"DEFINITION_FILES": [str(bad), broken]}):
        messages = [m for m in checks.run_checks() if m.id.startswith("django_workflows")]
        assert [(m.id, m.level) for m in messages] == [
            ("django_workflows.E004", checks.ERROR),
            ("django_workflows.E003", checks.ERROR),
        ]
        assert messages[0].msg == (
            f"{bad}, line 7: example.ETL > tasks[2] > GROUP_1 > tasks: "
            "tasks is empty: there is nothing to run."
        )
        assert messages[1].msg.startswith(f"{broken}, line 2: invalid YAML")

        with pytest.raises(SystemCheckError) as error:
            call_command("check")
    assert "django_workflows.E004" in str(error.value)
    assert "example.ETL > tasks[2] > GROUP_1 > tasks" in str(error.value)


def test_relative_paths_are_under_base_dir(tmp_path):
    write(tmp_path, "example.X:\n  tasks: []\n", "rel/flows.yml")
    with override_settings(
        BASE_DIR=tmp_path, DJANGO_WORKFLOWS={"DEFINITION_FILES": ["rel/flows.yml"]}
    ):
        (message,) = [m for m in checks.run_checks() if m.id.startswith("django_workflows")]
    assert message.msg.startswith(f"{tmp_path / 'rel' / 'flows.yml'}, line 2: ")


# -- periodic: beat schedules -------------------------------------------------------------------

PERIODIC = """
every.MINUTE:
  tasks: [EXTRACT]
  periodic:
    interval: 60
    payload: {numbers: [1]}
every.NIGHT:
  tasks: [EXTRACT]
  periodic:
    crontab: "30 2 * * 1-5"
    overlap: skip
never.SCHEDULED:
  tasks: [EXTRACT]
"""


def yaml_workflows(tmp_path, text: str):
    result = load_file(write(tmp_path, text))
    assert result.errors == []
    return result.workflows


@pytest.mark.django_db
class TestSyncSchedules:
    def test_interval_and_crontab_schedules_are_created(self, tmp_path):
        result = sync_schedules(yaml_workflows(tmp_path, PERIODIC))

        assert result.created == ["every.MINUTE (YAML)", "every.NIGHT (YAML)"]
        minute = PeriodicTask.objects.get(name="every.MINUTE (YAML)")
        assert minute.task == LAUNCH_TASK and minute.enabled
        assert json.loads(minute.kwargs) == {"name": "every.MINUTE", "payload": {"numbers": [1]}}
        assert (minute.interval.every, minute.interval.period) == (60, IntervalSchedule.SECONDS)
        assert minute.crontab is None
        night = PeriodicTask.objects.get(name="every.NIGHT (YAML)")
        cron = night.crontab
        assert (cron.minute, cron.hour, cron.day_of_month, cron.month_of_year) == (
            "30",
            "2",
            "*",
            "*",
        )
        assert cron.day_of_week == "1-5" and str(cron.timezone) == "UTC"
        assert json.loads(night.kwargs) == {"name": "every.NIGHT", "payload": {}}
        schedules = {s.definition: s.overlap for s in WorkflowSchedule.objects.all()}
        assert schedules == {"every.MINUTE": "allow", "every.NIGHT": "skip"}
        assert not PeriodicTask.objects.filter(name__startswith="never.").exists()

    def test_twice_changes_nothing(self, tmp_path):
        workflows = yaml_workflows(tmp_path, PERIODIC)
        sync_schedules(workflows)
        rows = lambda: (  # noqa: E731
            list(PeriodicTask.objects.values()),
            list(WorkflowSchedule.objects.values()),
            IntervalSchedule.objects.count(),
            CrontabSchedule.objects.count(),
            PeriodicTasks.last_change(),
        )
        before = rows()

        again = sync_schedules(workflows)

        assert again == SyncResult(unchanged=["every.MINUTE (YAML)", "every.NIGHT (YAML)"])
        assert rows() == before

    def test_a_changed_file_updates_its_schedules(self, tmp_path):
        sync_schedules(yaml_workflows(tmp_path, PERIODIC))
        before = PeriodicTasks.last_change()
        changed = PERIODIC.replace("interval: 60", "interval: 0.5").replace(
            "overlap: skip", "overlap: cancel_previous"
        )

        result = sync_schedules(yaml_workflows(tmp_path, changed))

        assert result.updated == ["every.MINUTE (YAML)", "every.NIGHT (YAML)"]
        interval = PeriodicTask.objects.get(name="every.MINUTE (YAML)").interval
        assert (interval.every, interval.period) == (500_000, IntervalSchedule.MICROSECONDS)
        night = WorkflowSchedule.objects.get(definition="every.NIGHT")
        assert night.overlap == "cancel_previous"
        assert PeriodicTasks.last_change() > before  # beat notices

    def test_an_edit_in_the_admin_is_put_back(self, tmp_path):
        workflows = yaml_workflows(tmp_path, PERIODIC)
        sync_schedules(workflows)
        PeriodicTask.objects.filter(name="every.MINUTE (YAML)").update(
            enabled=False, kwargs='{"name": "every.MINUTE", "payload": {}}'
        )

        assert sync_schedules(workflows).updated == ["every.MINUTE (YAML)"]
        minute = PeriodicTask.objects.get(name="every.MINUTE (YAML)")
        assert minute.enabled and json.loads(minute.kwargs)["payload"] == {"numbers": [1]}

    def test_removed_periodic_is_disabled_and_comes_back(self, tmp_path):
        sync_schedules(yaml_workflows(tmp_path, PERIODIC))
        other = PeriodicTask.objects.create(
            name="mine", task=LAUNCH_TASK, interval=IntervalSchedule.objects.first()
        )
        without = PERIODIC.replace(
            '  periodic:\n    crontab: "30 2 * * 1-5"\n    overlap: skip\n', ""
        )

        result = sync_schedules(yaml_workflows(tmp_path, without))

        assert result.disabled == ["every.NIGHT (YAML)"]
        assert result.unchanged == ["every.MINUTE (YAML)"]
        night = PeriodicTask.objects.get(name="every.NIGHT (YAML)")
        assert not night.enabled and WorkflowSchedule.objects.filter(periodic_task=night).exists()
        other.refresh_from_db()
        assert other.enabled  # not made from YAML: left alone

        assert sync_schedules(yaml_workflows(tmp_path, PERIODIC)).updated == ["every.NIGHT (YAML)"]
        assert PeriodicTask.objects.get(name="every.NIGHT (YAML)").enabled

    def test_nothing_is_disabled_while_a_configured_file_is_broken(self, tmp_path, loaded):
        loaded(PERIODIC)
        sync_schedules()
        loaded("every.MINUTE:\n  tasks: []\n")

        result = sync_schedules()

        assert result.disabled == [] and "could not be loaded" in result.kept_because
        assert PeriodicTask.objects.filter(enabled=True).count() == 2

    def test_migrate_syncs_the_loaded_files(self, tmp_path, loaded):
        loaded(PERIODIC)
        emit_post_migrate_signal(verbosity=0, interactive=False, db="default")
        assert set(PeriodicTask.objects.values_list("name", flat=True)) == {
            "every.MINUTE (YAML)",
            "every.NIGHT (YAML)",
        }


def test_a_task_name_this_process_does_not_know_is_a_warning(tmp_path):
    flows = write(tmp_path, "example.X:\n  tasks: [EXTRACT, EXTRCT]\n  hooks: {success: NOTIFI}\n")
    with override_settings(DJANGO_WORKFLOWS={"DEFINITION_FILES": [flows]}):
        messages = [m for m in checks.run_checks() if m.id.startswith("django_workflows")]
        call_command("check")  # warnings do not stop commands
    assert [(m.id, m.level) for m in messages] == [("django_workflows.W002", checks.WARNING)] * 2
    assert messages[0].msg == (
        f"{flows}, line 1: example.X: task 'EXTRCT' is not registered with this process's "
        "Celery app."
    )
    assert "NOTIFI" in messages[1].msg and "SILENCED_SYSTEM_CHECKS" in messages[1].hint
