"""Tasks of celery-director's documentation and test suite, director style."""

import time

from celery import shared_task

from tests.testapp.tasks import _record


def director_task(name: str, returns=None, body=None):
    """A ``(*args, **kwargs)`` task named ``name`` that records its call, then
    returns ``returns`` (or what ``body(args, kwargs)`` returns)."""

    def run(self, *args, **kwargs):
        _record(self, args, kwargs)
        return body(args, kwargs) if body else returns

    run.__name__ = run.__qualname__ = name.lower()
    return shared_task(bind=True, name=name)(run)


def _divide_by_zero(args, kwargs):
    return 1 / 0


class Unserializable:
    """What TASK_CELERY_ERROR returns: no JSON for it."""


def _sleep(args, kwargs):
    time.sleep(300)


# -- docs: write-tasks (A, B, C), init template (ADD), trigger-hooks, use-payload,
# error-tracking
A = director_task("A", {"result": "a_data"})
B = director_task("B", {"result": "b_data"})
C = director_task("C")  # prints its args
ADD = director_task("ADD", body=lambda args, kwargs: sum(args[0]))
ERROR_HANDLER = director_task("ERROR_HANDLER")
SUCCESS_HANDLER = director_task("SUCCESS_HANDLER")
ORDER_PRODUCT = director_task(
    "ORDER_PRODUCT",
    body=lambda args, kwargs: {
        "id": kwargs["payload"]["user"] * 10_000 + kwargs["payload"]["product"]
    },
)
SEND_MAIL = director_task(
    "SEND_MAIL",
    body=lambda args, kwargs: (
        f"Your order #{args[0]['id']} has been received (user {kwargs['payload']['user']})"
    ),
)
UPDATE_CACHE = director_task(
    "UPDATE_CACHE",
    body=lambda args, kwargs: kwargs["payload"]["user"] or "all users",
)
WORKING_TASK = director_task("WORKING_TASK", {"hello": "world"})
ERROR_TASK = director_task("ERROR_TASK", body=_divide_by_zero)

# -- director's tests/workflows/tasks
TASK_EXAMPLE = director_task("TASK_EXAMPLE", "task_example")
TASK_A = director_task("TASK_A", "task_a")
TASK_B = director_task("TASK_B", "task_b")
TASK_C = director_task("TASK_C", "task_c")
TASK_ERROR = director_task("TASK_ERROR", body=_divide_by_zero)
TASK_CELERY_ERROR = director_task("TASK_CELERY_ERROR", body=lambda a, k: Unserializable())
STR = director_task("STR", "return_value")
INT = director_task("INT", 1234)
LIST = director_task("LIST", ["jack", "sape", "guido"])
NONE = director_task("NONE", None)
DICT = director_task("DICT", {"foo": "bar"})
NESTED = director_task(
    "NESTED",
    {
        "jack": 4098,
        "sape": 4139,
        "guido": 4127,
        "nested": {"foo": "bar"},
        "none": None,
        "list": ["jack", "sape", "guido"],
    },
)
DELAY = director_task("DELAY", body=_sleep)
