"""Whole-workflow schedules: the form, the fire and its overlap policy, beat end to end."""

import json
import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from django_workflows.exceptions import InvalidPayload, UnknownWorkflow
from django_workflows.forms import WorkflowScheduleForm
from django_workflows.models import OverlapPolicy, ScheduleFire, Workflow, WorkflowSchedule
from django_workflows.models import WorkflowStatus as W
from django_workflows.schedules import LAUNCH_TASK, beat_schedule, fire, save_schedule
from tests.helpers import until
from tests.worker import start_beat, stop_worker

BASE = {
    "name": "nightly",
    "definition": "arith",
    "payload": '{"x": 1, "y": 2}',
    "overlap": "allow",
    "enabled": "on",
}

KINDS = {
    "interval": {"kind": "interval", "every": "10", "period": "seconds"},
    "crontab": {
        "kind": "crontab",
        "minute": "30",
        "hour": "2",
        "day_of_week": "1-5",
        "day_of_month": "*",
        "month_of_year": "*",
        "timezone": "Europe/Paris",
    },
    "solar": {"kind": "solar", "event": "sunrise", "latitude": "48.85", "longitude": "2.35"},
    "clocked": {"kind": "clocked", "clocked_time": "2030-01-01 06:00:00"},
}


def save_form(data: dict, instance: WorkflowSchedule | None = None) -> WorkflowSchedule:
    form = WorkflowScheduleForm(data=data, instance=instance)
    assert form.is_valid(), form.errors
    return form.save()


@pytest.fixture
def no_dispatch(monkeypatch):
    monkeypatch.setattr("django_workflows.engine.progress.dispatch", lambda runs, results: None)


# -- the form -------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_of_schedule_becomes_a_beat_periodic_task(kind):
    schedule = save_form({**BASE, **KINDS[kind]})

    task = PeriodicTask.objects.get(name="nightly")
    assert schedule.periodic_task == task and schedule.definition == "arith"
    assert task.task == LAUNCH_TASK
    assert json.loads(task.kwargs) == {"name": "arith", "payload": {"x": 1, "y": 2}}
    assert [k for k in KINDS if getattr(task, k)] == [kind]
    if kind == "crontab":
        assert (task.crontab.hour, str(task.crontab.timezone)) == ("2", "Europe/Paris")
    if kind == "clocked":
        assert task.one_off  # beat runs a clocked schedule once


@pytest.mark.django_db
def test_editing_a_schedule_updates_its_periodic_task_and_shows_what_it_holds():
    schedule = save_form({**BASE, **KINDS["interval"]})
    form = WorkflowScheduleForm(instance=schedule)
    assert (form.initial["kind"], form.initial["every"], form.initial["payload"]) == (
        "interval",
        10,
        {"x": 1, "y": 2},
    )

    save_form(
        {**BASE, **KINDS["crontab"], "payload": '{"x": 5, "y": 5}', "enabled": ""},
        instance=schedule,
    )

    task = PeriodicTask.objects.get()
    assert task.interval is None and task.crontab is not None and not task.enabled
    assert json.loads(task.kwargs)["payload"] == {"x": 5, "y": 5}


@pytest.mark.django_db
def test_a_payload_failing_the_schema_is_refused_with_every_message():
    form = WorkflowScheduleForm(
        data={**BASE, **KINDS["interval"], "payload": '{"x": "one", "y": -1}'}
    )
    assert not form.is_valid()
    assert form.errors["payload"] == [
        "x: 'one' is not of type 'integer'",
        "y: -1 is less than the minimum of 0",
    ]
    assert not PeriodicTask.objects.exists()


@pytest.mark.django_db
def test_unknown_workflow_missing_fields_and_bad_crontab_are_refused():
    form = WorkflowScheduleForm(data={**BASE, "definition": "nope", "kind": "interval"})
    assert not form.is_valid()
    assert "definition" in form.errors and form.errors["every"] == [
        "Required for this kind of schedule."
    ]
    form = WorkflowScheduleForm(
        data={**BASE, **KINDS["crontab"], "minute": "61", "timezone": "Mars/Olympus"}
    )
    assert not form.is_valid()
    assert set(form.errors) == {"minute", "timezone"}


@pytest.mark.django_db
def test_deleting_a_schedule_deletes_its_periodic_task():
    save_form({**BASE, **KINDS["interval"]}).delete()
    assert not PeriodicTask.objects.exists()


