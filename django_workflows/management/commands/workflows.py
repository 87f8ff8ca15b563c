"""``manage.py workflows SUBCOMMAND``: operate workflow runs from a shell."""

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import engine
from ...conf import get_setting
from ...exceptions import WorkflowError
from ...models import Workflow


class Command(BaseCommand):
    help = "Operate workflow runs."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)
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
        for name, text in (
            ("resume", "Resume a failed or canceled run."),
            ("cancel", "Cancel a run."),
        ):
            op = sub.add_parser(name, help=text)
            op.add_argument("id")
        sub.choices["resume"].add_argument("--dry-run", action="store_true")
        sub.choices["cancel"].add_argument("--terminate", action="store_true")

    def handle(self, *args: Any, subcommand: str, **options: Any) -> None:
        try:
            getattr(self, f"do_{subcommand}")(**options)
        except (WorkflowError, Workflow.DoesNotExist) as exc:
            raise CommandError(str(exc)) from exc

    def _run(self, id: str) -> Workflow:
        try:
            return Workflow.objects.get(pk=id)
        except (Workflow.DoesNotExist, ValidationError) as exc:  # unknown, or not a UUID
            raise CommandError(f"No workflow run {id!r}.") from exc

    def do_reap(self, grace: float | None, timeout: float | None, **options: Any) -> None:
        grace = get_setting("REAPER_GRACE") if grace is None else grace
        timeout = get_setting("TASK_TIMEOUT") if timeout is None else timeout
        reaped = engine.reap(grace=grace, timeout=timeout)
        for task_id in reaped:
            self.stdout.write(f"failed {task_id}")
        self.stdout.write(f"{len(reaped)} task run(s) reaped.")

    def do_resume(self, id: str, dry_run: bool, **options: Any) -> None:
        plan = self._run(id).resume(dry_run=dry_run)
        verb = "would run" if dry_run else "runs"
        for item in plan.rerun:
            self.stdout.write(f"{verb} again: #{item['node']} {item['task']} ({item['status']})")
        for item in plan.reused:
            self.stdout.write(f"reuses the result of #{item['node']} {item['task']}")

    def do_cancel(self, id: str, terminate: bool, **options: Any) -> None:
        wf = self._run(id).cancel(terminate=terminate)
        self.stdout.write(f"{wf.pk} {wf.status}")
