"""Small tasks for the tests. Each records its execution as a Call row."""

import enum
import os
import random
import time

from celery import Signature, Task, chain, chord, group, shared_task
from celery.backends.base import Backend

from .models import Call, Switch


def _record(task, args, kwargs) -> None:
    Call.objects.create(
        task=task.name.rsplit(".", 1)[-1],
        args=list(args),
        kwargs=kwargs,
        task_id=task.request.id or "",
        pid=os.getpid(),
    )


@shared_task(bind=True)
def add(self, x, y):
    _record(self, (x, y), {})
    return x + y


@shared_task(bind=True)
def mul(self, x, y):
    _record(self, (x, y), {})
    return x * y


@shared_task(bind=True)
def tsum(self, numbers):
    _record(self, (numbers,), {})
    return sum(numbers)


@shared_task(bind=True)
def collect(self, *args, **kwargs):
    """Returns what it was given: shows exactly what Celery passed."""
    _record(self, args, kwargs)
    return {"args": list(args), "kwargs": kwargs}


@shared_task(bind=True)
def const(self, value):
    _record(self, (value,), {})
    return value


class Level(enum.IntEnum):
    LOW = 1


@shared_task(bind=True)
def level(self, value):
    """Returns an int subclass, which Celery's JSON hands on as a plain int."""
    _record(self, (value,), {})
    return Level(value)


@shared_task(bind=True)
def type_name(self, value):
    """The type of what it was given: shows what Celery's JSON made of it."""
    _record(self, (value,), {})
    return type(value).__name__


@shared_task(bind=True)
def fail(self, *args, message="boom"):
    _record(self, args, {"message": message})
    raise ValueError(message)


@shared_task(bind=True)
def nap(self, seconds, value=None):
    _record(self, (seconds,), {})
    time.sleep(seconds)
    return value


@shared_task(bind=True)
def not_json(self, *args):
    _record(self, args, {})
    return object()


@shared_task(bind=True, ignore_result=True)
def noop(self, *args):
    return None


@shared_task(bind=True, ignore_result=True)
def not_json_unstored(self, *args):
    """No result backend write: only the engine notices the value is not JSON."""
    _record(self, args, {})
    return {1, 2}


@shared_task
def bench_noop(*args):
    """Does nothing, records nothing: what a hop costs is all that is left."""
    return 1


@shared_task
def bench_stamp(*args):
    """When it finished (``time.time()``): a chord header member, for join latency."""
    return time.time()


@shared_task
def bench_join_lag(stamps):
    """A chord body: how long after its header's last member finished it started (s)."""
    return time.time() - max(stamps)


@shared_task(bind=True)
def gate(self, value, key="gate"):
    """Fails until the test turns Switch(key) on; then passes ``value`` on."""
    _record(self, (value,), {"key": key})
    if not Switch.objects.filter(key=key).exists():
        raise RuntimeError(f"gate {key} is closed")
    return value


@shared_task(bind=True, max_retries=5)
def retry_twice(self, value):
    """Retries with self.retry twice, then returns ``value``."""
    _record(self, (value,), {})
    if self.request.retries < 2:
        raise self.retry(exc=ConnectionError(f"try {self.request.retries}"), countdown=0.05)
    return value


@shared_task(
    bind=True,
    autoretry_for=(ConnectionError,),
    retry_backoff=0.05,
    retry_backoff_max=0.1,
    retry_jitter=False,
    max_retries=5,
)
def autoretry_twice(self, value):
    _record(self, (value,), {})
    if self.request.retries < 2:
        raise ConnectionError(f"try {self.request.retries}")
    return value


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def nap_acks_late(self, seconds, value=None):
    """Sleeps on its first delivery only; a redelivery returns at once."""
    first = not Call.objects.filter(task_id=self.request.id).exists()
    _record(self, (seconds,), {})
    if first:
        time.sleep(seconds)
    return value


@shared_task(bind=True)
def nap_unless(self, seconds, key="awake", value=None):
    """Sleeps ``seconds`` unless Switch(key) is on."""
    _record(self, (seconds,), {"key": key})
    if not Switch.objects.filter(key=key).exists():
        time.sleep(seconds)
    return value


@shared_task(bind=True)
def not_a_number(self, *args):
    """NaN: Python's json writes it, JSON has no such value."""
    _record(self, args, {})
    return float("nan")


