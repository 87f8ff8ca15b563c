"""``manage.py workflows SUBCOMMAND``: definitions, runs and YAML schedules from a shell.

``run --wait`` exits 0 when the run succeeds and 1 when it fails or is
canceled, so scripts and CI jobs can chain on it.
"""

import json
import sys
import time
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q
from django.utils import timezone

from ... import engine
from ...canvas import compile_canvas
from ...conf import get_setting
from ...definitions import registry
from ...exceptions import InvalidPayload, WorkflowError
from ...lists import distinct_values
from ...models import FINISHED_WORKFLOW, TaskRun, Workflow
from ...models import WorkflowStatus as W
from ...retention import BATCH_SIZE, beyond_newest, delete_finished_matching
from ...yaml_files import load_errors, sync_schedules


class Command(BaseCommand):
    help = (
        "List and show workflow definitions; run, inspect and operate workflow runs; "
        "sync the schedules of YAML definitions."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)
        sub.add_parser("list", help="The registered workflow definitions.")
        show = sub.add_parser("show", help="A definition: description, schema, tasks.")
        show.add_argument("name")

        run = sub.add_parser("run", help="Launch a registered workflow.")
        run.add_argument("name")
        run.add_argument("--payload", default="{}", help="The payload, as JSON.")
        run.add_argument(
            "--wait",
            action="store_true",
            help="Show progress until the run ends; exit 1 unless it succeeded.",
        )
        run.add_argument("--timeout", type=float, default=None, help="With --wait: give up.")

        for name, text in (
            ("status", "A run's status and its tasks."),
            ("resume", "Resume a failed or canceled run."),
            ("relaunch", "Start a new run of the same definition and payload."),
            ("cancel", "Cancel a run."),
            ("rerun", "Run a task of a finished run and everything after it again."),
        ):
            sub.add_parser(name, help=text).add_argument("id")
        sub.choices["resume"].add_argument("--dry-run", action="store_true")
        sub.choices["cancel"].add_argument("--terminate", action="store_true")
        sub.choices["rerun"].add_argument(
            "--from", dest="task", required=True, help="The task run's id or node index."
        )

        reap = sub.add_parser("reap", help="Fail task runs whose worker is gone or too slow.")
        reap.add_argument(
            "--grace",
            type=float,
            default=None,
            help="Only tasks started at least this many seconds ago.",
        )
        reap.add_argument(
            "--timeout",
            type=float,
            default=None,
            help="Fail tasks running longer than this, worker alive or not.",
        )

        prune = sub.add_parser("prune", help="Delete old finished runs (retention).")
        prune.add_argument(
            "--older-than",
            type=float,
            metavar="DAYS",
            help="Finished runs created more than DAYS ago.",
        )
        prune.add_argument(
            "--keep",
            type=int,
            metavar="N",
            help="Beyond the newest N finished runs of each workflow.",
        )
        prune.add_argument("--batch-size", type=int, default=BATCH_SIZE)

        sub.add_parser(
            "sync-schedules",
            help="Make beat's schedules match the periodic: of the YAML definition files.",
        )

    def handle(self, *args: Any, subcommand: str, **options: Any) -> None:
        try:
            getattr(self, f"do_{subcommand.replace('-', '_')}")(**options)
        except InvalidPayload as exc:
            raise CommandError(
                "\n".join(
                    [str(exc).split(":")[0] + ":"]
                    + [f"  {e['path'] or '(payload)'}: {e['message']}" for e in exc.errors]
                )
            ) from exc
        except WorkflowError as exc:
            raise CommandError(str(exc)) from exc

    def _run(self, id: str) -> Workflow:
        try:
            return Workflow.objects.get(pk=id)
        except (Workflow.DoesNotExist, ValidationError) as exc:  # unknown, or not a UUID
            raise CommandError(f"No workflow run {id!r}.") from exc

    # -- definitions ----------------------------------------------------------------------

    def do_list(self, **options: Any) -> None:
        for definition in registry:
            self.stdout.write(f"{definition.name}\t{definition.description}")

    def do_show(self, name: str, **options: Any) -> None:
        definition = registry.get(name)
        self.stdout.write(f"{definition.name}: {definition.description}")
        self.stdout.write(f"schema: {json.dumps(definition.schema)}")
        payload = definition.example_payload(with_optional=True)
        self.stdout.write(f"example payload: {json.dumps(payload)}")
        try:
            dag = compile_canvas(definition.build(payload))
        except Exception as exc:  # the factory is the project's code
            self.stdout.write(f"tasks: cannot build them from the example payload ({exc!r})")
            return
        for node in dag.nodes:
            after = f" after {', '.join(f'#{p}' for p in node.parents)}" if node.parents else ""
            self.stdout.write(f"#{node.index} {node.task}{after}")

    # -- runs -------------------------------------------------------------------------------

    def do_run(
        self, name: str, payload: str, wait: bool, timeout: float | None, **options: Any
    ) -> None:
        try:
            data = json.loads(payload)
        except ValueError as exc:
            raise CommandError(f"--payload is not JSON: {exc}") from exc
        run = engine.launch(name, data)
        self.stdout.write(str(run.pk))
        if wait:
            self._follow(run, timeout)

    def _follow(self, run: Workflow, timeout: float | None) -> None:
        """Print progress until the run ends; exit non-zero unless it succeeded."""
        tty = self.stdout.isatty()
        deadline = None if timeout is None else time.monotonic() + timeout
        last = None
        while True:
            run.refresh_from_db()
            line = self._progress(run, bar=tty)
            if line != last:
                self.stdout.write(("\r" if tty else "") + line, ending="" if tty else "\n")
                self.stdout.flush()
                last = line
            if run.status in FINISHED_WORKFLOW:
                break
            if deadline is not None and time.monotonic() > deadline:
                self.stdout.write("")
                raise CommandError(f"Still {run.status} after {timeout:g} s.")
            time.sleep(0.1)
        if tty:
            self.stdout.write("")
        if run.status != W.SUCCESS:
            failed = run.task_runs.filter(status="failure").first()
            if failed is not None:
                self.stderr.write(
                    f"#{failed.node} {failed.task}: {failed.exception_type}: "
                    f"{failed.exception_message}"
                )
            sys.exit(1)
        self.stdout.write(f"result: {json.dumps(run.result, default=str)}")

    @staticmethod
    def _progress(run: Workflow, bar: bool) -> str:
        done = f"{run.tasks_finished}/{run.tasks_total} finished"
        failed = f", {run.tasks_failed} failed" if run.tasks_failed else ""
        if not bar:
            return f"{run.status}: {done}{failed}"
        width = 30
        filled = width * run.tasks_finished // max(run.tasks_total, 1)
        return f"[{'#' * filled}{'.' * (width - filled)}] {run.status}: {done}{failed}"

    def do_status(self, id: str, **options: Any) -> None:
        run = self._run(id)
        self.stdout.write(f"{run.name} {run.pk}: {self._progress(run, bar=False)}")
        for task in run.task_runs.order_by("node"):
            error = (
                f" {task.exception_type}: {task.exception_message}" if task.exception_type else ""
            )
            self.stdout.write(f"#{task.node} {task.task} {task.status}{error}")

    def do_resume(self, id: str, dry_run: bool, **options: Any) -> None:
        plan = self._run(id).resume(dry_run=dry_run)
        verb = "would run" if dry_run else "runs"
        for item in plan.rerun:
            self.stdout.write(f"{verb} again: #{item['node']} {item['task']} ({item['status']})")
        for item in plan.reused:
            self.stdout.write(f"reuses the result of #{item['node']} {item['task']}")

    def do_relaunch(self, id: str, **options: Any) -> None:
        self.stdout.write(str(self._run(id).relaunch().pk))

    def do_cancel(self, id: str, terminate: bool, **options: Any) -> None:
        wf = self._run(id).cancel(terminate=terminate)
        self.stdout.write(f"{wf.pk} {wf.status}")

    def do_rerun(self, id: str, task: str, **options: Any) -> None:
        run = self._run(id)
        field = "node" if task.isdigit() else "pk"
        try:
            start = run.task_runs.get(**{field: task})
        except (TaskRun.DoesNotExist, ValidationError) as exc:
            raise CommandError(f"Run {run.pk} has no task {task!r}.") from exc
        for item in run.rerun_from(start).rerun:
            self.stdout.write(f"runs again: #{item['node']} {item['task']}")

    # -- maintenance --------------------------------------------------------------------------

    def do_reap(self, grace: float | None, timeout: float | None, **options: Any) -> None:
        grace = get_setting("REAPER_GRACE") if grace is None else grace
        timeout = get_setting("TASK_TIMEOUT") if timeout is None else timeout
        for task_id in engine.recover(
            grace=get_setting("RECOVERY_GRACE"), queue_timeout=get_setting("QUEUE_TIMEOUT")
        ):
            self.stdout.write(f"sent {task_id} (claimed, never sent)")
        reaped = engine.reap(grace=grace, timeout=timeout)
        for task_id in reaped:
            self.stdout.write(f"failed {task_id}")
        self.stdout.write(f"{len(reaped)} task run(s) reaped.")

    def do_prune(
        self, older_than: float | None, keep: int | None, batch_size: int, **options: Any
    ) -> None:
        if older_than is None and keep is None:
            raise CommandError("Say what to prune: --older-than DAYS and/or --keep N.")
        since = None if older_than is None else timezone.now() - timedelta(days=older_than)
        if keep is None:
            doomed = [Q(created__lt=since)]
        else:  # per workflow: beyond its newest N finished runs (and older than DAYS)
            names = distinct_values(Workflow, "name", limit=None)
            doomed = [q for name in names if (q := beyond_newest(name, keep, True)) is not None]
            if since is not None:
                doomed = [q & Q(created__lt=since) for q in doomed]
        deleted = 0
        for q in doomed:  # those still finished, with their task runs
            runs = delete_finished_matching(Workflow.objects.filter(q), batch_size).runs
            deleted += sum(runs.values())
        self.stdout.write(f"{deleted} finished run(s) deleted.")

    def do_sync_schedules(self, **options: Any) -> None:
        """What ``migrate`` does after migrating, on demand (e.g. after editing a file)."""
        for error in load_errors():
            self.stderr.write(str(error))
        result = sync_schedules()
        for verb, names in (
            ("created", result.created),
            ("updated", result.updated),
            ("disabled", result.disabled),
        ):
            for name in names:
                self.stdout.write(f"{verb}: {name}")
        if result.kept_because:
            self.stderr.write(f"Nothing disabled: {result.kept_because}")
        self.stdout.write(
            f"{len(result.created)} created, {len(result.updated)} updated, "
            f"{len(result.disabled)} disabled, {len(result.unchanged)} unchanged."
        )