@pytest.mark.django_db
def test_saving_a_schedule_again_writes_nothing_and_shares_its_beat_row():
    every = beat_schedule("interval", every=10, period="seconds")
    args = ("nightly", "arith", {"x": 1, "y": 2}, every)
    schedule, changed = save_schedule(*args)
    assert changed and schedule.periodic_task.interval == every
    assert beat_schedule("interval", every=10, period="seconds") == every
    at = timezone.now() + timedelta(days=1)
    assert beat_schedule("clocked", clocked_time=at) != beat_schedule("clocked", clocked_time=at)

    assert save_schedule(*args, periodic_task=schedule.periodic_task) == (schedule, False)
    assert save_schedule(*args, overlap="skip", periodic_task=schedule.periodic_task)[1]


@pytest.mark.django_db
def test_the_admin_pages_create_and_show_a_schedule(client):
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin)
    url = "/admin/django_workflows/workflowschedule/add/"
    assert client.get(url).status_code == 200

    bad = client.post(url, {**BASE, **KINDS["interval"], "payload": '{"x": 1}'})
    assert bad.status_code == 200
    assert "(payload): &#x27;y&#x27; is a required property" in bad.content.decode()

    good = client.post(url, {**BASE, **KINDS["interval"]})
    assert good.status_code == 302
    schedule = WorkflowSchedule.objects.get()
    page = client.get(f"/admin/django_workflows/workflowschedule/{schedule.pk}/change/")
    assert page.status_code == 200 and "nightly" in page.content.decode()
    listing = client.get("/admin/django_workflows/workflowschedule/").content.decode()
    assert "every 10 seconds" in listing


@pytest.mark.django_db(transaction=True)
def test_beats_own_admin_offers_the_launch_task_and_runs_filter_by_schedule(client, no_dispatch):
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin)
    beat_form = client.get("/admin/django_celery_beat/periodictask/add/").content.decode()
    assert f'value="{LAUNCH_TASK}"' in beat_form

    schedule = save_form({**BASE, **KINDS["interval"]})
    scheduled = fire("arith", {"x": 1, "y": 2}, periodic_task_name="nightly")
    other = fire("arith", {"x": 1, "y": 2})  # beat's own periodic task, no schedule of ours
    listing = client.get(
        f"/admin/django_workflows/workflow/?schedule__id__exact={schedule.pk}"
    ).content.decode()
    assert scheduled in listing and other not in listing
    page = client.get(f"/admin/django_workflows/workflowschedule/{schedule.pk}/change/")
    assert scheduled in page.content.decode()


# -- the fire -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_fire_records_the_run_and_links_it_to_its_schedule(no_dispatch):
    schedule = save_form({**BASE, **KINDS["interval"]})
    run_id = fire("arith", {"x": 1, "y": 2}, periodic_task_name="nightly")

    run = Workflow.objects.get(pk=run_id)
    assert run.schedule == schedule and list(schedule.runs.all()) == [run]
    assert schedule.fires.get().outcome == ScheduleFire.Outcome.LAUNCHED


@pytest.mark.django_db(transaction=True)
def test_skip_does_not_start_while_the_last_run_is_going_and_says_so(no_dispatch):
    save_form({**BASE, **KINDS["interval"], "overlap": OverlapPolicy.SKIP})
    first = fire("arith", {"x": 1, "y": 2}, periodic_task_name="nightly")
    assert fire("arith", {"x": 1, "y": 2}, periodic_task_name="nightly") is None

    skipped = ScheduleFire.objects.get(outcome=ScheduleFire.Outcome.SKIPPED)
    assert f"run {first} of this schedule is still running" in skipped.message
    assert Workflow.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_cancel_previous_cancels_the_last_run_and_starts_a_new_one(no_dispatch):
    save_form({**BASE, **KINDS["interval"], "overlap": OverlapPolicy.CANCEL_PREVIOUS})
    first = fire("arith", {"x": 1, "y": 2}, periodic_task_name="nightly")
    second = fire("arith", {"x": 1, "y": 2}, periodic_task_name="nightly")

    assert Workflow.objects.get(pk=first).status == W.CANCELED
    assert Workflow.objects.get(pk=second).status == W.RUNNING
    assert f"Canceled the previous run(s): {first}" in ScheduleFire.objects.first().message


