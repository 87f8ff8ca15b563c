"""``manage.py workflows``: resume and cancel from a shell."""

import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from django_workflows import launch_canvas
from django_workflows.models import Workflow
from django_workflows.models import WorkflowStatus as W
from django_workflows.yaml_files import load_definition_files
from tests.helpers import node, until
from tests.testapp.models import Switch
from tests.testapp.tasks import add, gate, nap

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_resume_dry_run_prints_the_plan_then_resume_runs_it(worker, capsys):
    wf = launch_canvas(add.s(1, 1) | gate.s() | add.s(1)).wait()

    call_command("workflows", "resume", str(wf.pk), "--dry-run")
    out = capsys.readouterr().out
    assert "would run again: #1 tests.testapp.tasks.gate (failure)" in out
    assert "would run again: #2 tests.testapp.tasks.add (upstream_failed)" in out
    assert "reuses the result of #0 tests.testapp.tasks.add" in out
    wf.refresh_from_db()
    assert wf.status == W.FAILURE

    Switch.objects.create(key="gate")
    call_command("workflows", "resume", str(wf.pk))
    assert wf.wait().status == W.SUCCESS and wf.result == 3


def test_cancel_and_errors_are_clear(worker, capsys):
    wf = launch_canvas(nap.s(2) | add.si(1, 1))
    until(lambda: node(wf, 0).status == "running")
    call_command("workflows", "cancel", str(wf.pk))
    assert f"{wf.pk} canceled" in capsys.readouterr().out

    with pytest.raises(CommandError, match="it is canceled"):
        call_command("workflows", "cancel", str(wf.pk))
    with pytest.raises(CommandError, match="No workflow run 'nope'"):
        call_command("workflows", "resume", "nope")


def test_list_and_show_describe_the_definitions(capsys):
    call_command("workflows", "list")
    assert "arith\tAdds, fans out, sums." in capsys.readouterr().out
    call_command("workflows", "show", "arith")
    out = capsys.readouterr().out
    assert '"required": ["x", "y"]' in out and 'example payload: {"x": 0, "y": 0, "tag": ""}' in out
    assert "#3 tests.testapp.tasks.tsum after #1, #2" in out
    with pytest.raises(CommandError, match="Unknown workflow 'nope'. Registered workflows: "):
        call_command("workflows", "show", "nope")


def test_run_wait_prints_progress_and_exits_by_outcome(worker, capsys):
    call_command("workflows", "run", "arith", "--payload", '{"x": 2, "y": 3}', "--wait")
    out = capsys.readouterr().out
    assert "success: 4/4 finished" in out and "result: 13" in out

    with pytest.raises(SystemExit) as exit_:
        call_command("workflows", "run", "breaks", "--wait")
    assert exit_.value.code == 1
    captured = capsys.readouterr()
    assert "failure: 3/3 finished, 1 failed" in captured.out
    assert "#1 tests.testapp.tasks.fail: ValueError: boom" in captured.err


def test_run_refuses_a_bad_payload_listing_every_error():
    with pytest.raises(CommandError) as error:
        call_command("workflows", "run", "arith", "--payload", '{"x": "a"}')
    assert "x: 'a' is not of type 'integer'" in str(error.value)
    assert "(payload): 'y' is a required property" in str(error.value)
    with pytest.raises(CommandError, match="--payload is not JSON"):
        call_command("workflows", "run", "arith", "--payload", "{x")


def test_status_relaunch_and_rerun(worker, capsys):
    wf = launch_canvas(add.s(1, 1) | add.s(2)).wait()
    call_command("workflows", "status", str(wf.pk))
    out = capsys.readouterr().out
    assert "success: 2/2 finished" in out and "#1 tests.testapp.tasks.add success" in out

    call_command("workflows", "rerun", str(wf.pk), "--from", "1")
    assert "runs again: #1 tests.testapp.tasks.add" in capsys.readouterr().out
    assert wf.wait().status == W.SUCCESS and node(wf, 1).attempts == 2

    call_command("workflows", "relaunch", str(wf.pk))
    new = Workflow.objects.get(pk=capsys.readouterr().out.strip())
    assert new.relaunched_from == wf and new.wait().result == 4


