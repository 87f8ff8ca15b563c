"""Admin forms: a workflow schedule (the workflow, its payload, when it runs), a launch,
and the result of a task marked as succeeded.

Whoever saves a schedule or launches a run must be allowed to start it (``policy``).
"""

import json
import zoneinfo
from typing import Any

from django import forms
from django.db import transaction
from django.utils.translation import gettext_lazy as _
from django_celery_beat import validators
from django_celery_beat.models import (
    PERIOD_CHOICES,
    SOLAR_SCHEDULES,
    PeriodicTask,
)

from .codec import MAX_DEPTH, depth
from .definitions import Definition, registry
from .exceptions import InvalidPayload, UnknownWorkflow
from .models import WorkflowSchedule
from .policy import may_launch
from .schedules import beat_schedule, save_schedule

KINDS = [
    ("interval", _("Interval")),
    ("crontab", _("Crontab")),
    ("solar", _("Solar event")),
    ("clocked", _("Once, at a time (clocked)")),
]

#: fields each kind needs
KIND_FIELDS = {
    "interval": ["every", "period"],
    "crontab": ["minute", "hour", "day_of_week", "day_of_month", "month_of_year", "timezone"],
    "solar": ["event", "latitude", "longitude"],
    "clocked": ["clocked_time"],
}


def _definition_choices() -> list[tuple[str, str]]:
    return [("", "---------")] + [
        (d.name, f"{d.name}: {d.description}" if d.description else d.name) for d in registry
    ]


class JSONValueField(forms.JSONField):
    """A JSON value; text that is not JSON, or nests too deep, is a form error (not a 500)."""

    default_error_messages = {
        "too_deep": _("JSON nested more than %(depth)d levels deep is refused."),
    }

    def to_python(self, value: Any) -> Any:
        try:
            value = super().to_python(value)
        except RecursionError:
            value = None
        else:
            if depth(value) <= MAX_DEPTH:
                return value
        raise forms.ValidationError(
            self.error_messages["too_deep"], code="too_deep", params={"depth": MAX_DEPTH}
        )

    def bound_data(self, data: Any, initial: Any) -> Any:
        try:
            return super().bound_data(data, initial)
        except RecursionError:  # shown again as typed, with its error
            return forms.fields.InvalidJSONInput(data)


def _refuse_unless_allowed(form: forms.Form, user: Any, name: str | None) -> None:
    """A form error on ``definition`` unless ``user`` may start ``name`` (None: code, trusted)."""
    if user is not None and name and not may_launch(user, name):
        form.add_error(
            "definition",
            _("You are not allowed to launch workflow %(name)r.") % {"name": name},
        )