@pytest.mark.django_db(transaction=True)
def test_a_periodic_task_edited_in_beats_admin_with_a_bad_payload_fails_visibly(caplog):
    save_form({**BASE, **KINDS["interval"]})
    task = PeriodicTask.objects.get()
    task.kwargs = json.dumps({"name": "arith", "payload": {"x": "bad"}})
    task.save()

    with pytest.raises(InvalidPayload):
        fire(**json.loads(task.kwargs), periodic_task_name="nightly")
    with pytest.raises(UnknownWorkflow):
        fire("removed", {}, periodic_task_name="nightly")

    failed = list(ScheduleFire.objects.filter(outcome=ScheduleFire.Outcome.FAILED))
    assert len(failed) == 2 and "Unknown workflow 'removed'" in failed[0].message
    assert "x: 'bad' is not of type 'integer'" in failed[1].message
    assert "Schedule nightly could not launch 'removed'" in caplog.text
    assert not Workflow.objects.exists()


# -- who may schedule, and a fire whose owner lost the right --------------------------------

SCHEDULES = "/admin/django_workflows/workflowschedule/"


def staff(username: str, *codenames: str):
    from django.contrib.auth.models import Permission

    person = get_user_model().objects.create_user(username, password="pw", is_staff=True)
    person.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return person


def refuse_everything(user, definition) -> bool:
    return False


@pytest.mark.django_db
def test_saving_a_schedule_needs_the_right_to_launch_its_workflow(client, settings):
    client.force_login(staff("planner", "add_workflowschedule", "view_workflowschedule"))
    refused = client.post(f"{SCHEDULES}add/", {**BASE, **KINDS["interval"]})
    assert refused.status_code == 200
    assert "You are not allowed to launch workflow &#x27;arith&#x27;" in refused.content.decode()
    assert not WorkflowSchedule.objects.exists() and not PeriodicTask.objects.exists()

    owner = staff("owner", "add_workflowschedule", "view_workflowschedule", "add_workflow")
    client.force_login(owner)
    settings.DJANGO_WORKFLOWS = {"CAN_LAUNCH": "tests.test_schedules.refuse_everything"}
    assert client.post(f"{SCHEDULES}add/", {**BASE, **KINDS["interval"]}).status_code == 200
    assert not WorkflowSchedule.objects.exists()

    settings.DJANGO_WORKFLOWS = {}
    assert client.post(f"{SCHEDULES}add/", {**BASE, **KINDS["interval"]}).status_code == 302
    assert WorkflowSchedule.objects.get().owner == owner


@pytest.mark.django_db(transaction=True)
def test_a_fire_whose_owner_lost_the_right_fails_visibly(client, no_dispatch, caplog):
    from django.contrib.auth.models import Permission

    from django_workflows.exceptions import LaunchRefused

    owner = staff("owner", "add_workflowschedule", "add_workflow")
    client.force_login(owner)
    assert client.post(f"{SCHEDULES}add/", {**BASE, **KINDS["interval"]}).status_code == 302
    assert fire("arith", {"x": 1, "y": 2}, periodic_task_name="nightly")

    owner.user_permissions.remove(Permission.objects.get(codename="add_workflow"))
    with pytest.raises(LaunchRefused):
        fire("arith", {"x": 1, "y": 2}, periodic_task_name="nightly")
    failed = ScheduleFire.objects.get(outcome=ScheduleFire.Outcome.FAILED)
    assert "owner is not allowed to launch workflow 'arith'" in failed.message
    assert "Schedule nightly could not launch 'arith'" in caplog.text
    assert Workflow.objects.count() == 1


# -- history stays ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("deleted", ["schedule", "periodic task"])
def test_fires_outlive_their_schedule_and_keep_its_name(no_dispatch, deleted):
    schedule = save_form({**BASE, **KINDS["interval"]})
    run = fire("arith", {"x": 1, "y": 2}, periodic_task_name="nightly")
    if deleted == "schedule":
        schedule.delete()
    else:
        PeriodicTask.objects.get(name="nightly").delete()

    assert not WorkflowSchedule.objects.exists() and not PeriodicTask.objects.exists()
    fire_row = ScheduleFire.objects.get()
    assert (fire_row.schedule, fire_row.periodic_task_name) == (None, "nightly")
    assert str(fire_row.workflow_id) == run and Workflow.objects.get(pk=run).schedule is None


@pytest.mark.django_db
def test_bad_json_in_the_schedule_form_is_a_form_error():
    for text in ["[" * 100_000 + "]" * 100_000, '{"x": ']:
        form = WorkflowScheduleForm(data={**BASE, **KINDS["interval"], "payload": text})
        assert not form.is_valid() and "payload" in form.errors