def test_prune_deletes_old_finished_runs_in_batches(monkeypatch, capsys):
    monkeypatch.setattr("django_workflows.engine.progress.dispatch", lambda runs, results: None)
    runs = [launch_canvas(add.s(1, 1), name=name) for name in ["a"] * 4 + ["b"] * 2]
    Workflow.objects.update(status=W.SUCCESS)
    live = launch_canvas(add.s(1, 1), name="a")  # running: never pruned
    for days, run in enumerate(reversed(runs)):
        Workflow.objects.filter(pk=run.pk).update(created=timezone.now() - timedelta(days=days))

    call_command("workflows", "prune", "--keep", "2", "--batch-size", "1")
    assert "2 finished run(s) deleted." in capsys.readouterr().out
    assert set(Workflow.objects.values_list("pk", flat=True)) == {
        live.pk,
        runs[2].pk,
        runs[3].pk,
        runs[4].pk,
        runs[5].pk,
    }

    call_command("workflows", "prune", "--older-than", "2.5")
    assert "1 finished run(s) deleted." in capsys.readouterr().out
    assert not Workflow.objects.filter(pk=runs[2].pk).exists()
    with pytest.raises(CommandError, match="Say what to prune"):
        call_command("workflows", "prune")


def test_prune_never_deletes_a_run_resumed_after_it_was_selected(monkeypatch, capsys):
    from django.db import connection

    from django_workflows import engine

    monkeypatch.setattr("django_workflows.engine.progress.dispatch", lambda runs, results: None)
    wf = launch_canvas(add.s(1, 1), name="a")
    engine.task_started(str(node(wf, 0).pk), str(wf.pk), "w1")
    engine.task_failed(str(node(wf, 0).pk), ValueError("boom"))
    Workflow.objects.filter(pk=wf.pk).update(created=timezone.now() - timedelta(days=9))
    resumed = []

    def resume_after_the_first_select(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if not resumed and sql.startswith("SELECT") and "django_workflows_workflow" in sql:
            resumed.append(sql)
            Workflow.objects.get(pk=wf.pk).resume()  # another person, meanwhile
        return result

    with connection.execute_wrapper(resume_after_the_first_select):
        call_command("workflows", "prune", "--older-than", "1")

    assert resumed and "0 finished run(s) deleted." in capsys.readouterr().out
    wf.refresh_from_db()
    assert wf.status == W.RUNNING and wf.task_runs.count() == 1


@pytest.fixture
def yaml_file(tmp_path):
    """A YAML definition file loaded as at startup; the configured files come back after."""

    def load(text: str):
        path = tmp_path / "workflows.yml"
        path.write_text(text)
        assert load_definition_files([path]) == []

    yield load
    load_definition_files()


def test_sync_schedules_creates_updates_and_disables_yaml_schedules(yaml_file, capsys):
    yaml_file(
        "nightly.ETL:\n"
        "  tasks: [EXTRACT, TRANSFORM, LOAD]\n"
        "  periodic: {crontab: '0 3 * * *', payload: {numbers: [1, 2]}}\n"
        "hourly.ETL:\n"
        "  tasks: [EXTRACT]\n"
        "  periodic: {interval: 3600}\n"
    )
    call_command("workflows", "sync-schedules")
    out = capsys.readouterr().out
    assert "created: nightly.ETL (YAML)" in out and "created: hourly.ETL (YAML)" in out
    assert "2 created, 0 updated, 0 disabled, 0 unchanged." in out
    task = PeriodicTask.objects.get(name="nightly.ETL (YAML)")
    assert json.loads(task.kwargs) == {"name": "nightly.ETL", "payload": {"numbers": [1, 2]}}
    assert task.crontab.hour == "3" and task.workflow_schedule.definition == "nightly.ETL"

    call_command("workflows", "sync-schedules")
    assert "0 created, 0 updated, 0 disabled, 2 unchanged." in capsys.readouterr().out

    yaml_file("nightly.ETL:\n  tasks: [EXTRACT]\n  periodic: {crontab: '0 4 * * *'}\n")
    call_command("workflows", "sync-schedules")
    out = capsys.readouterr().out
    assert "updated: nightly.ETL (YAML)" in out and "disabled: hourly.ETL (YAML)" in out
    assert not PeriodicTask.objects.get(name="hourly.ETL (YAML)").enabled


def test_list_and_show_include_yaml_definitions(capsys):
    call_command("workflows", "list")
    assert "example.ETL\tExtract numbers, multiply them, load them." in capsys.readouterr().out
    call_command("workflows", "show", "example.RANDOMS")
    out = capsys.readouterr().out
    assert 'example payload: {"start": 1, "end": 10, "seed": 0}' in out
    assert "#0 RANDOM\n#1 RANDOM\n#2 ADD_RANDOMS after #0, #1" in out
