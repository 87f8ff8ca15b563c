"""django_workflows.testing, as a project's test suite uses it.

The README's examples are files of a small project (tests/user_project/,
its own settings: SQLite, the memory broker) run here in a process of
their own, as a user's test suite would run them.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from django_workflows import launch, launch_canvas
from django_workflows.testing import assert_failed, assert_succeeded, describe, eager, stub_task
from tests.testapp.tasks import add

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ROOT / "tests" / "user_project"
#: Our suite's settings (Celery reads CELERY_BROKER_URL from the environment
#: too): the user's project has its own.
OURS = ("DJANGO_SETTINGS_MODULE", "CELERY_", "DW_")


def test_the_readme_examples_pass_as_written():
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q"],
        cwd=PROJECT,
        env={k: v for k, v in os.environ.items() if not k.startswith(OURS)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\b5 passed\b", done.stdout), done.stdout


def test_the_readme_shows_the_example_files_verbatim():
    readme = (ROOT / "README.rst").read_text()
    section = readme.split("Testing your workflows\n=")[1].split("\n=====")[0]
    for name in ("test_checkout_pytest.py", "test_checkout_testcase.py", "shop/workflows.py"):
        text = (PROJECT / name).read_text()
        shown = "\n".join(f"    {line}" if line else "" for line in text.splitlines())
        assert shown in section, f"README's 'Testing your workflows' lacks {name} as it is"


@pytest.mark.django_db
def test_a_failed_run_is_explained(celery_app):
    with eager(celery_app):
        wf = launch("breaks", {"message": "no stock"})  # add | fail | add

    with pytest.raises(AssertionError) as info:
        assert_succeeded(wf)
    message = str(info.value)
    assert "is failure: 3/3 tasks finished" in message
    assert "node 1 tests.testapp.tasks.fail failed: ValueError: no stock" in message
    assert "raise ValueError(message)" in message  # the traceback
    assert "Never ran: node 2 tests.testapp.tasks.add (upstream_failed)" in message
    assert_failed(wf, task="fail")
    with pytest.raises(AssertionError, match="Expected task 'add' to fail"):
        assert_failed(wf, task="add")


@pytest.mark.django_db
def test_a_run_that_never_started_says_what_to_do(sender_dies):
    wf = launch_canvas(add.s(1, 1))
    assert "It has not finished: is a worker running it?" in describe(wf)
    with pytest.raises(AssertionError, match="Expected run .* to succeed"):
        assert_succeeded(wf)


@pytest.mark.django_db
def test_stub_task_replaces_one_task_only(celery_app, calls):
    with eager(celery_app), stub_task(add, returns=100):
        wf = launch_canvas(add.s(1, 1) | add.s(2))
    assert_succeeded(wf, result=100)
    with eager(celery_app):
        assert launch_canvas(add.s(1, 1) | add.s(2)).result == 4  # the stub is gone
    with eager(celery_app), stub_task("tests.testapp.tasks.add", raises=KeyError("x")):
        failed = launch_canvas(add.s(1, 1))
    assert_failed(failed, task="add")


def test_check_warns_of_a_memory_broker_outside_eager_mode(celery_app, monkeypatch):
    from django_workflows.checks import W_MEMORY_BROKER, check_broker

    assert check_broker() == []  # the suite's filesystem broker
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)  # Celery prefers it to the setting
    monkeypatch.setitem(celery_app.conf, "broker_url", "memory://")
    [warning] = check_broker()
    assert warning.id == W_MEMORY_BROKER and "CELERY_TASK_ALWAYS_EAGER" in warning.hint
    with eager(celery_app):
        assert check_broker() == []