class WorkflowScheduleForm(forms.ModelForm):
    """A schedule launches as the person who saves it: they must be allowed to launch it.

    ``user`` (set by the admin) is that person; None when code saves a schedule.
    """

    user: Any = None

    name = forms.CharField(label=_("Name"), max_length=200)
    definition = forms.ChoiceField(label=_("Workflow"), choices=_definition_choices)
    payload = JSONValueField(
        label=_("Payload"),
        initial=dict,
        required=False,
        help_text=_("JSON, checked against the workflow's schema."),
    )
    kind = forms.ChoiceField(label=_("Runs"), choices=KINDS, initial="interval")
    every = forms.IntegerField(label=_("Every"), min_value=1, required=False)
    period = forms.ChoiceField(
        label=_("Period"), choices=PERIOD_CHOICES, required=False, initial="minutes"
    )
    minute = forms.CharField(
        label=_("Minute"), initial="*", required=False, validators=[validators.minute_validator]
    )
    hour = forms.CharField(
        label=_("Hour"), initial="*", required=False, validators=[validators.hour_validator]
    )
    day_of_week = forms.CharField(
        label=_("Day of week"),
        initial="*",
        required=False,
        validators=[validators.day_of_week_validator],
    )
    day_of_month = forms.CharField(
        label=_("Day of month"),
        initial="*",
        required=False,
        validators=[validators.day_of_month_validator],
    )
    month_of_year = forms.CharField(
        label=_("Month of year"),
        initial="*",
        required=False,
        validators=[validators.month_of_year_validator],
    )
    timezone = forms.CharField(label=_("Time zone"), initial="UTC", required=False)
    event = forms.ChoiceField(label=_("Solar event"), choices=SOLAR_SCHEDULES, required=False)
    latitude = forms.DecimalField(
        label=_("Latitude"),
        max_digits=9,
        decimal_places=6,
        min_value=-90,
        max_value=90,
        required=False,
    )
    longitude = forms.DecimalField(
        label=_("Longitude"),
        max_digits=9,
        decimal_places=6,
        min_value=-180,
        max_value=180,
        required=False,
    )
    clocked_time = forms.DateTimeField(label=_("At"), required=False)
    enabled = forms.BooleanField(label=_("Enabled"), initial=True, required=False)
    start_time = forms.DateTimeField(label=_("Start"), required=False)
    expires = forms.DateTimeField(label=_("Expires"), required=False)
    one_off = forms.BooleanField(label=_("Run once"), required=False)
    description = forms.CharField(
        label=_("Description"), widget=forms.Textarea(attrs={"rows": 2}), required=False
    )

    class Meta:
        model = WorkflowSchedule
        fields = ["overlap"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        task = self.instance.periodic_task if self.instance.pk else None
        if task is not None:
            self.initial.update(_initial_from(task, self.instance))

    def clean_timezone(self) -> str:
        value = self.cleaned_data.get("timezone") or "UTC"
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise forms.ValidationError(
                _("Unknown time zone: %(tz)s"), params={"tz": value}
            ) from None
        return value

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        taken = PeriodicTask.objects.filter(name=name)
        if self.instance.pk:
            taken = taken.exclude(pk=self.instance.periodic_task_id)
        if taken.exists():
            raise forms.ValidationError(_("A periodic task with this name already exists."))
        return name

    def clean(self) -> dict:
        data = super().clean()
        name, payload = data.get("definition"), data.get("payload")
        payload = {} if payload is None else payload
        data["payload"] = payload
        if name:
            try:
                registry.get(name).validate(payload)
            except UnknownWorkflow as exc:
                self.add_error("definition", str(exc))
            except InvalidPayload as exc:
                for error in exc.errors:
                    self.add_error(
                        "payload", f"{error['path'] or _('(payload)')}: {error['message']}"
                    )
            else:
                _refuse_unless_allowed(self, self.user, name)
        kind = data.get("kind")
        for field in KIND_FIELDS.get(kind, []):
            if data.get(field) in (None, "") and field not in self.errors:
                self.add_error(field, _("Required for this kind of schedule."))
        if kind == "clocked":
            data["one_off"] = True  # beat runs a clocked schedule once
        return data

    @transaction.atomic
    def save(self, commit: bool = True) -> WorkflowSchedule:
        data = self.cleaned_data
        kind = data["kind"]
        fields = {field: data[field] for field in KIND_FIELDS[kind]}
        if kind == "crontab":
            fields["timezone"] = zoneinfo.ZoneInfo(fields["timezone"])
        self.instance = save_schedule(
            data["name"],
            data["definition"],
            data["payload"],
            beat_schedule(kind, **fields),
            overlap=data["overlap"],
            periodic_task=self.instance.periodic_task if self.instance.pk else None,
            owner=self.user,
            **{f: data[f] for f in ("enabled", "start_time", "expires", "one_off", "description")},
        )[0]
        return self.instance

    def save_m2m(self) -> None:  # the admin calls it; there is nothing many-to-many
        pass


def _initial_from(task: PeriodicTask, schedule: WorkflowSchedule) -> dict:
    try:
        kwargs = json.loads(task.kwargs or "{}")
    except ValueError:
        kwargs = {}
    initial = {
        "name": task.name,
        "definition": kwargs.get("name", schedule.definition),
        "payload": kwargs.get("payload", {}),
        "enabled": task.enabled,
        "start_time": task.start_time,
        "expires": task.expires,
        "one_off": task.one_off,
        "description": task.description,
    }
    if task.interval:
        initial.update(kind="interval", every=task.interval.every, period=task.interval.period)
    elif task.crontab:
        cron = task.crontab
        initial.update(
            kind="crontab",
            minute=cron.minute,
            hour=cron.hour,
            day_of_week=cron.day_of_week,
            day_of_month=cron.day_of_month,
            month_of_year=cron.month_of_year,
            timezone=str(cron.timezone),
        )
    elif task.solar:
        initial.update(
            kind="solar",
            event=task.solar.event,
            latitude=task.solar.latitude,
            longitude=task.solar.longitude,
        )
    elif task.clocked:
        initial.update(kind="clocked", clocked_time=task.clocked.clocked_time)
    return initial


class LaunchForm(forms.Form):
    """Launch a registered workflow: its payload is checked against its schema, and
    ``user`` must be allowed to launch it."""

    definition = forms.ChoiceField(label=_("Workflow"), choices=_definition_choices)
    payload = JSONValueField(
        label=_("Payload"), required=False, widget=forms.Textarea(attrs={"rows": 12, "cols": 80})
    )

    def __init__(self, *args: Any, user: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        definition = registry.find(self.initial.get("definition"))
        if definition is not None and "payload" not in self.initial:
            self.initial["payload"] = definition.example_payload(with_optional=True)

    @staticmethod
    def example_payload(definition: Definition) -> Any:
        """What the launch page shows for ``definition`` (the admin's launch view asks the form)."""
        return definition.example_payload(with_optional=True)

    def clean(self) -> dict:
        data = super().clean()
        name = data.get("definition")
        data["payload"] = {} if data.get("payload") is None else data["payload"]
        _refuse_unless_allowed(self, self.user, name)
        if name and "definition" not in self.errors:
            try:
                registry.get(name).validate(data["payload"])
            except InvalidPayload as exc:
                for error in exc.errors:
                    self.add_error(
                        "payload", f"{error['path'] or _('(payload)')}: {error['message']}"
                    )
        return data

    def launch(self) -> Any:
        from .engine import launch

        data = self.cleaned_data
        return launch(data["definition"], data["payload"], user=self.user)


class MarkSuccessForm(forms.Form):
    """The result a failed task is taken to have returned: its children receive it."""

    result = JSONValueField(
        label=_("Result"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60, "aria-label": _("result (JSON)")}),
    )