@shared_task(bind=True)
def gate_items(self, value, closed=()):
    """``value * 10``; fails for the values in ``closed`` until Switch(f"item-{value}") is on."""
    _record(self, (value,), {"closed": list(closed)})
    if value in closed and not Switch.objects.filter(key=f"item-{value}").exists():
        raise RuntimeError(f"item {value} is closed")
    return value * 10


# -- celery-director style: ``(*args, **kwargs)``, named in capitals, used by workflows.yml ----


@shared_task(bind=True, name="EXTRACT")
def extract(self, *args, **kwargs):
    """The payload's numbers, or 1, 2, 3."""
    _record(self, args, kwargs)
    return list(kwargs["payload"].get("numbers", [1, 2, 3]))


@shared_task(bind=True, name="TRANSFORM")
def transform(self, *args, **kwargs):
    """The previous step's numbers times the payload's factor (10)."""
    _record(self, args, kwargs)
    return [n * kwargs["payload"].get("factor", 10) for n in args[0]]


@shared_task(bind=True, name="LOAD")
def load(self, *args, **kwargs):
    _record(self, args, kwargs)
    return {"loaded": len(args[0]), "total": sum(args[0])}


@shared_task(bind=True, name="RANDOM")
def random_number(self, *args, **kwargs):
    """A "random" number of the payload's range (director's default: 0 to 10),
    seeded so tests know it."""
    _record(self, args, kwargs)
    payload = kwargs["payload"]
    return random.Random(payload.get("seed", 0)).randint(
        payload.get("start", 0), payload.get("end", 10)
    )


@shared_task(bind=True, name="ADD_RANDOMS")
def add_randoms(self, *args, **kwargs):
    _record(self, args, kwargs)
    return sum(args[0])


@shared_task(bind=True, name="COUNT")
def count(self, *args, **kwargs):
    _record(self, args, kwargs)
    return len(args[0])


@shared_task(bind=True, name="TOTAL")
def total(self, *args, **kwargs):
    _record(self, args, kwargs)
    return sum(args[0])


@shared_task(bind=True, name="JOIN")
def join(self, *args, **kwargs):
    """What the parallel branches gave, in order, and the run's tag."""
    _record(self, args, kwargs)
    return {"parts": args[0], "tag": kwargs["payload"].get("tag")}


@shared_task(bind=True, name="SCALE")
def scale(self, *args, factor=1, **kwargs):
    """One positional value (a foreach item) times ``factor``."""
    _record(self, args, {"factor": factor, **kwargs})
    return args[0] * factor


@shared_task(bind=True, ignore_result=True)
def deep(self, depth):
    """A value nested ``depth`` lists deep, never stored by the result backend."""
    _record(self, (depth,), {})
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


class _DownResultStore:
    """The app's result backend, except that every write fails, as when it is down."""

    def __init__(self, backend):
        self._backend = backend

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def _down(self, *args, **kwargs):
        raise ConnectionError("the result backend is down")

    store_result = mark_as_failure = mark_as_retry = _down

    def mark_as_done(self, *args, **kwargs):
        """Celery's own (as every backend of Celery's has it), whose write fails."""
        return Backend.mark_as_done(self, *args, **kwargs)


class _DownResultStoreOfItsOwn(_DownResultStore):
    """A result backend of a project's own, whose ``mark_as_done`` fails."""

    mark_as_done = _DownResultStore._down


class StoreFailsTask(Task):
    @property
    def backend(self):
        return _DownResultStore(self.app.backend)


class OwnStoreFailsTask(Task):
    @property
    def backend(self):
        return _DownResultStoreOfItsOwn(self.app.backend)


@shared_task(bind=True, base=StoreFailsTask)
def store_fails(self, value):
    """Its body succeeds; storing its result fails (the result backend is down)."""
    _record(self, (value,), {})
    return value


@shared_task(bind=True, base=OwnStoreFailsTask)
def own_store_fails(self, value):
    """Its body succeeds; its backend's own ``mark_as_done`` fails."""
    _record(self, (value,), {})
    return value


@shared_task(bind=True)
def fail_with_nul(self, *args):
    _record(self, args, {})
    raise ValueError("bad\x00byte")


@shared_task(bind=True)
def nul_result(self, *args):
    _record(self, args, {})
    return "a\x00b"


