from django.db import models


class Call(models.Model):
    """One execution of a test task: lets tests count what really ran."""

    task = models.CharField(max_length=100)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    task_id = models.CharField(max_length=64, blank=True)
    pid = models.IntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.task}{tuple(self.args)}"


class Switch(models.Model):
    """A flag the tests turn on to make a failing task succeed next time."""

    key = models.CharField(max_length=100, unique=True)

    def __str__(self) -> str:
        return self.key
