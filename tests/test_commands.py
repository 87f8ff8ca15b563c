"""``manage.py workflows``: resume and cancel from a shell."""

import pytest
from django.core.management import CommandError, call_command

from django_workflows import launch_canvas
from django_workflows.models import WorkflowStatus as W
from tests.test_operations import node, until
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