@shared_task(bind=True)
def slow_first_attempt(self, seconds, value=None):
    """The first run of a task id naps ``seconds`` then fails; a later one
    waits until the first has failed, then returns ``value``."""
    key = f"first-failed-{self.request.id}"
    first = not Call.objects.filter(task_id=self.request.id or "").exists()
    _record(self, (seconds,), {})
    if first:
        time.sleep(seconds)
        Switch.objects.create(key=key)
        raise RuntimeError("the first attempt failed late")
    deadline = time.monotonic() + 30
    while not Switch.objects.filter(key=key).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # the first attempt's failure is being reported
    return value


# -- Celery's own integration tasks (celery/celery t/integration/tasks.py), rewritten ---------
# Same names, arguments and results; each records its call (a Call row) instead of Redis.


@shared_task(bind=True)
def identity(self, x):
    _record(self, (x,), {})
    return x


@shared_task(bind=True)
def add3(self, x, y, z=None):
    """Celery's ``add``: ``x + y`` (+ ``z``); lists add up as lists."""
    _record(self, (x, y), {"z": z})
    return x + y if z is None else x + y + z


@shared_task(bind=True)
def add_replaced(self, x, y):
    _record(self, (x, y), {})
    raise self.replace(add3.s(x, y))


@shared_task(bind=True)
def add_to_all(self, nums, val):
    _record(self, (nums, val), {})
    raise self.replace(group(*[add3.s(num, val) for num in nums]))


@shared_task(bind=True)
def fail_replaced(self, *args):
    _record(self, args, {})
    raise self.replace(fail.si(*args))


@shared_task(bind=True)
def replace_with_chain(self, *args, link_msg=None):
    """Celery's, except that the replacement is linked to ``echo`` only when
    ``link_msg`` is given (Celery always links its ``redis_echo``)."""
    _record(self, args, {"link_msg": link_msg})
    c = chain(identity.s(*args), identity.s())
    if link_msg is not None:
        c.link(echo.si(link_msg))
    return self.replace(c)


@shared_task(bind=True)
def replace_with_chain_which_raises(self, *args, link_msg=None):
    _record(self, args, {"link_msg": link_msg})
    c = chain(identity.s(*args), raise_error.s())
    link_sig = echo.s()
    if link_msg is not None:
        link_sig.args = (link_msg,)
        link_sig.set(immutable=True)
    c.link_error(link_sig)
    return self.replace(c)


@shared_task(bind=True)
def replace_with_empty_chain(self, *_):
    _record(self, _, {})
    return self.replace(chain())


@shared_task(bind=True)
def second_order_replace1(self, state=False):
    _record(self, ("A", state), {})
    if not state:
        raise self.replace(chain(second_order_replace2.s(), second_order_replace1.si(state=True)))


@shared_task(bind=True)
def second_order_replace2(self, state=False):
    _record(self, ("B", state), {})
    if not state:
        raise self.replace(chain(identity.s("C"), second_order_replace2.si(state=True)))


@shared_task(bind=True)
def replace_with_gate(self, value):
    """Replaced by ``gate(value)``: fails until the test opens the gate."""
    _record(self, (value,), {})
    raise self.replace(gate.s(value))


@shared_task(bind=True)
def errback_old_style(self, request_id):
    """Celery's old-style errback: called as a task with the failed task's id."""
    _record(self, (request_id,), {})
    return request_id


@shared_task
def errback_new_style(request, exc, tb):
    """Celery's new-style errback: called in the worker with the failed request
    (Celery calls a bound task with three arguments old-style)."""
    Call.objects.create(
        task="errback_new_style", args=[request.id], kwargs={"exc": type(exc).__name__},
        task_id=request.id or "", pid=os.getpid(),
    )  # fmt: skip
    return request.id


@shared_task(bind=True)
def echo(self, message, key="echo"):
    """Celery's ``redis_echo``: the message is kept (a Call row) under ``key``."""
    _record(self, (message,), {"key": key})


@shared_task(bind=True)
def raise_error(self, *args):
    _record(self, args, {})
    raise ValueError("deliberate error")


@shared_task(bind=True)
def return_exception(self, e):
    _record(self, (e,), {})
    return e, True


@shared_task(bind=True, max_retries=1)
def retry_once(self, *args, expires=None, max_retries=1, countdown=0.1):
    """Fails once and is retried; returns the number of retries."""
    _record(self, args, {})
    if self.request.retries:
        return self.request.retries
    raise self.retry(countdown=countdown, expires=expires, max_retries=max_retries)


@shared_task(bind=True)
def delayed_sum(self, numbers, pause_time=1):
    _record(self, (numbers,), {})
    time.sleep(pause_time)
    return sum(numbers)