# -- end to end: a real beat (DatabaseScheduler) and a real worker ----------------------------


@pytest.fixture
def beat(worker, tmp_path):
    log = tmp_path / "beat.log"
    proc = start_beat(log)
    proc.log = log
    # DatabaseScheduler misses a change made before its first look at
    # PeriodicTasks.last_update (its last timestamp is still None): let it look.
    until(lambda: log.read_text().count("beat: Waking up") >= 2, what="beat's second tick")
    yield proc
    stop_worker(proc)


def every_second(name: str, definition: str, payload: dict, overlap: str) -> WorkflowSchedule:
    return save_form(
        {
            "name": name,
            "definition": definition,
            "payload": json.dumps(payload),
            "overlap": overlap,
            "enabled": "on",
            "kind": "interval",
            "every": "1",
            "period": "seconds",
        }
    )


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_beat_launches_runs_every_second_and_stops_when_disabled(beat):
    schedule = every_second("tick", "arith", {"x": 1, "y": 1}, OverlapPolicy.ALLOW)
    until(lambda: schedule.runs.filter(status=W.SUCCESS).count() >= 3, what="3 runs")

    form = WorkflowScheduleForm(instance=schedule)
    data = {
        **form.initial,
        "overlap": schedule.overlap,
        "enabled": "",
        "payload": json.dumps(form.initial["payload"]),
    }
    changes_before = beat.log.read_text().count("Schedule changed")
    edited = time.monotonic()
    save_form(data, instance=schedule)
    until(
        lambda: beat.log.read_text().count("Schedule changed") > changes_before,
        what="beat to notice the edit",
    )
    picked_up = time.monotonic() - edited
    print(f"\nbeat noticed the edit after {picked_up * 1000:.0f} ms")
    count = schedule.runs.count()
    # Prove a negative: for 3 intervals after beat saw the edit, nothing new starts.
    with pytest.raises(TimeoutError):
        until(lambda: schedule.runs.count() > count, timeout=3)
    assert picked_up < 5


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_clocked_schedule_launches_one_run_at_its_time(beat):
    at = timezone.now() + timedelta(seconds=2)
    schedule = save_form(
        {
            "name": "once",
            "definition": "arith",
            "payload": '{"x": 2, "y": 2}',
            "overlap": "allow",
            "enabled": "on",
            "kind": "clocked",
            "clocked_time": at.strftime("%Y-%m-%d %H:%M:%S"),
        }
    )
    run = until(lambda: schedule.runs.first(), what="the clocked run").wait()
    assert run.status == W.SUCCESS and run.created >= at - timedelta(seconds=1)
    with pytest.raises(TimeoutError):  # one-off: no second run in the next 2 s
        until(lambda: schedule.runs.count() > 1, timeout=2)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_with_skip_a_slow_workflow_never_runs_twice_at_once(beat):
    schedule = every_second("slow-skip", "slow", {"seconds": 2.5}, OverlapPolicy.SKIP)
    until(
        lambda: (
            schedule.runs.filter(status=W.SUCCESS).count() >= 1
            and schedule.fires.filter(outcome=ScheduleFire.Outcome.SKIPPED).count() >= 2
        ),
        timeout=60,
        what="a finished run and two skips",
    )
    schedule.periodic_task.enabled = False
    schedule.periodic_task.save()

    runs = list(schedule.runs.order_by("created"))
    for earlier, later in zip(runs, runs[1:], strict=False):
        assert earlier.finished is not None and earlier.finished <= later.created
    assert "is still running" in schedule.fires.filter(outcome="skipped").first().message


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_with_cancel_previous_a_slow_run_is_canceled_by_the_next_fire(beat):
    schedule = every_second("slow-cancel", "slow", {"seconds": 5}, OverlapPolicy.CANCEL_PREVIOUS)
    until(
        lambda: schedule.runs.filter(status=W.CANCELED).count() >= 1,
        timeout=30,
        what="a canceled run",
    )
    schedule.periodic_task.enabled = False
    schedule.periodic_task.save()

    canceled = schedule.runs.filter(status=W.CANCELED).first()
    assert canceled.finished - canceled.created < timedelta(seconds=5)
    assert schedule.fires.filter(message__startswith="Canceled the previous run").exists()
    assert timezone.now() - canceled.created < timedelta(seconds=60)