@shared_task(bind=True)
def delayed_sum_with_soft_guard(self, numbers, pause_time=1):
    from celery.exceptions import SoftTimeLimitExceeded

    _record(self, (numbers,), {})
    try:
        time.sleep(pause_time)
        return sum(numbers)
    except SoftTimeLimitExceeded:
        return 0


@shared_task(bind=True)
def xsum(self, nums):
    """Sum of ints and lists."""
    _record(self, (nums,), {})
    return sum(sum(num) if isinstance(num, (list, tuple)) else num for num in nums)


@shared_task(bind=True)
def print_unicode(self, log_message="håå®ƒ valmuefrø", print_message="hiöäüß"):
    _record(self, (log_message,), {})
    print(print_message)


@shared_task(bind=True)
def build_chain_inside_task(self):
    """Starts a chain of its own and returns its AsyncResult (Celery stores ``as_tuple()``)."""
    _record(self, (), {})
    return (add3.s(1, 1) | add3.s(2) | group(add3.s(3), add3.s(4)) | add3.s(5))()


@shared_task(bind=True)
def add_to_all_to_chord(self, nums, val):
    _record(self, (nums, val), {})
    for num in nums:
        self.add_to_chord(add3.s(num, val))
    return 0


@shared_task(bind=True)
def replace_with_adder_to_chord(self, nums, val):
    """A chord header task replaced by one that adds members to the chord."""
    raise self.replace(add_to_all_to_chord.s(nums, val))


@shared_task(bind=True)
def add_chord_to_chord(self, nums, val):
    _record(self, (nums, val), {})
    self.add_to_chord(group([add3.s(num, val) for num in nums]) | tsum.s())
    return 0


@shared_task(bind=True)
def return_priority(self, *_args):
    return f"Priority: {self.request.delivery_info['priority']}"


# Signatures returned as results, rebuilt by the next task (Celery's test_signature_serialization).
@shared_task
def return_nested_signature_chain_chain():
    return chain(chain([add3.s()]))


@shared_task
def return_nested_signature_chain_group():
    return chain(group([add3.s()]))


@shared_task
def return_nested_signature_chain_chord():
    return chain(chord([add3.s()], add3.s()))


@shared_task
def return_nested_signature_group_chain():
    return group(chain([add3.s()]))


@shared_task
def return_nested_signature_group_group():
    return group(group([add3.s()]))


@shared_task
def return_nested_signature_group_chord():
    return group(chord([add3.s()], add3.s()))


@shared_task
def return_nested_signature_chord_chain():
    return chord(chain([add3.s()]), add3.s())


@shared_task
def return_nested_signature_chord_group():
    return chord(group([add3.s()]), add3.s())


@shared_task
def return_nested_signature_chord_chord():
    return chord(chord([add3.s()], add3.s()), add3.s())


@shared_task
def rebuild_signature(sig_dict):
    def _recurse(sig):
        if not isinstance(sig, Signature):
            raise TypeError(f"{sig!r} is not a signature object")
        if isinstance(sig, (chain, group, chord)):
            for task in sig.tasks:
                _recurse(task)
        if isinstance(sig, chord):
            _recurse(sig.body)

    _recurse(Signature.from_dict(sig_dict))


@shared_task(bind=True)
def add_lazily_to_chord(self, value):
    """``add_to_chord(lazy=True)``, then the caller sends the new member itself:
    Celery returns it frozen, so its id is its result's."""
    _record(self, (value,), {})
    member = self.add_to_chord(identity.s(value), lazy=True)
    result = member.delay()
    assert result.id == member.id, (result.id, member.id)
    return value


@shared_task(bind=True)
def add_lazily_to_chord_with_call_args(self, value):
    """``add_to_chord(lazy=True)``, then the member is sent with call arguments."""
    self.add_to_chord(identity.s(), lazy=True).delay(value)
    return value


@shared_task(bind=True)
def add_lazily_to_chord_and_forget(self, value):
    """``add_to_chord(lazy=True)``, and the member is never sent."""
    _record(self, (value,), {})
    self.add_to_chord(identity.s(value), lazy=True)
    return value


@shared_task
def write_to_file_and_return_int(file_name, i):
    """Celery's: appends ``i`` to the file (a line), returns it."""
    with open(file_name, mode="a", buffering=1) as file_handle:
        file_handle.write(str(i) + "\n")
    return i


from .floor import bench_floor_hop  # noqa: E402, F401 - the benchmark's floor row, in the worker
